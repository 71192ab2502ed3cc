use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{UploadRequest, Uploaded, Uploader};
use crate::error::{Error, Result};
use crate::media::{BotId, FileId, MediaKey, MediaKind, Sha256, SizeLimits};

/// A fault hook: given the media and the number of this upload attempt for it (1 for the
/// first), answer an error to fail the attempt with, or `None` to let it succeed.
type FaultFn = dyn Fn(&MediaKey, u32) -> Option<Error> + Send + Sync;

/// Which media go by URL: given the kind, the size and the MIME type (if known).
type UrlRule = dyn Fn(MediaKind, u64, Option<&str>) -> bool + Send + Sync;

/// An in-process [`Uploader`] that stands in for Telegram: it reads the whole media, checks
/// its SHA-256 against the request, waits a configurable latency, and answers a file_id of its
/// own. Faults can be injected, and [`stats`](Self::stats) counts what happened, so tests can
/// assert exactly how many uploads each media cost. With [`with_urls`](Self::with_urls) it
/// takes some media by URL instead, reading none of their bytes, as Telegram fetches a URL
/// itself.
///
/// File ids have the form `<bot>:<kind>:<sha256 prefix>:<n>`, where `n` counts successful
/// uploads of that media, so a test can tell which upload a cached id came from.
///
/// # Clone
/// Clones share the statistics and the configuration.
///
/// ```
/// use prewarm::{BotId, MemoryUploader};
/// use std::time::Duration;
///
/// let uploader = MemoryUploader::new(BotId::new("demo")?)
///     .with_latency(Duration::from_millis(5)..Duration::from_millis(20));
/// assert_eq!(uploader.stats().uploads, 0);
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Clone)]
pub struct MemoryUploader {
    bot: BotId,
    latency: Range<Duration>,
    fault: Option<Arc<FaultFn>>,
    by_url: Option<Arc<UrlRule>>,
    // A std mutex: only counters are updated under it, never across an `.await`.
    stats: Arc<Mutex<Stats>>,
}

#[derive(Debug, Default)]
struct Stats {
    attempts: HashMap<MediaKey, u32>,
    successes: HashMap<MediaKey, u32>,
    in_flight: HashMap<MediaKey, u32>,
    total_in_flight: u32,
    snapshot: MemoryUploaderStats,
}

/// What a [`MemoryUploader`] has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUploaderStats {
    /// Upload attempts, failed or not.
    pub uploads: u64,
    /// Attempts that produced a file_id.
    pub succeeded: u64,
    /// Attempts failed by the fault hook.
    pub faults: u64,
    /// Bytes read from sources.
    pub bytes: u64,
    /// Attempts that took the media by URL (see [`MemoryUploader::with_urls`]).
    pub by_url: u64,
    /// Most uploads running at once.
    pub max_in_flight: u32,
    /// Times an upload started while another upload of the same media was running.
    pub overlapping: u64,
}

impl MemoryUploader {
    /// An uploader for `bot` with no latency and no faults.
    pub fn new(bot: BotId) -> Self {
        Self {
            bot,
            latency: Duration::ZERO..Duration::ZERO,
            fault: None,
            by_url: None,
            stats: Arc::default(),
        }
    }

