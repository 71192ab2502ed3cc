//! [`PrewarmEngine`]: saves media, warms them in the background, and answers what to send.

mod builder;
mod byte_cache;
mod clock;
mod flight;
pub mod metrics;
mod save;
mod wait;
mod weak;
mod worker;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use self::byte_cache::ByteCache;
use self::clock::Clock;
use self::flight::Flights;
use self::metrics::{Metrics, MetricsSnapshot, Via};
use crate::cache::FileIdCache;
use crate::error::{Error, Result};
use crate::media::format::OCTET_STREAM;
use crate::media::{BotId, FileId, Job, MediaKey, ObjectKey, SizeLimits};
use crate::queue::{JobInfo, PriorityQueue, PushOutcome};
use crate::store::MediaStore;
use crate::upload::{MediaSource, Uploader};

pub use builder::PrewarmEngineBuilder;
pub(crate) use save::sha256_of;
pub use worker::EngineTask;

/// Push stamps kept for the dispatch-delay histogram, at most.
const PUSHED_MAX: usize = 100_000;

/// Saves media, warms them into file_ids in the background, and answers what to send.
///
/// A cheap handle: clones share one engine. Build it with [`PrewarmEngine::builder`], start
/// its workers with [`spawn`](Self::spawn) (or drive [`run`](Self::run) yourself), then:
/// - [`save`](Self::save) media as they arrive: stored content-addressed, queued to warm;
/// - [`lookup`](Self::lookup) a file_id with no I/O, or ask [`sendable`](Self::sendable) for
///   what to send right now: the file_id when warm, the bytes otherwise, never a "not ready"
///   error;
/// - [`wait_ready`](Self::wait_ready) when a file_id is worth waiting for.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use prewarm::{BotId, MediaKind, MemoryUploader, PrewarmEngine, Sendable};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> prewarm::Result<()> {
/// let bot = BotId::new("demo")?;
/// let engine = PrewarmEngine::builder()
///     .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
///     .build()?;
/// let running = engine.spawn();
///
/// let key = engine.save(&bot, Bytes::from_static(b"\xff\xd8 a tiny jpeg"), MediaKind::Photo).await?;
/// let file_id = engine.wait_ready(&key, Duration::from_secs(5)).await?;
/// assert_eq!(engine.lookup(&key), Some(file_id.clone()));
/// match engine.sendable(&key, Duration::ZERO).await? {
///     Sendable::FileId(id) => assert_eq!(id, file_id),
///     Sendable::Upload(_) => unreachable!("the media is warm"),
/// }
/// running.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PrewarmEngine {
    inner: Arc<Inner>,
}

/// What to send for a media right now.
#[derive(Debug, Clone)]
pub enum Sendable {
    /// Send by this file_id.
    FileId(FileId),
    /// Not warm yet: upload these bytes (then hand the file_id Telegram answers to
    /// [`PrewarmEngine::record_file_id`], so the background warm is skipped).
    Upload(MediaSource),
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) concurrency: usize,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) limits: SizeLimits,
    pub(crate) url_ttl: Duration,
    pub(crate) retry_weak_id: u32,
    pub(crate) spool_dir: PathBuf,
}

pub(crate) struct Inner {
    store: Arc<dyn MediaStore>,
    cache: Arc<dyn FileIdCache>,
    queue: Arc<dyn PriorityQueue>,
    uploaders: HashMap<BotId, Arc<dyn Uploader>>,
    config: Config,
    clock: Clock,
    /// Raised on every local push and every finished job: the dispatcher looks for work.
    wake: Notify,
    flights: Flights,
    bytes: ByteCache,
    metrics: Metrics,
    /// This engine's lease-owner name.
    instance: Arc<str>,
    /// What this engine knows of each job it pushed, until one of its workers claims it.
    // std mutexes below: map updates only, never held across an `.await`.
    pushed: Mutex<HashMap<MediaKey, Pushed>>,
    /// Media whose file_id this process saw rejected: a successful send forgives them.
    forgivable: Mutex<HashSet<MediaKey>>,
    /// Media past the weak-id limit, with the reason: their job's next claim fails it.
    bury: Mutex<HashMap<MediaKey, String>>,
    /// File_ids Telegram answered that the cache refused, with how often: the job's next
    /// claim stores them rather than uploading again.
    unsaved: Mutex<HashMap<MediaKey, (FileId, u32)>>,
    running: AtomicBool,
}

