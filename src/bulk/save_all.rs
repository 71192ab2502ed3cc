//! [`BulkSaver::save_all`]: many saves in flight, bounded by count and bytes, best first.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, Stream, StreamExt};

use super::progress::Progress;
use crate::engine::{PrewarmEngine, sha256_of};
use crate::error::{Error, Result};
use crate::media::{BotId, Job, MediaKey, MediaKind, Sha256, Timestamp};
use crate::queue::PriorityPolicy;

/// Files up to this size are read whole (within the byte budget); larger ones are streamed.
const READ_WHOLE_MAX: u64 = 64 * 1024 * 1024;

/// Where the bytes of one [`SaveInput`] come from. Nothing is read before the save starts.
#[non_exhaustive]
pub enum SaveSource {
    /// Bytes already in memory.
    Bytes(Bytes),
    /// A file, read when its save starts (streamed when larger than 64 MiB).
    File(PathBuf),
    /// A file whose content hash is known (from an index): when the media is warm already,
    /// or its object is in the store, the file is not read at all.
    FileWithHash(PathBuf, Sha256),
    /// Bytes produced when the save starts: read from elsewhere, generated.
    Deferred(BoxFuture<'static, Result<Bytes>>),
}

impl fmt::Debug for SaveSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveSource::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            SaveSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SaveSource::FileWithHash(p, sha) => {
                f.debug_tuple("FileWithHash").field(p).field(sha).finish()
            }
            SaveSource::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// One media for [`BulkSaver::save_all`]: a tag of the caller's (a path, a row id) answered
/// back with the result, the kind, the size (for the byte budget and the order) and the bytes.
#[derive(Debug)]
pub struct SaveInput<T> {
    /// Answered back in [`Saved::tag`].
    pub tag: T,
    /// What to send the media as.
    pub kind: MediaKind,
    /// Its size in bytes, as far as the caller knows (a file's length from its metadata).
    pub size: u64,
    /// Where its bytes come from.
    pub source: SaveSource,
}

impl<T> SaveInput<T> {
    /// A media whose bytes are in memory.
    pub fn bytes(tag: T, kind: MediaKind, bytes: Bytes) -> Self {
        let size = bytes.len() as u64;
        Self {
            tag,
            kind,
            size,
            source: SaveSource::Bytes(bytes),
        }
    }

    /// A media in a file of `size` bytes, read when its save starts.
    pub fn file(tag: T, kind: MediaKind, path: impl Into<PathBuf>, size: u64) -> Self {
        Self {
            tag,
            kind,
            size,
            source: SaveSource::File(path.into()),
        }
    }

    /// A media of `size` bytes made by `bytes` when its save starts.
    pub fn deferred<F>(tag: T, kind: MediaKind, size: u64, bytes: F) -> Self
    where
        F: Future<Output = Result<Bytes>> + Send + 'static,
    {
        Self {
            tag,
            kind,
            size,
            source: SaveSource::Deferred(bytes.boxed()),
        }
    }
}

/// The answer for one [`SaveInput`], in the order saves complete.
#[derive(Debug)]
#[non_exhaustive]
pub struct Saved<T> {
    /// The input's tag.
    pub tag: T,
    /// The media's key, or why it could not be saved.
    pub result: Result<MediaKey>,
    /// The media had a cached file_id before this save: nothing was stored or queued.
    pub already_warm: bool,
    /// Its bytes were read and hashed (false: a known hash was trusted and the bytes were
    /// not needed).
    pub hashed: bool,
    /// From the save's start to its answer.
    pub elapsed: Duration,
}

/// Saves many media at once: [`save_all`](Self::save_all) keeps up to
/// [`max_in_flight`](Self::with_max_in_flight) saves running, holding at most
/// [`max_bytes`](Self::with_max_bytes) of their bytes, and starts them in the order the queue
/// warms them (photos and small media first, [`PriorityPolicy`]) among the next
/// [`look_ahead`](Self::with_look_ahead) inputs, so that warming starts at once while slow
/// store writes overlap.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use futures::StreamExt;
/// use prewarm::bulk::{BulkSaver, SaveInput};
/// use prewarm::{BotId, MediaKind, MemoryUploader, PrewarmEngine};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> prewarm::Result<()> {
/// let bot = BotId::new("demo")?;
/// let engine = PrewarmEngine::builder()
///     .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
///     .build()?;
/// let inputs = (0..100u32).map(|i| {
///     let jpeg = Bytes::from(format!("\u{ff}\u{d8} photo number {i}"));
///     SaveInput::bytes(i, MediaKind::Photo, jpeg)
/// });
/// let mut saved = BulkSaver::new(&engine, &bot)
///     .with_max_in_flight(16)
///     .save_all(futures::stream::iter(inputs));
/// while let Some(done) = saved.next().await {
///     let key = done.result?;
///     println!("input {} saved as {key}", done.tag);
/// }
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct BulkSaver {
    engine: PrewarmEngine,
    bot: BotId,
    max_in_flight: usize,
    max_bytes: u64,
    look_ahead: usize,
    progress: Option<Progress>,
}

impl BulkSaver {
    /// A saver for `bot`'s media on `engine`: 32 saves in flight, 64 MiB of their bytes, a
    /// look-ahead of 256 inputs.
    ///
    /// Why these: Telegram warms about 30 media a second per bot; a store 150 to 800 ms away
    /// (R2 from a typical host) keeps up with that from about 16 saves in flight, and 32
    /// leave room for its slow tail. 64 MiB holds those 16 at 4 MB each (above the mean of a
    /// typical mix), lets a 50 MB media (the Bot API's upload limit) run beside small ones,
    /// and equals the engine's default byte cache, which keeps the bytes of the same saves:
    /// a bulk import then holds about 64 MiB to 128 MiB of media, whatever their sizes.
    pub fn new(engine: &PrewarmEngine, bot: &BotId) -> Self {
        Self {
            engine: engine.clone(),
            bot: bot.clone(),
            max_in_flight: 32,
            max_bytes: 64 * 1024 * 1024,
            look_ahead: 256,
            progress: None,
        }
    }