    /// Takes a media by URL when its source offers one and `by_url` answers `true` for its
    /// kind, size and MIME type (the source's [`content_type`](super::MediaSource::content_type)):
    /// the upload then reads none of its bytes and checks no hash, as Telegram fetches the
    /// URL itself (this stand-in fetches nothing). [`needs_bytes`](Uploader::needs_bytes)
    /// answers the opposite of `by_url`. Without it, every media's bytes are read.
    #[must_use]
    pub fn with_urls(
        mut self,
        by_url: impl Fn(MediaKind, u64, Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.by_url = Some(Arc::new(by_url));
        self
    }

    /// Each upload waits a uniformly random time in `latency` (tokio time, so paused-time tests
    /// run instantly).
    #[must_use]
    pub fn with_latency(mut self, latency: Range<Duration>) -> Self {
        self.latency = latency;
        self
    }

    /// Fails attempts for which `fault` answers an error. The hook runs after the latency.
    #[must_use]
    pub fn with_faults(
        mut self,
        fault: impl Fn(&MediaKey, u32) -> Option<Error> + Send + Sync + 'static,
    ) -> Self {
        self.fault = Some(Arc::new(fault));
        self
    }

    /// Totals so far.
    pub fn stats(&self) -> MemoryUploaderStats {
        self.lock().snapshot.clone()
    }

    /// Upload attempts made for `key`.
    pub fn attempts(&self, key: &MediaKey) -> u32 {
        self.lock().attempts.get(key).copied().unwrap_or(0)
    }

    /// Successful uploads of `key`.
    pub fn successes(&self, key: &MediaKey) -> u32 {
        self.lock().successes.get(key).copied().unwrap_or(0)
    }

    /// The file_id the `n`-th successful upload of `key` answers.
    pub fn file_id_for(&self, key: &MediaKey, n: u32) -> FileId {
        FileId::new(format!(
            "{}:{}:{}:{n}",
            key.bot,
            key.kind,
            &key.sha256.to_hex()[..16]
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Stats> {
        // Counters only: a poisoned lock still holds usable numbers.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn random_latency(&self) -> Duration {
        let Range { start, end } = self.latency;
        if end <= start {
            return start;
        }
        let span = (end - start).as_micros() as u64;
        start + Duration::from_micros(fastrand::u64(..span))
    }
}

/// Decrements the in-flight counters however the upload ends (even when its future is
/// dropped mid-way by a shutdown).
struct InFlight<'a> {
    uploader: &'a MemoryUploader,
    key: &'a MediaKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut stats = self.uploader.lock();
        stats.total_in_flight -= 1;
        if let Some(n) = stats.in_flight.get_mut(self.key) {
            *n -= 1;
            if *n == 0 {
                stats.in_flight.remove(self.key);
            }
        }
    }
}

#[async_trait]
impl Uploader for MemoryUploader {
    fn bot(&self) -> &BotId {
        &self.bot
    }

    async fn upload(&self, request: UploadRequest) -> Result<Uploaded> {
        let key = &request.key;
        if key.bot != self.bot {
            return Err(Error::Rejected {
                message: format!(
                    "media of bot {} sent to the uploader of bot {}",
                    key.bot, self.bot
                ),
            });
        }
        SizeLimits::bot_api().check(key.kind, request.size)?;
        let attempt = {
            let mut stats = self.lock();
            let attempt = stats.attempts.entry(key.clone()).or_default();
            *attempt += 1;
            let attempt = *attempt;
            let running = stats.in_flight.entry(key.clone()).or_default();
            *running += 1;
            let overlapping = *running > 1;
            stats.total_in_flight += 1;
            let total = stats.total_in_flight;
            let snap = &mut stats.snapshot;
            snap.uploads += 1;
            snap.overlapping += u64::from(overlapping);
            snap.max_in_flight = snap.max_in_flight.max(total);
            attempt
        };
        let _guard = InFlight {
            uploader: self,
            key,
        };

        let by_url = match &self.by_url {
            Some(rule) if request.source.url().is_some() => {
                let content_type = request.source.content_type(key.kind).await?;
                rule(key.kind, request.size, content_type.as_deref())
            }
            _ => false,
        };
        if by_url {
            self.lock().snapshot.by_url += 1;
        } else {
            let bytes = request.source.read_all().await?;
            if Sha256::of(&bytes) != key.sha256 || bytes.len() as u64 != request.size {
                return Err(Error::Rejected {
                    message: format!("the bytes read for {key} do not match its hash or size"),
                });
            }
            self.lock().snapshot.bytes += bytes.len() as u64;
        }
        let latency = self.random_latency();
        if !latency.is_zero() {
            // A zero sleep would still wait for the timer's next millisecond tick.
            tokio::time::sleep(latency).await;
        }

        if let Some(err) = self.fault.as_ref().and_then(|f| f(key, attempt)) {
            self.lock().snapshot.faults += 1;
            return Err(err);
        }
        let n = {
            let mut stats = self.lock();
            stats.snapshot.succeeded += 1;
            let n = stats.successes.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        Ok(Uploaded {
            file_id: self.file_id_for(key, n),
            file_unique_id: Some(key.sha256.to_hex()[..16].to_owned()),
        })
    }

    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool {
        self.by_url
            .as_ref()
            .is_none_or(|rule| !rule(kind, size, content_type))
    }

    /// Remembers nothing that could answer `file_id` again: each upload mints a new one.
    async fn rejected(&self, _key: &MediaKey, _file_id: &FileId) -> Result<()> {
        Ok(())
    }
}

impl fmt::Debug for MemoryUploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUploader")
            .field("bot", &self.bot)
            .field("latency", &self.latency)
            .field("faults", &self.fault.is_some())
            .field("urls", &self.by_url.is_some())
            .finish()
    }
}