impl Inner {
    fn new(
        store: Arc<dyn MediaStore>,
        cache: Arc<dyn FileIdCache>,
        queue: Arc<dyn PriorityQueue>,
        uploaders: HashMap<BotId, Arc<dyn Uploader>>,
        config: Config,
        (byte_budget, byte_ttl): (u64, Duration),
    ) -> Self {
        Self {
            store,
            cache,
            queue,
            uploaders,
            config,
            clock: Clock::new(),
            wake: Notify::new(),
            flights: Flights::default(),
            bytes: ByteCache::new(byte_budget, byte_ttl),
            metrics: Metrics::default(),
            instance: format!("prewarm-{}-{:08x}", std::process::id(), fastrand::u32(..)).into(),
            pushed: Mutex::default(),
            forgivable: Mutex::default(),
            bury: Mutex::default(),
            unsaved: Mutex::default(),
            running: AtomicBool::new(false),
        }
    }
}

/// What an engine knows of a job it pushed, kept until one of its workers claims the job.
#[derive(Debug)]
struct Pushed {
    /// When it was pushed, for the dispatch-delay histogram.
    at: Instant,
    /// The media's MIME type when a save named it (sniffed from the bytes): handed to the
    /// uploader, which would otherwise ask the store for it (a `head` per warm).
    content_type: Option<String>,
    /// Whether the save pinned the media's bytes in the byte cache for this job (a hot job):
    /// whoever removes this entry unpins them once.
    pinned: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps behind these locks are updated by single calls: a poisoned lock still holds a
    // consistent map.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PrewarmEngine {
    /// A builder with the defaults.
    pub fn builder() -> PrewarmEngineBuilder {
        PrewarmEngineBuilder::new()
    }

    /// Queues a warm of a media already in the store (saved earlier, perhaps for another bot
    /// or kind).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the store has no object for it; size and bot errors as
    /// [`save`](Self::save).
    pub async fn warm(&self, key: &MediaKey) -> Result<PushOutcome> {
        self.uploader(&key.bot)?;
        let (size, content_type) = self.stored(key).await?;
        self.inner.config.limits.check(key.kind, size)?;
        let job = Job::new(key.clone(), size, self.inner.clock.now());
        self.enqueue_typed(job, content_type, false).await
    }

    /// The file_id of `key` if this process holds it in memory. No I/O, no `.await`: the
    /// cache-first fast path.
    pub fn lookup(&self, key: &MediaKey) -> Option<FileId> {
        let found = self.inner.cache.get_local(key);
        self.count_lookup(found.is_some());
        found
    }

    fn count_lookup(&self, hit: bool) {
        if hit {
            self.inner.metrics.cache_hit();
        } else {
            self.inner.metrics.cache_miss();
        }
    }

    /// The file_id of `key` from the cache, asking its durable part when this process does
    /// not hold it: one lookup, no waiting, nothing queued.
    ///
    /// # Errors
    /// The cache's error.
    pub async fn cached(&self, key: &MediaKey) -> Result<Option<FileId>> {
        let found = match self.inner.cache.get_local(key) {
            Some(id) => Some(id),
            None => self.inner.cache.get(key).await?,
        };
        self.count_lookup(found.is_some());
        Ok(found)
    }

    /// Dead jobs with their last errors, oldest first.
    ///
    /// # Errors
    /// The queue's error.
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<JobInfo>> {
        self.inner.queue.dead(limit).await
    }

    /// Requeues the dead job of `key`, or all dead jobs; answers how many. Requeuing one
    /// media forgives its rejected file_ids too (see
    /// [`report_wrong_file_id`](Self::report_wrong_file_id)); requeuing all keeps the counts.
    ///
    /// # Errors
    /// The queue's error.
    pub async fn requeue_dead(&self, key: Option<&MediaKey>) -> Result<u64> {
        match key {
            Some(key) => {
                self.inner.queue.clear_rejections(key).await?;
                lock(&self.inner.bury).remove(key);
            }
            None => lock(&self.inner.bury).clear(),
        }
        let n = self
            .inner
            .queue
            .requeue_dead(key, self.inner.clock.now())
            .await?;
        self.inner.wake.notify_one();
        Ok(n)
    }

    /// Counts a cache-first send to a user, gone out `via` after `latency` or failed with
    /// the error (the send path's metrics).
    pub(crate) fn record_send(&self, outcome: std::result::Result<Via, &Error>, latency: Duration) {
        match outcome {
            Ok(via) => self.inner.metrics.sent(via, latency),
            Err(e) => self.inner.metrics.send_failed(e.retry_after().is_some()),
        }
    }

