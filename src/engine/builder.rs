use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Config, Inner, PrewarmEngine};
use crate::cache::{FileIdCache, LruFileIdCache};
use crate::error::{Error, Result};
use crate::media::SizeLimits;
use crate::queue::{MemoryQueue, PriorityQueue};
use crate::store::{MediaStore, MemoryStore};
use crate::upload::Uploader;

/// Most uploads one engine runs at once; far above what Telegram's limits let through.
const MAX_CONCURRENCY: usize = 1024;

/// Builds a [`PrewarmEngine`]. Setters never fail; [`build`](Self::build) validates.
///
/// Every part has an in-memory default ([`MemoryStore`], [`LruFileIdCache`] of 100,000
/// entries, [`MemoryQueue`]); at least one [`Uploader`] is required.
///
/// ```
/// use std::sync::Arc;
/// use prewarm::{BotId, MemoryUploader, PrewarmEngine};
///
/// let engine = PrewarmEngine::builder()
///     .with_uploader(Arc::new(MemoryUploader::new(BotId::new("demo")?)))
///     .with_concurrency(8)
///     .build()?;
/// # Ok::<(), prewarm::Error>(())
/// ```
#[must_use]
pub struct PrewarmEngineBuilder {
    store: Option<Arc<dyn MediaStore>>,
    cache: Option<Arc<dyn FileIdCache>>,
    queue: Option<Arc<dyn PriorityQueue>>,
    uploaders: Vec<Arc<dyn Uploader>>,
    config: Config,
    byte_cache: (u64, Duration),
    env_errors: Vec<String>,
}

