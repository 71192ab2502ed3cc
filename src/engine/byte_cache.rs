use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::media::Sha256;

/// The bytes of recent saves, so that warming a media just saved does not read it back from
/// the store. Bounded by a byte budget (oldest out first) and a time to live.
#[derive(Debug)]
pub(crate) struct ByteCache {
    budget: u64,
    ttl: Duration,
    // A std mutex: map and queue updates only, never held across an `.await`.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Sha256, (Bytes, Instant)>,
    order: VecDeque<(Sha256, Instant)>,
    used: u64,
}

impl ByteCache {
    pub(crate) fn new(budget: u64, ttl: Duration) -> Self {
        Self {
            budget,
            ttl,
            inner: Mutex::default(),
        }
    }

    /// Keeps `bytes` for `sha`; answers whether they are held now (kept, or held already).
    pub(crate) fn insert(&self, sha: Sha256, bytes: Bytes) -> bool {
        let len = bytes.len() as u64;
        if len > self.budget / 2 {
            // One larger file would flush everything else for a single use. Up to half the
            // budget is worth it: a media just saved is warmed within milliseconds when a
            // worker is free, and the largest files are the ones whose store download costs
            // most (videos over 20 MB cannot go by URL).
            return false;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.entries.contains_key(&sha) {
            return true;
        }
        inner.used += len;
        inner.entries.insert(sha, (bytes, now));
        inner.order.push_back((sha, now));
        self.evict(&mut inner, now);
        // Gone already with a zero time to live.
        inner.entries.contains_key(&sha)
    }

    pub(crate) fn get(&self, sha: &Sha256) -> Option<Bytes> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        inner.entries.get(sha).map(|(b, _)| b.clone())
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(sha, at)) = inner.order.front() {
            let expired = now.duration_since(at) >= self.ttl;
            if !expired && inner.used <= self.budget {
                break;
            }
            inner.order.pop_front();
            // The entry may have been removed already, or re-inserted later (another stamp).
            if inner.entries.get(&sha).is_some_and(|(_, t)| *t == at)
                && let Some((bytes, _)) = inner.entries.remove(&sha)
            {
                inner.used -= bytes.len() as u64;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_and_ttl_bound_the_cache() {
        let cache = ByteCache::new(100, Duration::from_secs(10));
        let a = Sha256::of(b"a");
        let b = Sha256::of(b"b");
        let c = Sha256::of(b"c");
        cache.insert(a, Bytes::from(vec![0; 25]));
        cache.insert(b, Bytes::from(vec![0; 25]));
        assert_eq!(cache.used(), 50);
        cache.insert(c, Bytes::from(vec![0; 51])); // over half the budget: not kept
        assert!(cache.get(&c).is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        for i in 0..3u8 {
            cache.insert(Sha256::of(&[i]), Bytes::from(vec![0; 25]));
        }
        // 125 bytes were inserted in all: the oldest goes.
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
        assert!(cache.used() <= 100);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cache.get(&b).is_none(), "expired after its TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_of_half_the_budget_is_kept_and_pushes_out_the_oldest() {
        let cache = ByteCache::new(100, Duration::from_secs(10));
        let (a, b, big) = (Sha256::of(b"a"), Sha256::of(b"b"), Sha256::of(b"big"));
        cache.insert(a, Bytes::from(vec![0; 30]));
        cache.insert(b, Bytes::from(vec![0; 30]));
        cache.insert(big, Bytes::from(vec![0; 50]));
        assert_eq!(cache.get(&big).map(|x| x.len()), Some(50));
        assert!(cache.get(&a).is_none(), "the oldest made room");
        assert!(cache.get(&b).is_some());
        assert_eq!(cache.used(), 80);
    }
}
