use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::media::Sha256;

/// The bytes of recent saves, so that warming a media just saved does not read it back from
/// the store. Bounded by a byte budget (oldest out first) and a time to live.
///
/// The budget bounds the memory the cache keeps alive, not only what it can still serve:
/// bytes it handed out (to an upload, which may take seconds) and evicted since live on until
/// their reader drops them, so they stay charged to the budget until then. When readers
/// hold the whole budget, a new save's bytes are not kept (its warm reads the store).
/// Without this, a bulk import whose uploads stream big media from memory held the budget
/// again for every batch of evicted entries still on the wire.
///
/// An entry of up to half the budget can be pinned: held against the budget's evictions (not
/// against its time to live) until unpinned. The engine pins the bytes of a media whose
/// upload will need them, from its save until one of its workers takes them, and ranks that
/// media's job ahead ([`Job::hot`]), so that the ranking is never spent on bytes that left
/// meanwhile: saves can outrun warming many times over, and push an unpinned entry out within
/// a fraction of a second. Pinned bytes never exceed the budget; a pin whose job another
/// engine claims (a queue shared by processes) lasts until the time to live.
///
/// [`Job::hot`]: crate::Job::hot
#[derive(Debug)]
pub(crate) struct ByteCache {
    budget: u64,
    ttl: Duration,
    // A std mutex: map and queue updates only, never held across an `.await`.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Sha256, Entry>,
    order: VecDeque<(Sha256, Instant)>,
    /// The bytes of `entries` and of `lent`.
    used: u64,
    /// Evicted entries still read by someone: their lengths and reader counts.
    lent: Vec<(u64, Arc<()>)>,
    /// Bytes of the entries pinned at least once.
    pinned: u64,
}

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    at: Instant,
    /// One strong count per reader alive, plus this one (see [`Lent`]).
    readers: Arc<()>,
    /// How many pins hold it (one per job that waits for these bytes).
    pins: u32,
}

