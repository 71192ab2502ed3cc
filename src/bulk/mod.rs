//! Bulk imports: many media saved at once, and whole folders warmed.
//!
//! - [`BulkSaver::save_all`] saves a stream of [`SaveInput`]s with many saves in flight,
//!   bounded by a count and by bytes, best first (photos and small media, as the queue
//!   warms them), answering each [`Saved`] as it completes: for bot code that imports
//!   many media at once.
//! - [`WarmDir`] warms every file under a folder and answers a [`WarmDirReport`]: what
//!   `examples/warm_dir.rs` and the `prewarm warm` command run. With a
//!   [`FileIndex`](crate::db::FileIndex) (feature `sqlite`), reruns cost a `stat` per file.
//! - [`Progress`] counts a run as it goes; its [`ProgressSnapshot`] has rates and an ETA
//!   for a terminal.

mod detect;
mod dir;
mod progress;
mod save_all;

pub use detect::{HEAD_LEN, detect_kind};
pub use dir::{FileFailure, WarmDir, WarmDirReport};
pub use progress::{Progress, ProgressSnapshot};
pub use save_all::{BulkSaver, SaveInput, SaveSource, Saved};

#[cfg(test)]
mod tests;