    /// Saves running at once, at least 1. A store that takes 150 to 800 ms per write keeps
    /// up with Telegram's 30 warms a second from about 16.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Bytes of the running saves held at once (inputs' sizes). A media larger than this
    /// runs alone.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Inputs read ahead to choose the best next save from, at least 1 (1: in input order).
    /// An input passed over this many times goes next.
    pub fn with_look_ahead(mut self, n: usize) -> Self {
        self.look_ahead = n.max(1);
        self
    }

    /// Counts saves into `progress` as they complete.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Saves every input, answering each as it completes (not in input order). Inputs are
    /// pulled only as the look-ahead window has room, so a stream of millions holds only
    /// the window. One input's failure is its own answer; the others go on. Dropping the
    /// stream cancels the saves still running (what a cancelled save stored stays stored,
    /// content-addressed, and is found by the next save of the same bytes).
    pub fn save_all<T, S>(&self, inputs: S) -> BoxStream<'static, Saved<T>>
    where
        T: Send + 'static,
        S: Stream<Item = SaveInput<T>> + Send + 'static,
    {
        let mut driver = Driver {
            saver: self.clone(),
            input: Some(inputs.boxed()),
            window: VecDeque::new(),
            running: FuturesUnordered::new(),
            bytes_in_flight: 0,
            started: 0,
            policy: PriorityPolicy::default(),
        };
        futures::stream::poll_fn(move |cx| driver.poll(cx)).boxed()
    }
}

struct Pending<T> {
    input: SaveInput<T>,
    rank: i64,
    /// `Driver::started` when it entered the window.
    entered: u64,
}

type Running<T> = BoxFuture<'static, (Saved<T>, u64)>;

struct Driver<T> {
    saver: BulkSaver,
    input: Option<BoxStream<'static, SaveInput<T>>>,
    window: VecDeque<Pending<T>>,
    running: FuturesUnordered<Running<T>>,
    bytes_in_flight: u64,
    started: u64,
    policy: PriorityPolicy,
}

impl<T: Send + 'static> Driver<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Saved<T>>> {
        loop {
            self.fill(cx);
            while let Some(next) = self.pick() {
                self.start(next);
            }
            match Pin::new(&mut self.running).poll_next(cx) {
                Poll::Ready(Some((saved, size))) => {
                    self.bytes_in_flight -= size;
                    if let Some(p) = &self.saver.progress {
                        p.record_save(&saved);
                    }
                    return Poll::Ready(Some(saved));
                }
                // Nothing runs: either all is done, or the input has nothing yet (its waker
                // is registered by `fill`).
                Poll::Ready(None) if self.window.is_empty() => {
                    return if self.input.is_none() {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    };
                }
                // `pick` starts something whenever nothing runs and the window is not empty.
                Poll::Ready(None) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Pulls inputs until the window is full or the input has nothing ready.
    fn fill(&mut self, cx: &mut Context<'_>) {
        while self.window.len() < self.saver.look_ahead {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            match input.poll_next_unpin(cx) {
                Poll::Ready(Some(input)) => {
                    let rank = self.rank(&input);
                    self.window.push_back(Pending {
                        input,
                        rank,
                        entered: self.started,
                    });
                }
                Poll::Ready(None) => self.input = None,
                Poll::Pending => return,
            }
        }
    }

    /// The queue's rank for a job of this kind and size: the same order the workers follow.
    fn rank(&self, input: &SaveInput<T>) -> i64 {
        let key = MediaKey::new(
            self.saver.bot.clone(),
            Sha256::from_bytes([0; 32]),
            input.kind,
        );
        self.policy.rank(&Job::new(key, input.size, Timestamp(0)))
    }

    /// The window's next save, if the bounds let it start: the oldest input passed over
    /// `look_ahead` times, else the best ranked (the first of equals).
    fn pick(&mut self) -> Option<Pending<T>> {
        if self.running.len() >= self.saver.max_in_flight {
            return None;
        }
        let look_ahead = self.saver.look_ahead as u64;
        let aged = self
            .window
            .front()
            .filter(|p| self.started.saturating_sub(p.entered) >= look_ahead)
            .map(|_| 0);
        let index = aged.or_else(|| {
            self.window
                .iter()
                .enumerate()
                .min_by_key(|(i, p)| (p.rank, *i))
                .map(|(i, _)| i)
        })?;
        let size = self.window[index].input.size;
        let fits = self.bytes_in_flight.saturating_add(size) <= self.saver.max_bytes;
        if !fits && !self.running.is_empty() {
            return None;
        }
        self.window.remove(index)
    }

    fn start(&mut self, next: Pending<T>) {
        let size = next.input.size;
        self.bytes_in_flight += size;
        self.started += 1;
        let (engine, bot) = (self.saver.engine.clone(), self.saver.bot.clone());
        let SaveInput {
            tag, kind, source, ..
        } = next.input;
        self.running.push(
            async move {
                let begun = Instant::now();
                let mut flags = Flags::default();
                let result = save_one(&engine, &bot, kind, source, &mut flags).await;
                let saved = Saved {
                    tag,
                    result,
                    already_warm: flags.already_warm,
                    hashed: flags.hashed,
                    elapsed: begun.elapsed(),
                };
                (saved, size)
            }
            .boxed(),
        );
    }
}

/// What one save found and did, beside its key.
#[derive(Debug, Default)]
struct Flags {
    already_warm: bool,
    hashed: bool,
}

/// Saves one media, noting in `saved` what it took.
async fn save_one(
    engine: &PrewarmEngine,
    bot: &BotId,
    kind: MediaKind,
    source: SaveSource,
    saved: &mut Flags,
) -> Result<MediaKey> {
    let bytes = match source {
        SaveSource::Bytes(bytes) => bytes,
        SaveSource::Deferred(bytes) => bytes.await?,
        SaveSource::FileWithHash(path, sha) => {
            let key = MediaKey::new(bot.clone(), sha, kind);
            if engine.cached(&key).await?.is_some() {
                saved.already_warm = true;
                return Ok(key);
            }
            match engine.warm(&key).await {
                Ok(_) => return Ok(key),
                // Not stored (or stored elsewhere, cleared since): read it after all.
                Err(Error::NotFound { .. }) => {
                    return save_file(engine, bot, kind, &path, saved).await;
                }
                Err(e) => return Err(e),
            }
        }
        SaveSource::File(path) => return save_file(engine, bot, kind, &path, saved).await,
    };
    save_bytes(engine, bot, kind, bytes, saved).await
}

/// Hashes `bytes` once: the same digest tells a warm media apart and addresses the save.
async fn save_bytes(
    engine: &PrewarmEngine,
    bot: &BotId,
    kind: MediaKind,
    bytes: Bytes,
    saved: &mut Flags,
) -> Result<MediaKey> {
    let sha = sha256_of(&bytes).await?;
    saved.hashed = true;
    let outcome = engine.save_hashed(bot, bytes, kind, sha).await?;
    saved.already_warm = outcome.already_warm;
    Ok(outcome.key)
}

async fn save_file(
    engine: &PrewarmEngine,
    bot: &BotId,
    kind: MediaKind,
    path: &Path,
    saved: &mut Flags,
) -> Result<MediaKey> {
    let io = |e: std::io::Error| Error::Io {
        context: format!("reading {}", path.display()),
        source: e,
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    if size <= READ_WHOLE_MAX {
        let bytes = Bytes::from(tokio::fs::read(path).await.map_err(io)?);
        return save_bytes(engine, bot, kind, bytes, saved).await;
    }
    // Too large to hold: streamed into the engine, which spools it while hashing it once,
    // refuses it as soon as it passes the kind's limit, and stores nothing when it is warm.
    // (Hashing the file first to skip a warm one would read and hash a cold one twice; a
    // rerun with the file index reads neither.)
    let stream = open(path).await?;
    saved.hashed = true;
    let outcome = engine.save_stream_outcome(bot, stream, kind).await?;
    saved.already_warm = outcome.already_warm;
    Ok(outcome.key)
}

async fn open(path: &Path) -> Result<crate::store::ByteStream> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(crate::store::file_stream(file))
}
