//! Wrappers over the real in-memory backends that fail on command, for the engine's tests of
//! what happens when a backend call fails.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prewarm::queue::{BotSummary, Claim, JobInfo, Lease, PushOutcome, QueueDepth};
use prewarm::{
    BotId, Error, FileId, FileIdCache, Job, LruFileIdCache, MediaKey, MemoryQueue, PriorityQueue,
    Timestamp,
};
use tokio::sync::Notify;
use tokio::time::Instant;

fn injected(what: &str) -> Error {
    Error::Backend {
        backend: "test",
        message: format!("injected: {what}"),
        retryable: true,
    }
}

/// A [`MemoryQueue`] whose `extend` can fail (a retryable error, as a lost database
/// connection) and whose `release` can hang.
#[derive(Debug, Clone, Default)]
pub struct FaultyQueue {
    pub inner: MemoryQueue,
    pub extend_fails: Arc<AtomicBool>,
    pub release_hangs: Arc<AtomicBool>,
    /// When each `extend` was called.
    pub extends: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait]
impl PriorityQueue for FaultyQueue {
    async fn push(&self, job: Job, now: Timestamp) -> prewarm::Result<PushOutcome> {
        self.inner.push(job, now).await
    }

    async fn claim(
        &self,
        owner: &str,
        bots: &[BotId],
        max: usize,
        lease: Duration,
        now: Timestamp,
    ) -> prewarm::Result<Claim> {
        self.inner.claim(owner, bots, max, lease, now).await
    }

    async fn extend(
        &self,
        lease: &Lease,
        lease_for: Duration,
        now: Timestamp,
    ) -> prewarm::Result<Lease> {
        self.extends.lock().unwrap().push(Instant::now());
        if self.extend_fails.load(Ordering::SeqCst) {
            return Err(injected("extend"));
        }
        self.inner.extend(lease, lease_for, now).await
    }

    async fn complete(&self, lease: &Lease) -> prewarm::Result<()> {
        self.inner.complete(lease).await
    }

    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> prewarm::Result<()> {
        self.inner.retry(lease, run_at, count_attempt, error).await
    }

    async fn fail(&self, lease: &Lease, error: &str) -> prewarm::Result<()> {
        self.inner.fail(lease, error).await
    }

    async fn release(&self, lease: &Lease) -> prewarm::Result<()> {
        if self.release_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.release(lease).await
    }

    async fn promote(&self, key: &MediaKey, now: Timestamp) -> prewarm::Result<bool> {
        self.inner.promote(key, now).await
    }

    async fn get(&self, key: &MediaKey) -> prewarm::Result<Option<JobInfo>> {
        self.inner.get(key).await
    }

    async fn dead(&self, limit: usize) -> prewarm::Result<Vec<JobInfo>> {
        self.inner.dead(limit).await
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> prewarm::Result<u64> {
        self.inner.requeue_dead(key, now).await
    }

    async fn depth(&self) -> prewarm::Result<QueueDepth> {
        self.inner.depth().await
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        self.inner.notifier()
    }

    async fn clear_demand(&self, key: &MediaKey) -> prewarm::Result<bool> {
        self.inner.clear_demand(key).await
    }

    async fn record_rejection(&self, key: &MediaKey) -> prewarm::Result<u32> {
        self.inner.record_rejection(key).await
    }

    async fn clear_rejections(&self, key: &MediaKey) -> prewarm::Result<()> {
        self.inner.clear_rejections(key).await
    }

    async fn summary(&self, now: Timestamp) -> prewarm::Result<Vec<BotSummary>> {
        self.inner.summary(now).await
    }
}

/// An [`LruFileIdCache`] whose next `put_failures` puts fail with a retryable error.
#[derive(Debug, Clone)]
pub struct FlakyCache {
    pub inner: Arc<LruFileIdCache>,
    pub put_failures: Arc<AtomicU32>,
    pub puts: Arc<AtomicU32>,
    /// How long each `get` takes, after it has read its answer.
    pub get_delay: Arc<Mutex<Duration>>,
}

impl FlakyCache {
    pub fn failing_puts(n: u32) -> Self {
        Self {
            inner: Arc::new(LruFileIdCache::new(1_000).expect("cache")),
            put_failures: Arc::new(AtomicU32::new(n)),
            puts: Arc::default(),
            get_delay: Arc::default(),
        }
    }
}

#[async_trait]
impl FileIdCache for FlakyCache {
    async fn get(&self, key: &MediaKey) -> prewarm::Result<Option<FileId>> {
        let found = self.inner.get(key).await;
        let delay = *self.get_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        found
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> prewarm::Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        let left = self.put_failures.load(Ordering::SeqCst);
        if left > 0 {
            self.put_failures.store(left - 1, Ordering::SeqCst);
            return Err(injected("cache put"));
        }
        self.inner.put(key, file_id).await
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> prewarm::Result<bool> {
        self.inner.invalidate(key, only_if).await
    }

    fn get_local(&self, key: &MediaKey) -> Option<FileId> {
        self.inner.get_local(key)
    }
}