/// What [`ByteCache::get`] hands out: the cached bytes (not a copy), holding one count of
/// their entry's readers until the last clone is dropped.
struct Lent {
    bytes: Bytes,
    _reader: Arc<()>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
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
        if bytes.len() as u64 > self.budget / 2 {
            // One larger file would flush everything else for a single use. Up to half the
            // budget is worth it: a media just saved is warmed within milliseconds when a
            // worker is free, and the largest files are the ones whose store download costs
            // most (videos over 20 MB cannot go by URL).
            return false;
        }
        self.put(sha, bytes, false)
    }

    /// Keeps `bytes` for `sha` and pins them, when [`insert`](Self::insert) would keep them
    /// and the pinned bytes stay within the budget; otherwise as `insert`. Answers whether
    /// they are pinned: then [`unpin`](Self::unpin) must follow once.
    pub(crate) fn insert_pinned(&self, sha: Sha256, bytes: Bytes) -> bool {
        let len = bytes.len() as u64;
        if len > self.budget / 2 {
            // Not kept at all (see `insert`): what a worker holds while it uploads stays
            // within half the budget per upload, as for any media taken from the cache.
            return false;
        }
        let fits = {
            let inner = self.lock();
            let more = match inner.entries.get(&sha) {
                Some(e) if e.pins > 0 => 0,
                _ => len,
            };
            inner.pinned + more <= self.budget
        };
        if fits {
            self.put(sha, bytes, true)
        } else {
            self.insert(sha, bytes);
            false
        }
    }

    /// Releases one pin of `sha`'s bytes; they become evictable once no pin holds them.
    pub(crate) fn unpin(&self, sha: &Sha256) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(e) = inner.entries.get_mut(sha) else {
            return; // gone past its time to live
        };
        if e.pins == 0 {
            return;
        }
        e.pins -= 1;
        if e.pins == 0 {
            let len = e.bytes.len() as u64;
            inner.pinned -= len;
            self.evict(&mut inner, now, 0);
        }
    }

    /// Keeps (and pins, with `pin`) `bytes` for `sha`; answers whether they are held now.
    fn put(&self, sha: Sha256, bytes: Bytes, pin: bool) -> bool {
        let len = bytes.len() as u64;
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(e) = inner.entries.get_mut(&sha) {
            if pin {
                if e.pins == 0 {
                    inner.pinned += len;
                }
                e.pins += 1;
            }
            return true;
        }
        self.evict(inner, now, len);
        if inner.used + len > self.budget {
            // Readers and pins hold the rest of the budget: not kept.
            return false;
        }
        inner.used += len;
        if pin {
            inner.pinned += len;
        }
        inner.entries.insert(
            sha,
            Entry {
                bytes,
                at: now,
                readers: Arc::new(()),
                pins: u32::from(pin),
            },
        );
        inner.order.push_back((sha, now));
        self.evict(inner, now, 0);
        // Gone already with a zero time to live.
        inner.entries.contains_key(&sha)
    }

    pub(crate) fn get(&self, sha: &Sha256) -> Option<Bytes> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.evict(&mut inner, now, 0);
        inner.entries.get(sha).map(|e| {
            Bytes::from_owner(Lent {
                bytes: e.bytes.clone(),
                _reader: e.readers.clone(),
            })
        })
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    /// Releases the lent bytes no one reads any more, then drops what outlived the time to
    /// live and the oldest unpinned entries until `room` more bytes fit (or nothing
    /// unpinned is left).
    fn evict(&self, inner: &mut Inner, now: Instant, room: u64) {
        let mut released = 0;
        inner.lent.retain(|(len, readers)| {
            let read = Arc::strong_count(readers) > 1;
            if !read {
                released += len;
            }
            read
        });
        inner.used -= released;
        let mut i = 0;
        while let Some(&(sha, at)) = inner.order.get(i) {
            // The entry may have been removed already, or re-inserted later (another stamp).
            let Some(e) = inner.entries.get(&sha).filter(|e| e.at == at) else {
                inner.order.remove(i);
                continue;
            };
            let expired = now.duration_since(at) >= self.ttl;
            if !expired && inner.used + room <= self.budget {
                break;
            }
            if !expired && e.pins > 0 {
                // Over the budget, but waited for: the unpinned ones behind it go first.
                i += 1;
                continue;
            }
            inner.order.remove(i);
            if let Some(entry) = inner.entries.remove(&sha) {
                let len = entry.bytes.len() as u64;
                if entry.pins > 0 {
                    inner.pinned -= len;
                }
                if Arc::strong_count(&entry.readers) > 1 {
                    inner.lent.push((len, entry.readers));
                } else {
                    inner.used -= len;
                }
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

    #[tokio::test(start_paused = true)]
    async fn bytes_handed_out_stay_charged_until_their_reader_drops_them() {
        let cache = ByteCache::new(100, Duration::from_secs(10));
        let (a, b, c) = (Sha256::of(b"a"), Sha256::of(b"b"), Sha256::of(b"c"));
        cache.insert(a, Bytes::from(vec![1; 40]));
        cache.insert(b, Bytes::from(vec![2; 40]));
        // Two uploads read them, as long as they take.
        let (read_a, read_b) = (cache.get(&a).unwrap(), cache.get(&b).unwrap());
        assert_eq!(
            (read_a[0], read_a.len()),
            (1, 40),
            "the cached bytes themselves"
        );
        cache.insert(c, Bytes::from(vec![3; 40]));
        assert!(
            cache.get(&c).is_none(),
            "80 bytes read, 40 more would pass the budget"
        );
        assert!(cache.get(&a).is_none(), "evicted to make room, in vain");
        assert_eq!(
            cache.used(),
            80,
            "the evicted bytes live on in their readers"
        );
        drop(read_a);
        cache.insert(c, Bytes::from(vec![3; 40]));
        assert!(cache.get(&c).is_some(), "a's reader is done: room for c");
        assert_eq!(cache.used(), 80);
        drop(read_b);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(cache.get(&c).is_none());
        assert_eq!(cache.used(), 0, "expired, and nothing read any more");
    }

    /// Pinned bytes stay while later inserts push the unpinned ones out, up to the budget
    /// (files of up to half of it, as unpinned ones). Unpinned, they go first in age order
    /// again; the time to live still applies.
    #[tokio::test(start_paused = true)]
    async fn pinned_bytes_outlast_later_inserts_within_the_budget() {
        let cache = ByteCache::new(100, Duration::from_secs(10));
        let (big, other, a, b) = (
            Sha256::of(b"big"),
            Sha256::of(b"other"),
            Sha256::of(b"a"),
            Sha256::of(b"b"),
        );
        assert!(
            !cache.insert_pinned(other, Bytes::from(vec![0; 51])),
            "over half the budget: neither pinned nor kept"
        );
        assert!(cache.get(&other).is_none());
        assert!(cache.insert_pinned(big, Bytes::from(vec![0; 50])));
        assert!(cache.insert_pinned(a, Bytes::from(vec![0; 40])));
        assert!(
            !cache.insert_pinned(b, Bytes::from(vec![0; 20])),
            "50 + 40 + 20 pinned would pass the budget"
        );
        assert!(cache.get(&b).is_none(), "kept unpinned, then pushed out");
        assert!(cache.insert(b, Bytes::from(vec![0; 10])));
        assert!(cache.insert(other, Bytes::from(vec![0; 10])));
        assert!(cache.get(&big).is_some(), "the pinned bytes stay");
        assert!(cache.get(&a).is_some());
        assert!(
            cache.get(&b).is_none(),
            "the unpinned ones go, oldest first"
        );
        assert!(cache.get(&other).is_some());
        assert_eq!(cache.used(), 100);
        cache.unpin(&big);
        assert!(cache.insert(b, Bytes::from(vec![0; 10])));
        assert!(cache.get(&big).is_none(), "unpinned, the oldest goes first");
        assert_eq!(cache.used(), 60);
        // Two pins of one entry: it stays until both are released.
        cache.unpin(&a);
        assert!(cache.insert_pinned(big, Bytes::from(vec![0; 50])));
        assert!(cache.insert_pinned(big, Bytes::from(vec![0; 50])));
        cache.unpin(&big);
        cache.insert(Sha256::of(b"c"), Bytes::from(vec![0; 50]));
        assert!(cache.get(&big).is_some(), "one pin still holds it");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(cache.get(&big).is_none(), "the time to live ends a pin");
        cache.unpin(&big);
        assert_eq!(cache.used(), 0);
        assert!(
            cache.insert_pinned(big, Bytes::from(vec![0; 50])),
            "pins start afresh"
        );
    }
}