impl std::fmt::Debug for PrewarmEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrewarmEngineBuilder")
            .field("store", &self.store)
            .field("cache", &self.cache)
            .field("queue", &self.queue)
            .field("uploaders", &self.uploaders)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for PrewarmEngineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PrewarmEngineBuilder {
    /// A builder with the defaults: concurrency 8, 5 attempts, backoff from 1 s to 5 min,
    /// 15 s leases (a crashed worker's job is taken over within 15 s), a 1 s poll fallback, a 30 s shutdown grace, the public Bot API's size
    /// limits, a 64 MiB byte cache of recent saves kept 10 minutes, one re-warm of a rejected
    /// file_id.
    pub fn new() -> Self {
        Self {
            store: None,
            cache: None,
            queue: None,
            uploaders: Vec::new(),
            config: Config {
                concurrency: 8,
                max_attempts: 5,
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(300),
                lease: Duration::from_secs(15),
                poll_interval: Duration::from_secs(1),
                shutdown_grace: Duration::from_secs(30),
                limits: SizeLimits::bot_api(),
                url_ttl: Duration::from_secs(600),
                retry_weak_id: 1,
                spool_dir: std::env::temp_dir(),
            },
            byte_cache: (64 * 1024 * 1024, Duration::from_secs(600)),
            env_errors: Vec::new(),
        }
    }

    /// A builder with the defaults, then the engine's environment variables where set:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `MEDIA_PREWARM_CONCURRENCY` | uploads at once, 1 to 1024 | 8 |
    /// | `MEDIA_PREWARM_INTERVAL_MS` | poll fallback for queues that cannot notify | 1000 |
    /// | `MEDIA_PREWARM_RETRY_WEAK_ID` | re-warms of a file_id Telegram rejects before the media fails | 1 |
    ///
    /// A malformed value is reported by [`build`](Self::build), naming the variable.
    pub fn from_env() -> Self {
        Self::from_lookup(&crate::env::process)
    }

    /// [`from_env`](Self::from_env) over any lookup (tests pass a map).
    pub(crate) fn from_lookup(get: crate::env::Lookup<'_>) -> Self {
        let mut builder = Self::new();
        if let Some(n) = builder.number(
            get,
            "MEDIA_PREWARM_CONCURRENCY",
            "a whole number from 1 to 1024",
        ) {
            builder.config.concurrency = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(ms) = builder.number(
            get,
            "MEDIA_PREWARM_INTERVAL_MS",
            "milliseconds, a whole number",
        ) {
            builder.config.poll_interval = Duration::from_millis(ms);
        }
        if let Some(n) = builder.number(
            get,
            "MEDIA_PREWARM_RETRY_WEAK_ID",
            "a whole number, 0 or more",
        ) {
            builder.config.retry_weak_id = u32::try_from(n).unwrap_or(u32::MAX);
        }
        builder
    }

    fn number(&mut self, get: crate::env::Lookup<'_>, name: &str, expected: &str) -> Option<u64> {
        let value = match get(name) {
            Ok(value) => value?,
            Err(e) => {
                self.env_errors.push(e.to_string());
                return None;
            }
        };
        match value.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.env_errors
                    .push(format!("{name}={value:?} is not {expected}"));
                None
            }
        }
    }

    /// Where media bytes are kept (default: a [`MemoryStore`]).
    pub fn with_store(mut self, store: Arc<dyn MediaStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where file_ids are kept (default: an [`LruFileIdCache`] of 100,000 entries).
    pub fn with_cache(mut self, cache: Arc<dyn FileIdCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The warm-job queue (default: a [`MemoryQueue`]).
    pub fn with_queue(mut self, queue: Arc<dyn PriorityQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Adds the uploader of one bot; one per bot.
    pub fn with_uploader(mut self, uploader: Arc<dyn Uploader>) -> Self {
        self.uploaders.push(uploader);
        self
    }

    /// How many uploads run at once, whatever the queue holds (1 to 1024).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// Failed attempts after which a job goes to the dead state (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// Backoff after the n-th failed attempt: `base * 2^(n-1)`, at most `max`, of which a
    /// random half is jitter.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_max = max;
        self
    }

    /// How long a claimed job is held before another worker may take it over; a running
    /// upload extends its lease every half lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How often to look for work when the queue cannot notify (and for file_ids stored by
    /// other processes while waiting).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How long a shutdown lets running uploads finish before releasing them to the queue.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Upload size limits per kind (default: the public Bot API's).
    pub fn with_size_limits(mut self, limits: SizeLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// The byte cache of recent saves: at most `budget` bytes, each kept at most `ttl`. A
    /// zero budget turns it off.
    ///
    /// A file of up to half the budget is kept. One the upload will need by its bytes (the
    /// uploader's [`needs_bytes`](crate::Uploader::needs_bytes), or no URL from the store) is
    /// pinned until one of the engine's workers takes it (pinned files fill at most the
    /// budget), and its job goes ahead ([`Job::hot`](crate::Job::hot)). A running upload
    /// holds what it took from the cache until it ends, outside the budget: the engine holds
    /// at most `budget` plus half of it per running upload (`with_concurrency`).
    pub fn with_byte_cache(mut self, budget: u64, ttl: Duration) -> Self {
        self.byte_cache = (budget, ttl);
        self
    }

    /// How long the URLs handed to uploaders stay valid.
    pub fn with_url_ttl(mut self, ttl: Duration) -> Self {
        self.config.url_ttl = ttl;
        self
    }

    /// Re-warms of a file_id Telegram rejects when sent, before the media is marked failed.
    pub fn with_retry_weak_id(mut self, retries: u32) -> Self {
        self.config.retry_weak_id = retries;
        self
    }

    /// Where [`PrewarmEngine::save_stream`] spools a stream while hashing it (default: the
    /// system's temporary folder).
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.spool_dir = dir.into();
        self
    }

    /// Validates the configuration and builds the engine. It does no I/O and starts nothing:
    /// call [`PrewarmEngine::run`] or [`PrewarmEngine::spawn`].
    ///
    /// # Errors
    /// [`Error::Config`] naming every problem: a malformed environment variable, no
    /// uploader, two uploaders for one bot, a concurrency outside 1 to 1024, zero attempts,
    /// a backoff base above its maximum, a lease under one second.
    pub fn build(self) -> Result<PrewarmEngine> {
        let mut problems = self.env_errors;
        let c = &self.config;
        if !(1..=MAX_CONCURRENCY).contains(&c.concurrency) {
            problems.push(format!(
                "concurrency is {}, expected 1 to {MAX_CONCURRENCY}",
                c.concurrency
            ));
        }
        if c.max_attempts == 0 {
            problems.push("max attempts is 0, expected at least 1".to_owned());
        }
        if c.backoff_base > c.backoff_max {
            problems.push(format!(
                "backoff base {:?} is above its maximum {:?}",
                c.backoff_base, c.backoff_max
            ));
        }
        if c.lease < Duration::from_secs(1) {
            problems.push(format!("lease {:?} is under one second", c.lease));
        }
        if c.poll_interval.is_zero() {
            problems.push("poll interval is zero, expected at least 1 ms".to_owned());
        }
        let mut uploaders = HashMap::new();
        if self.uploaders.is_empty() {
            problems.push("no uploader: add one per bot with with_uploader".to_owned());
        }
        for uploader in self.uploaders {
            let bot = uploader.bot().clone();
            if uploaders.insert(bot.clone(), uploader).is_some() {
                problems.push(format!("two uploaders for bot {bot}"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config {
                message: problems.join("; "),
            });
        }
        let cache = match self.cache {
            Some(cache) => cache,
            None => Arc::new(LruFileIdCache::new(100_000)?),
        };
        Ok(PrewarmEngine {
            inner: Arc::new(Inner::new(
                self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                cache,
                self.queue.unwrap_or_else(|| Arc::new(MemoryQueue::new())),
                uploaders,
                self.config,
                self.byte_cache,
            )),
        })
    }
}
