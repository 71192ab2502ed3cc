use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::FileIdCache;
use crate::error::{Error, Result};
use crate::media::{FileId, MediaKey};

type Front = ::lru::LruCache<MediaKey, (FileId, Instant)>;

/// An in-process LRU in front of a durable [`FileIdCache`]: hot lookups without I/O, every
/// write through to the durable cache.
///
/// - `get_local` and `get` answer from the front while the entry is younger than the TTL;
///   `get` falls through to the durable cache on a miss and keeps what it finds. Misses are
///   not remembered, so a file_id another instance stores is seen at the next `get`.
/// - `put` and `invalidate` go to the durable cache first, then update the front.
///
/// # Staleness bound
/// When *another* instance replaces or invalidates a file_id in the durable cache, this
/// instance may keep answering the old one from its front for at most the TTL (default
/// 60 s) after it last read it from the durable cache. A file_id that old is still one
/// Telegram gave for these exact bytes: at worst a send with it fails with "wrong file
/// identifier", and the engine then invalidates it and warms the media again. Invalidations
/// made through this instance take effect here at once. A host that hears of invalidations
/// another way can drop an entry with [`forget`](Self::forget).
///
/// # Clone
/// Clones share one front and one durable cache.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use prewarm::{BotId, FileId, FileIdCache, LruFileIdCache, MediaKey, MediaKind, Sha256};
/// use prewarm::cache::TieredCache;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // Any durable cache goes behind it; an LRU stands in for one here.
/// let durable = Arc::new(LruFileIdCache::new(1_000)?);
/// let cache = TieredCache::new(durable, 10_000)?.with_ttl(Duration::from_secs(30));
/// let key = MediaKey::new(BotId::new("bot")?, Sha256::of(b"cat.jpg"), MediaKind::Photo);
/// cache.put(&key, &FileId::new("AgACAgQAAxk")).await?;
/// assert_eq!(cache.get_local(&key), Some(FileId::new("AgACAgQAAxk")));
/// # Ok::<(), prewarm::Error>(())
/// # })?;
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Clone)]
pub struct TieredCache {
    // A std mutex: each critical section is one LRU operation, never across an `.await`.
    front: Arc<Mutex<Front>>,
    back: Arc<dyn FileIdCache>,
    ttl: Duration,
}

impl fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("front_len", &self.lock().len())
            .field("ttl", &self.ttl)
            .field("back", &self.back)
            .finish()
    }
}

impl TieredCache {
    /// A front of at most `capacity` entries over `back`, with a 60 s TTL.
    ///
    /// # Errors
    /// [`Error::Config`] when `capacity` is zero.
    pub fn new(back: Arc<dyn FileIdCache>, capacity: usize) -> Result<Self> {
        let capacity = NonZeroUsize::new(capacity).ok_or_else(|| Error::Config {
            message: "the tiered cache's front capacity must be at least 1".to_owned(),
        })?;
        Ok(Self {
            front: Arc::new(Mutex::new(Front::new(capacity))),
            back,
            ttl: Duration::from_secs(60),
        })
    }

    /// How long a front entry is trusted after it was read from or written to the durable
    /// cache: the staleness bound for changes made by other instances. A zero TTL turns the
    /// front off.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Drops the front's entry for `key`, if any (the durable cache is untouched).
    pub fn forget(&self, key: &MediaKey) {
        self.lock().pop(key);
    }

    /// Entries in the front now (fresh or not).
    pub fn front_len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Front> {
        // Each operation is one call into `lru`: a poisoned lock still holds a consistent map.
        self.front.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: &MediaKey, file_id: &FileId) {
        if !self.ttl.is_zero() {
            self.lock()
                .put(key.clone(), (file_id.clone(), Instant::now()));
        }
    }
}

#[async_trait]
impl FileIdCache for TieredCache {
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>> {
        if let Some(id) = self.get_local(key) {
            return Ok(Some(id));
        }
        let found = self.back.get(key).await?;
        match &found {
            Some(id) => self.remember(key, id),
            None => self.forget(key),
        }
        Ok(found)
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        self.back.put(key, file_id).await?;
        self.remember(key, file_id);
        Ok(())
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool> {
        let removed = self.back.invalidate(key, only_if).await;
        // Whatever the durable cache did, the front's copy may be the id just refused.
        self.forget(key);
        removed
    }

    fn get_local(&self, key: &MediaKey) -> Option<FileId> {
        let mut front = self.lock();
        match front.get(key) {
            Some((id, at)) if at.elapsed() < self.ttl => Some(id.clone()),
            Some(_) => {
                front.pop(key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::LruFileIdCache;
    use crate::media::{BotId, MediaKind, Sha256};

    fn key(n: u8) -> MediaKey {
        MediaKey::new(BotId::new("b").unwrap(), Sha256::of(&[n]), MediaKind::Photo)
    }

    #[tokio::test(start_paused = true)]
    async fn another_instances_invalidation_is_seen_within_the_ttl() {
        let durable: Arc<dyn FileIdCache> = Arc::new(LruFileIdCache::new(100).unwrap());
        let ttl = Duration::from_secs(10);
        let here = TieredCache::new(durable.clone(), 100)
            .unwrap()
            .with_ttl(ttl);
        let there = TieredCache::new(durable.clone(), 100)
            .unwrap()
            .with_ttl(ttl);
        let k = key(1);
        let old = FileId::new("old");
        there.put(&k, &old).await.unwrap();
        assert_eq!(
            here.get(&k).await.unwrap(),
            Some(old.clone()),
            "read through"
        );
        assert_eq!(here.get_local(&k), Some(old.clone()), "kept in front");

        assert!(there.invalidate(&k, Some(&old)).await.unwrap());
        assert_eq!(durable.get(&k).await.unwrap(), None);
        tokio::time::advance(ttl - Duration::from_millis(1)).await;
        assert_eq!(
            here.get_local(&k),
            Some(old.clone()),
            "stale within the bound"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(here.get_local(&k), None, "gone at the bound");
        assert_eq!(here.get(&k).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_go_through_and_local_invalidation_is_immediate() {
        let durable: Arc<dyn FileIdCache> = Arc::new(LruFileIdCache::new(100).unwrap());
        let cache = TieredCache::new(durable.clone(), 100).unwrap();
        let k = key(2);
        cache.put(&k, &FileId::new("a")).await.unwrap();
        assert_eq!(durable.get(&k).await.unwrap(), Some(FileId::new("a")));
        assert!(!cache.invalidate(&k, Some(&FileId::new("b"))).await.unwrap());
        assert_eq!(cache.get(&k).await.unwrap(), Some(FileId::new("a")));
        assert!(cache.invalidate(&k, None).await.unwrap());
        assert_eq!(cache.get_local(&k), None);
        assert_eq!(cache.get(&k).await.unwrap(), None);
        // A miss is not remembered: another writer's id is seen at once.
        durable.put(&k, &FileId::new("c")).await.unwrap();
        assert_eq!(cache.get(&k).await.unwrap(), Some(FileId::new("c")));
    }

    #[test]
    fn zero_capacity_is_a_config_error() {
        let durable: Arc<dyn FileIdCache> = Arc::new(LruFileIdCache::new(1).unwrap());
        assert!(matches!(
            TieredCache::new(durable, 0),
            Err(Error::Config { .. })
        ));
    }
}
