//! [`PrewarmEngine`]: saves media, warms them in the background, and answers what to send.

mod builder;
mod byte_cache;
mod clock;
mod flight;
pub mod metrics;
mod worker;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::byte_cache::ByteCache;
use self::clock::Clock;
use self::flight::Flights;
use self::metrics::{Metrics, MetricsSnapshot};
use crate::cache::FileIdCache;
use crate::error::{Error, Result};
use crate::media::{
    BotId, FileId, Job, MediaKey, MediaKind, ObjectKey, Sha256, Sha256Hasher, SizeLimits,
};
use crate::queue::{JobInfo, JobState, PriorityQueue, PushOutcome};
use crate::store::{MediaStore, PutOutcome, PutPayload};
use crate::upload::{MediaSource, Uploader};

pub use builder::PrewarmEngineBuilder;
pub use worker::EngineTask;

/// Hashing a large media takes milliseconds: do it off the async workers.
const HASH_INLINE_MAX: usize = 256 * 1024;
/// The longest a waiter goes between looks at the durable cache.
const MAX_WAIT_POLL: Duration = Duration::from_secs(30);
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
    /// When each job pushed here was pushed, for the dispatch-delay histogram.
    // std mutexes below: map updates only, never held across an `.await`.
    pushed: Mutex<HashMap<MediaKey, Instant>>,
    /// Rejected file_ids per media, for the weak-id re-warm limit.
    weak: Mutex<HashMap<MediaKey, u32>>,
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
            weak: Mutex::default(),
            running: AtomicBool::new(false),
        }
    }
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

    /// Saves `bytes` as a media of `kind` for `bot`: stores them content-addressed (once, however
    /// many times they are saved) and queues a warm unless the file_id is already cached.
    /// Answers the media's key.
    ///
    /// # Errors
    /// [`Error::EmptyMedia`] and [`Error::TooLarge`] before anything is stored;
    /// [`Error::UnknownBot`] when no uploader serves `bot`; the store's or queue's error.
    pub async fn save(&self, bot: &BotId, bytes: Bytes, kind: MediaKind) -> Result<MediaKey> {
        let inner = &self.inner;
        inner.config.limits.check(kind, bytes.len() as u64)?;
        self.uploader(bot)?;
        let sha = if bytes.len() <= HASH_INLINE_MAX {
            Sha256::of(&bytes)
        } else {
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || Sha256::of(&b))
                .await
                .map_err(|e| Error::io("hashing a media", std::io::Error::other(e)))?
        };
        let key = MediaKey::new(bot.clone(), sha, kind);
        if inner.cache.get(&key).await?.is_some() {
            return Ok(key);
        }
        let body = futures::stream::once({
            let bytes = bytes.clone();
            async move { Ok(bytes) }
        })
        .boxed();
        let size = bytes.len() as u64;
        // Held before the job exists, so that its worker finds the bytes here.
        inner.bytes.insert(sha, bytes);
        self.store_and_enqueue(&key, PutPayload::from_stream(size, sha, body))
            .await?;
        Ok(key)
    }

    /// Saves a media from a stream, without holding it in memory: the bytes are spooled to a
    /// temporary file while hashed, checked against the kind's limit as they arrive, then
    /// stored. Otherwise as [`save`](Self::save).
    ///
    /// # Errors
    /// As [`save`](Self::save), plus [`Error::Io`] from the stream or the spool file.
    pub async fn save_stream<S, E>(
        &self,
        bot: &BotId,
        stream: S,
        kind: MediaKind,
    ) -> Result<MediaKey>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
        self.uploader(bot)?;
        let limit = inner.config.limits.limit(kind);
        let path = inner
            .config
            .spool_dir
            .join(format!(".prewarm-spool-{:016x}", fastrand::u64(..)));
        let spooled = spool(&path, stream, kind, limit).await;
        let result = async {
            let (size, sha) = spooled?;
            inner.config.limits.check(kind, size)?;
            let key = MediaKey::new(bot.clone(), sha, kind);
            if inner.cache.get(&key).await?.is_some() {
                return Ok(key);
            }
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::io("reopening the spool file", e))?;
            let body = crate::store::file_stream(file);
            self.store_and_enqueue(&key, PutPayload::from_stream(size, sha, body))
                .await?;
            Ok(key)
        }
        .await;
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    /// Queues a warm of a media already in the store (saved earlier, perhaps for another bot
    /// or kind).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the store has no object for it; size and bot errors as
    /// [`save`](Self::save).
    pub async fn warm(&self, key: &MediaKey) -> Result<PushOutcome> {
        self.uploader(&key.bot)?;
        let size = self.stored_size(key).await?;
        self.inner.config.limits.check(key.kind, size)?;
        self.enqueue(Job::new(key.clone(), size, self.inner.clock.now()))
            .await
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

    /// Waits until `key` has a file_id, for at most `timeout`, and answers it. While it waits,
    /// the media's job goes ahead of every job nobody waits for; a media in the store with no
    /// job (its file_id was evicted, say) is queued again.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the deadline (the warm goes on); [`Error::WarmFailed`] when the
    /// media failed for good; [`Error::NotFound`] when it is neither cached nor stored.
    pub async fn wait_ready(&self, key: &MediaKey, timeout: Duration) -> Result<FileId> {
        if let Some(id) = self.lookup(key) {
            return Ok(id);
        }
        let inner = &self.inner;
        let deadline = deadline_after(timeout);
        let mut rx = inner.flights.subscribe(key);
        let result = async {
            if let Some(id) = inner.cache.get(key).await? {
                return Ok(id);
            }
            if !inner.queue.promote(key, inner.clock.now()).await? {
                if let Some(JobInfo {
                    state: JobState::Dead,
                    last_error,
                    ..
                }) = inner.queue.get(key).await?
                {
                    return Err(dead_error(key, last_error));
                }
                let size = self.stored_size(key).await?;
                let mut job = Job::new(key.clone(), size, inner.clock.now());
                job.demand = true;
                self.enqueue(job).await?;
            }
            inner.wake.notify_one();
            let mut poll = inner.config.poll_interval;
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        let outcome = rx.borrow_and_update().clone();
                        match outcome {
                            Some(Ok(id)) => return Ok(id),
                            Some(Err(reason)) => {
                                return Err(Error::WarmFailed { key: key.clone(), reason });
                            }
                            None if changed.is_err() => {
                                // Published and gone: the file_id is in the cache.
                                rx = inner.flights.subscribe(key);
                            }
                            None => {}
                        }
                    }
                    () = tokio::time::sleep(poll) => {
                        // Another process may have warmed it: its workers cannot tell ours.
                        // Each look doubles the next wait (to 30 s), so that many waiters
                        // do not load the database.
                        poll = (poll * 2).min(inner.config.poll_interval.max(MAX_WAIT_POLL));
                        if let Some(id) = inner.cache.get(key).await? {
                            return Ok(id);
                        }
                        if let Some(JobInfo { state: JobState::Dead, last_error, .. }) =
                            inner.queue.get(key).await?
                        {
                            return Err(dead_error(key, last_error));
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        return Err(Error::Timeout {
                            what: format!("the file_id of {key}"),
                            waited: timeout,
                        });
                    }
                }
            }
        }
        .await;
        inner.flights.unsubscribe(key, rx);
        result
    }

    /// What to send for `key` right now: its file_id when warm, or when it warms within
    /// `wait`; otherwise its bytes, to upload directly. A media that exists is always
    /// sendable: there is no "not ready" error.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the media is neither cached nor stored; the store's error.
    pub async fn sendable(&self, key: &MediaKey, wait: Duration) -> Result<Sendable> {
        match self.wait_ready(key, wait).await {
            Ok(id) => Ok(Sendable::FileId(id)),
            Err(e @ Error::NotFound { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(media = %key, error = %e, "not warm in time; sending the bytes");
                Ok(Sendable::Upload(self.source(key).await?))
            }
        }
    }

    /// Records a file_id obtained outside the engine (a direct upload after
    /// [`Sendable::Upload`]): it is cached, waiters get it, and a queued warm of the media
    /// finds it and uploads nothing.
    ///
    /// # Errors
    /// The cache's error.
    pub async fn record_file_id(&self, key: &MediaKey, file_id: FileId) -> Result<()> {
        self.inner.cache.put(key, &file_id).await?;
        self.inner.flights.publish(key, Ok(file_id));
        Ok(())
    }

    /// Reports that Telegram rejected `file_id` when sending `key` ("wrong file identifier").
    /// The file_id is invalidated (unless another was stored since) and the media re-warmed
    /// with priority, up to the configured number of times per media.
    ///
    /// # Errors
    /// [`Error::WarmFailed`] once the media's file_id was rejected more often than the
    /// re-warm limit allows; the cache's, store's or queue's error.
    pub async fn report_wrong_file_id(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let inner = &self.inner;
        inner.cache.invalidate(key, Some(file_id)).await?;
        let rejected = {
            let mut weak = lock(&inner.weak);
            let n = weak.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        if rejected > inner.config.retry_weak_id {
            return Err(Error::WarmFailed {
                key: key.clone(),
                reason: format!(
                    "Telegram rejected its file_id {rejected} times (MEDIA_PREWARM_RETRY_WEAK_ID={})",
                    inner.config.retry_weak_id
                ),
            });
        }
        let size = self.stored_size(key).await?;
        let mut job = Job::new(key.clone(), size, inner.clock.now());
        job.demand = true;
        self.enqueue(job).await?;
        Ok(())
    }

    /// Dead jobs with their last errors, oldest first.
    ///
    /// # Errors
    /// The queue's error.
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<JobInfo>> {
        self.inner.queue.dead(limit).await
    }

    /// Requeues the dead job of `key`, or all dead jobs; answers how many.
    ///
    /// # Errors
    /// The queue's error.
    pub async fn requeue_dead(&self, key: Option<&MediaKey>) -> Result<u64> {
        let n = self
            .inner
            .queue
            .requeue_dead(key, self.inner.clock.now())
            .await?;
        self.inner.wake.notify_one();
        Ok(n)
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
        match self.inner.store.head(&key.object_key()).await {
            Ok(meta) => Ok(meta.size),
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

    /// Stores a media's bytes at its content address and queues its warm.
    async fn store_and_enqueue(&self, key: &MediaKey, payload: PutPayload) -> Result<()> {
        let inner = &self.inner;
        let size = payload.len();
        let payload = payload.with_sniffed_content_type(key.kind).await;
        if inner.store.put(&key.object_key(), payload).await? == PutOutcome::Created {
            inner.metrics.stored(size);
        }
        self.enqueue(Job::new(key.clone(), size, inner.clock.now()))
            .await?;
        Ok(())
    }

    async fn enqueue(&self, job: Job) -> Result<PushOutcome> {
        let inner = &self.inner;
        let key = job.key.clone();
        // Stamped before the push: the dispatcher may claim the job before push returns.
        {
            let mut pushed = lock(&inner.pushed);
            if pushed.len() >= PUSHED_MAX {
                // Jobs claimed by other instances never come back to remove their stamps.
                let horizon = Instant::now() - Duration::from_secs(600);
                pushed.retain(|_, at| *at > horizon);
                if pushed.len() >= PUSHED_MAX {
                    pushed.clear();
                }
            }
            pushed.insert(key.clone(), Instant::now());
        }
        let outcome = inner.queue.push(job, inner.clock.now()).await;
        if !matches!(outcome, Ok(PushOutcome::Queued | PushOutcome::Revived)) {
            lock(&inner.pushed).remove(&key);
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

fn dead_error(key: &MediaKey, last_error: Option<String>) -> Error {
    Error::WarmFailed {
        key: key.clone(),
        reason: last_error.unwrap_or_else(|| "failed for good".to_owned()),
    }
}

/// Writes `stream` to `path`, hashing it, and fails as soon as it passes `limit` bytes.
async fn spool<S, E>(
    path: &std::path::Path,
    stream: S,
    kind: MediaKind,
    limit: u64,
) -> Result<(u64, Sha256)>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io(format!("creating spool file {}", path.display()), e))?;
    let mut hasher = Sha256Hasher::new();
    let mut stream = std::pin::pin!(stream.map_err(|e| std::io::Error::other(e.into())));
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Error::io("reading the media stream", e))?
    {
        hasher.update(&chunk);
        if hasher.len() > limit {
            return Err(Error::TooLarge {
                kind,
                size: hasher.len(),
                limit,
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io("writing the spool file", e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::io("writing the spool file", e))?;
    let size = hasher.len();
    Ok((size, hasher.finish()))
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
