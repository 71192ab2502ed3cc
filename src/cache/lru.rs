use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::FileIdCache;
use crate::error::{Error, Result};
use crate::media::{FileId, MediaKey};

/// A bounded, in-process [`FileIdCache`]: least recently used entries are evicted first.
///
/// It is the default cache and the front the engine keeps before a durable one. Lookups are a
/// hash probe under an uncontended lock: no I/O, no `.await`.
///
/// # Clone
/// Clones share one cache.
///
/// ```
/// use prewarm::{BotId, FileId, FileIdCache, LruFileIdCache, MediaKey, MediaKind, Sha256};
///
/// # tokio_test_block_on(async {
/// let cache = LruFileIdCache::new(10_000)?;
/// let key = MediaKey::new(BotId::new("bot")?, Sha256::of(b"cat.jpg"), MediaKind::Photo);
/// cache.put(&key, &FileId::new("AgACAgQAAxk")).await?;
/// assert_eq!(cache.get_local(&key), Some(FileId::new("AgACAgQAAxk")));
/// # Ok::<(), prewarm::Error>(())
/// # })?;
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LruFileIdCache {
    // A std mutex: no `.await` is ever held across it, and each critical section is one
    // hash-map operation, so an async lock would only add cost.
    inner: Arc<Mutex<::lru::LruCache<MediaKey, FileId>>>,
}

impl LruFileIdCache {
    /// A cache holding at most `capacity` entries.
    ///
    /// # Errors
    /// [`Error::Config`] when `capacity` is zero.
    pub fn new(capacity: usize) -> Result<Self> {
        let capacity = NonZeroUsize::new(capacity).ok_or_else(|| Error::Config {
            message: "the file_id cache capacity must be at least 1".to_owned(),
        })?;
        Ok(Self {
            inner: Arc::new(Mutex::new(::lru::LruCache::new(capacity))),
        })
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The most entries held at once.
    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }

    fn lock(&self) -> MutexGuard<'_, ::lru::LruCache<MediaKey, FileId>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is
        // one call into `lru`), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn put_local(&self, key: &MediaKey, file_id: &FileId) {
        self.lock().put(key.clone(), file_id.clone());
    }

    pub(crate) fn invalidate_local(&self, key: &MediaKey, only_if: Option<&FileId>) -> bool {
        let mut map = self.lock();
        match (map.peek(key), only_if) {
            (None, _) => false,
            (Some(current), Some(expected)) if current != expected => false,
            _ => map.pop(key).is_some(),
        }
    }
}

#[async_trait]
impl FileIdCache for LruFileIdCache {
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>> {
        Ok(self.get_local(key))
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        self.put_local(key, file_id);
        Ok(())
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool> {
        Ok(self.invalidate_local(key, only_if))
    }

    fn get_local(&self, key: &MediaKey) -> Option<FileId> {
        self.lock().get(key).cloned()
    }
}
