//! The file_id cache: [`FileIdCache`] maps a [`MediaKey`] to the [`FileId`] Telegram gave it.
//!
//! [`LruFileIdCache`] is in-process; [`TieredCache`] puts one in front of a durable cache
//! (such as the `db` module's SQLite and PostgreSQL stores).

mod lru;
mod tiered;

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::media::{FileId, MediaKey};

pub use self::lru::LruFileIdCache;
pub use self::tiered::TieredCache;

/// (bot, sha256, kind) -> file_id.
///
/// # Contract
/// - `get` answers the file_id last `put` for the key, or `None`; a bounded cache may have
///   evicted it (it then answers `None`, never another key's id).
/// - `put` replaces any earlier file_id for the key.
/// - `invalidate(key, Some(id))` removes the entry only while it still holds `id`, so a worker
///   that saw an old id rejected cannot delete a newer one another worker stored since;
///   `invalidate(key, None)` removes whatever is there. It answers whether it removed one.
/// - `get_local` answers without any I/O: the entry if this process holds it in memory,
///   `None` otherwise (always `None` for a cache with no in-process part). The engine's
///   cache-first lookup is built on it.
#[async_trait]
pub trait FileIdCache: Send + Sync + Debug + 'static {
    /// The file_id for `key`, if cached.
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>>;

    /// Stores `file_id` for `key`.
    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()>;

    /// Removes the entry for `key` (only if it holds `only_if`, when given).
    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool>;

    /// The file_id for `key` if held in this process's memory; never does I/O.
    fn get_local(&self, key: &MediaKey) -> Option<FileId>;
}