    /// A snapshot of the engine's counters and latencies.
    ///
    /// # Errors
    /// The queue's error (for its depth).
    pub async fn metrics(&self) -> Result<MetricsSnapshot> {
        let depth = self.inner.queue.depth().await?;
        Ok(self.inner.metrics.snapshot(depth))
    }

    fn uploader(&self, bot: &BotId) -> Result<&Arc<dyn Uploader>> {
        self.inner
            .uploaders
            .get(bot)
            .ok_or_else(|| Error::UnknownBot {
                bot: bot.to_string(),
            })
    }

    async fn stored_size(&self, key: &MediaKey) -> Result<u64> {
        Ok(self.stored(key).await?.0)
    }

    /// The stored object's size and MIME type (`None` when unknown), from one `head`: a job
    /// queued with the type spares its worker's uploader another `head` to learn it.
    async fn stored(&self, key: &MediaKey) -> Result<(u64, Option<String>)> {
        match self.inner.store.head(&key.object_key()).await {
            Ok(meta) => {
                let known = meta.content_type.filter(|ct| ct != OCTET_STREAM);
                Ok((meta.size, known))
            }
            Err(Error::NotFound { .. }) => Err(Error::NotFound {
                what: format!("media {key}: it is not in the store; save it first"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn source(&self, key: &MediaKey) -> Result<MediaSource> {
        if self.inner.bytes.get(&key.sha256).is_none() {
            self.stored_size(key).await?;
        }
        Ok(self.inner.source(key).await)
    }

    async fn enqueue(&self, job: Job) -> Result<PushOutcome> {
        self.enqueue_typed(job, None, false).await
    }

    /// Pushes `job`, remembering for this engine's worker the media's MIME type, if given,
    /// and whether its bytes are `pinned` in the byte cache (the pin is released when the
    /// push queues nothing new).
    async fn enqueue_typed(
        &self,
        job: Job,
        content_type: Option<String>,
        pinned: bool,
    ) -> Result<PushOutcome> {
        let inner = &self.inner;
        let key = job.key.clone();
        // Stamped before the push: the dispatcher may claim the job before push returns.
        {
            let mut pushed = lock(&inner.pushed);
            if pushed.len() >= PUSHED_MAX {
                // Jobs claimed by other instances never come back to remove their stamps.
                let horizon = Instant::now() - Duration::from_secs(600);
                // (A pin dropped here lasts until the byte cache's time to live.)
                pushed.retain(|_, p| p.at > horizon);
                if pushed.len() >= PUSHED_MAX {
                    pushed.clear();
                }
            }
            let at = Instant::now();
            let entry = Pushed {
                at,
                content_type,
                pinned,
            };
            if let Some(old) = pushed.insert(key.clone(), entry)
                && old.pinned
            {
                inner.bytes.unpin(&key.sha256);
            }
        }
        let outcome = inner.queue.push(job, inner.clock.now()).await;
        if !matches!(outcome, Ok(PushOutcome::Queued | PushOutcome::Revived)) {
            let entry = lock(&inner.pushed).remove(&key);
            if entry.is_some_and(|e| e.pinned) {
                inner.bytes.unpin(&key.sha256);
            }
        }
        inner.wake.notify_one();
        outcome
    }
}

impl Inner {
    /// Where a worker or a direct send reads the media: the byte cache of recent saves, else
    /// the store (with its URL, when it has one).
    async fn source(&self, key: &MediaKey) -> MediaSource {
        match self.bytes.get(&key.sha256) {
            Some(bytes) => MediaSource::from_bytes(bytes),
            None => self.store_source(&key.object_key()).await,
        }
    }

    async fn store_source(&self, object: &ObjectKey) -> MediaSource {
        let url = match self.store.url(object, self.config.url_ttl, None).await {
            Ok(url) => url,
            Err(e) => {
                tracing::debug!(object = %object, error = %e, "no URL for the object; uploaders will stream it");
                None
            }
        };
        MediaSource::from_store(self.store.clone(), object.clone(), url)
            .with_url_ttl(self.config.url_ttl)
    }
}

/// `now + d`, or a century from now when `d` is too large to add (`Duration::MAX`).
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl fmt::Debug for PrewarmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("PrewarmEngine")
            .field("instance", &inner.instance)
            .field("store", &inner.store)
            .field("cache", &inner.cache)
            .field("queue", &inner.queue)
            .field("bots", &inner.uploaders.keys().collect::<Vec<_>>())
            .field("config", &inner.config)
            .finish()
    }
}
