//! Conformance suites: the behaviour every implementation of the crate's traits must show.
//!
//! One `pub async fn` per behaviour, each taking the implementation under test, panicking with
//! a message that names the broken rule. Every backend in this crate runs them, and so can
//! yours:
//!
//! ```no_run
//! # async fn demo() {
//! use prewarm::conformance;
//! use prewarm::store::MemoryStore;
//!
//! conformance::store::run_all(&MemoryStore::new()).await;
//! # }
//! ```
//!
//! Store and cache suites use fresh random keys, so they may share one instance; the queue
//! suite needs an empty queue per behaviour and takes a factory.

pub mod budget;
pub mod cache;
pub mod journal;
pub mod queue;
pub mod store;
pub mod upload;

use crate::media::{BotId, MediaKey, MediaKind, Sha256};

/// A key no other test uses.
pub(crate) fn unique_key(kind: MediaKind) -> MediaKey {
    let bot = BotId::new("conformance").expect("a valid bot id");
    MediaKey::new(bot, Sha256::of(&fastrand::u128(..).to_le_bytes()), kind)
}
