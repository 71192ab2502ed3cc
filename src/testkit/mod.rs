//! A fake Telegram Bot API on loopback, for tests: the crate's own, and bot authors'.
//!
//! [`FakeBotApi`] is a real HTTP server on `127.0.0.1:<random port>` that answers the calls a
//! media bot makes the way the Bot API does: the send methods (`sendPhoto`, `sendVideo`,
//! `sendAnimation`, `sendDocument`, `sendAudio`, `sendVoice`, `sendVideoNote`,
//! `sendSticker`) with a multipart upload, a URL (which it fetches itself, from loopback
//! only) or a file_id; `sendMediaGroup`; `sendMessage` (text); `forwardMessage`;
//! `deleteMessage`; `getMe`. It keeps to the real API's rules:
//!
//! - message ids as Telegram assigns them: a supergroup (a "-100..." id) numbers its
//!   messages itself; private chats (positive ids) and basic groups (other negative ids)
//!   share one counter per bot, the bot's message box. `chat.type` is "private", "group" or
//!   "supergroup" by the id. Every message is kept whole ([`FakeBotApi::message`]) until
//!   deleted; a bot deletes and forwards its own;
//! - captions (the send methods that take one, and album items) are echoed and kept; over
//!   1024 characters the send is refused "message caption is too long";
//! - `forwardMessage` makes a new message in `chat_id`, with the same media (file_ids) and
//!   caption and a `forward_origin`, under the rate limits and chat rules of a send to
//!   `chat_id`; a message never made, or deleted, is "message to forward not found" and
//!   counts against no limit. A forward is no upload ([`FakeStats::forwards`]);
//! - file_ids belong to the bot token that obtained them, and to one media type;
//! - a photo comes back in several sizes, smallest first; an animation fills both
//!   `animation` and `document`, with distinct file_ids;
//! - its own table of Telegram's numbers and rules (`rules.rs`), shared with nothing in the
//!   client it tests: 10 MB photos and 50 MB other files by upload (413 over 50 MB), 5 MB
//!   photos and 20 MB others by URL; by URL it really fetches the file over HTTP and reads
//!   the served `Content-Type`, which must suit the method (documents only as PDF, ZIP or
//!   GIF, voice only as audio/ogg, stickers only as WEBP, no video notes) or the send is
//!   answered "wrong type of the web page content"; a voice note over 1 MB by URL arrives as
//!   a document; a URL's outcome is cached, as Telegram does;
//! - chats that refuse the bot ([`ChatProblem`]: no administrator rights in a channel, not a
//!   member, kicked, no right to send photos), with Telegram's answers;
//! - the real error texts (`"Bad Request: chat not found"`, `"Unauthorized"`,
//!   `"Too Many Requests: retry after N"`, ...);
//! - rate limits per bot and per chat: over them it answers 429 with `retry_after` (in
//!   `parameters` and the `Retry-After` header) and bans the chat (or the bot) for that long;
//!   every request that arrives inside a ban is counted as a **violation** and prolongs the
//!   ban, as Telegram does ([`FakeLimits`], [`FakeRate`]: 20 in any minute for a group). A request is
//!   counted when it arrives (its body read), in order of arrival, and takes its
//!   [`Latency`] after that. Its message is made before that latency, and a client that
//!   leaves early does not undo it: like Telegram, the fake finishes (and logs) a request
//!   whose client has gone.
//!
//! Faults can be injected ([`Faults`]: 5xx replies, some as HTML pages like Telegram's front
//! end sends, and connection resets; [`Latency`]), and [`FakeBotApi::stats`] counts what
//! happened for assertions: uploads per content hash, bytes, 429s, violations, most
//! requests in flight.
//!
//! ```
//! use bytes::Bytes;
//! use prewarm::testkit::{FakeBotApi, FakeLimits};
//! use prewarm::upload::{MediaSource, UploadRequest};
//! use prewarm::{BotId, MediaKey, MediaKind, Sha256, TelegramUploader, Uploader};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> prewarm::Result<()> {
//! let token = "123456:TEST-token-0123456789";
//! let fake = FakeBotApi::builder()
//!     .with_bot(token)
//!     .with_chats([-100_1])
//!     .with_limits(FakeLimits::off())
//!     .start()
//!     .await?;
//! let uploader = TelegramUploader::builder()
//!     .with_token(token)
//!     .with_api_base(fake.base_url())
//!     .with_warmup_chats([-100_1])
//!     .build()?;
//!
//! let bytes = Bytes::from_static(b"\xff\xd8\xff\xe0 a tiny jpeg");
//! let key = MediaKey::new(uploader.bot().clone(), Sha256::of(&bytes), MediaKind::Photo);
//! let request = UploadRequest { key, size: bytes.len() as u64, source: MediaSource::from_bytes(bytes.clone()) };
//! let uploaded = uploader.upload(request).await?;
//!
//! let file = fake.file(uploaded.file_id.as_str()).expect("the fake issued it");
//! assert!(file.largest, "the largest photo size is the one kept");
//! assert_eq!(fake.uploads_of(&Sha256::of(&bytes)).succeeded, 1);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

mod files;
mod forward;
mod limits;
mod messages;
mod rules;
mod send;
mod server;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::media::{MediaKind, Sha256};

pub use limits::{FakeLimits, FakeRate};
pub use rules::ChatProblem;

/// Faults injected into requests. Each request draws independently; faults hit after the
/// request's body (and any URL) is read, so an upload that fails this way was received.
///
/// ```
/// use prewarm::testkit::Faults;
///
/// let flaky = Faults::none().with_server_errors(0.05).with_resets(0.01);
/// # let _ = flaky;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    server_errors: f64,
    resets: f64,
    html: bool,
    url_generation: f64,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Answers this share of requests (0 to 1) with a 5xx: a JSON 500, or, one time in two,
    /// a 502 with an HTML page as Telegram's front end sends.
    #[must_use]
    pub fn with_server_errors(mut self, rate: f64) -> Self {
        self.server_errors = rate.clamp(0.0, 1.0);
        self.html = true;
        self
    }

    /// Closes the connection without an answer for this share of requests (0 to 1).
    #[must_use]
    pub fn with_resets(mut self, rate: f64) -> Self {
        self.resets = rate.clamp(0.0, 1.0);
        self
    }

    /// Fails this share (0 to 1) of the URLs the fake fetched and would have taken, with
    /// 400 "Bad Request: can't upload file by URL": the Bot API server's text when Telegram
    /// fetched the content but could not make a file of it ("File generation failed").
    #[must_use]
    pub fn with_url_generation_failures(mut self, rate: f64) -> Self {
        self.url_generation = rate.clamp(0.0, 1.0);
        self
    }
}

/// How long the fake takes to answer: uniform in a range, with an optional slow tail. The
/// time runs after the request has been counted against the rate limits.
///
/// ```
/// use std::time::Duration;
/// use prewarm::testkit::Latency;
///
/// let ms = Duration::from_millis;
/// // Mostly 1-5 ms, one request in twenty 50-100 ms.
/// let latency = Latency::uniform(ms(1)..ms(5)).with_tail(0.05, ms(50)..ms(100));
/// # let _ = latency;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Latency {
    base: Range<Duration>,
    tail: Option<(f64, Range<Duration>)>,
}

impl Latency {
    /// No added latency.
    pub fn none() -> Self {
        Self::default()
    }

    /// Always `d`.
    pub fn fixed(d: Duration) -> Self {
        Self {
            base: d..d,
            tail: None,
        }
    }

    /// Uniform in `range`.
    pub fn uniform(range: Range<Duration>) -> Self {
        Self {
            base: range,
            tail: None,
        }
    }

    /// A share `p` (0 to 1) of requests take a time uniform in `range` instead.
    #[must_use]
    pub fn with_tail(mut self, p: f64, range: Range<Duration>) -> Self {
        self.tail = Some((p.clamp(0.0, 1.0), range));
        self
    }

    fn draw(&self) -> Duration {
        let range = match &self.tail {
            Some((p, tail)) if fastrand::f64() < *p => tail,
            _ => &self.base,
        };
        uniform(range)
    }
}

fn uniform(range: &Range<Duration>) -> Duration {
    if range.end <= range.start {
        return range.start;
    }
    let span = (range.end - range.start).as_nanos().min(u64::MAX as u128) as u64;
    range.start + Duration::from_nanos(fastrand::u64(..span))
}

/// What the fake has seen, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakeStats {
    /// Requests received (all methods, faults included).
    pub requests: u64,
    /// Send requests received.
    pub sends: u64,
    /// Media bodies received, by multipart or by fetching a URL.
    pub uploads: u64,
    /// Bytes of media received.
    pub upload_bytes: u64,
    /// URLs fetched.
    pub url_fetches: u64,
    /// Sends by file_id that succeeded.
    pub sent_by_file_id: u64,
    /// Messages forwarded (`forwardMessage` calls that created a message). A forward is no
    /// upload: it counts in neither `uploads` nor [`FakeBotApi::uploads_of`].
    pub forwards: u64,
    /// Text messages sent (`sendMessage`).
    pub texts: u64,
    /// Messages created: sent (media or text), one per album item, or forwarded.
    pub messages: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// 429 replies.
    pub too_many_requests: u64,
    /// Requests that arrived before the `retry_after` of their chat or bot had passed.
    pub violations: u64,
    /// Injected 5xx replies.
    pub server_errors: u64,
    /// Injected connection resets.
    pub resets: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u32,
}

/// What the fake has seen of one content hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaUploads {
    /// Requests that carried (or made the fake fetch) these bytes.
    pub uploads: u32,
    /// Of those, how many did not produce a message (429, 5xx, reset, refusal).
    pub failed: u32,
    /// Of those, how many produced a message.
    pub succeeded: u32,
}

/// A file the fake issued a file_id for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    /// The numeric id of the bot (the token's prefix) it belongs to.
    pub bot_id: String,
    /// The media type it can be sent as.
    pub kind: MediaKind,
    /// The content hash of the bytes uploaded.
    pub sha256: Sha256,
    /// Its size in bytes (scaled for smaller photo sizes).
    pub size: u64,
    /// Width in pixels, for photos.
    pub width: u32,
    /// Height in pixels, for photos.
    pub height: u32,
    /// For a photo: whether this is its largest size.
    pub largest: bool,
}

/// One request, as the fake logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEvent {
    /// When it arrived.
    pub at: Instant,
    /// How long the fake took over it, from its arrival (headers read) to its answer (body
    /// read, rules applied, latency slept): what a client's measured time holds that is not
    /// the client's, but for the HTTP exchange on loopback.
    pub took: Duration,
    /// The method called.
    pub method: String,
    /// The chat named, if any.
    pub chat: Option<i64>,
    /// The HTTP status answered; 0 for a connection reset.
    pub status: u16,
    /// Whether it arrived inside a ban.
    pub violation: bool,
}

/// Builds a [`FakeBotApi`].
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct FakeBotApiBuilder {
    tokens: Vec<String>,
    chats: Vec<i64>,
    limits: FakeLimits,
    faults: Faults,
    latency: Latency,
    chat_problems: HashMap<i64, ChatProblem>,
    file_id_latency: Option<Latency>,
}

impl FakeBotApiBuilder {
    /// Adds a bot by its token (`<digits>:<secret>`); requests with any other token get 401.
    pub fn with_bot(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// The chats that exist; sends elsewhere get "chat not found".
    pub fn with_chats(mut self, chats: impl IntoIterator<Item = i64>) -> Self {
        self.chats.extend(chats);
        self
    }

    /// Makes `chat` (which must also be one of [`with_chats`](Self::with_chats)) refuse the
    /// bot's sends as Telegram does for `problem`: a channel without administrator rights,
    /// a group the bot was kicked from, ...
    pub fn with_chat_problem(mut self, chat: i64, problem: ChatProblem) -> Self {
        self.chat_problems.insert(chat, problem);
        self
    }

    /// The rate limits enforced (default [`FakeLimits::telegram`]).
    pub fn with_limits(mut self, limits: FakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The faults injected (default none).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The latency added to each request (default none).
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// The latency of a send by file_id instead of [`with_latency`](Self::with_latency)'s:
    /// Telegram answers those in tens of milliseconds, uploads in 0.5 to 2 s.
    pub fn with_file_id_latency(mut self, latency: Latency) -> Self {
        self.file_id_latency = Some(latency);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed token; [`Error::Io`] when the socket cannot be bound.
    pub async fn start(self) -> Result<FakeBotApi> {
        let mut bots = HashMap::new();
        for token in &self.tokens {
            bots.insert(token.clone(), bot_id_of(token)?);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding the fake Bot API to 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the fake Bot API's address", e))?;
        let fetcher = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config {
                message: format!("cannot build the fake's HTTP client: {}", e.without_url()),
            })?;
        let mut shared = server::Shared::new(
            bots,
            self.chats,
            self.limits,
            self.faults,
            self.latency,
            fetcher,
        );
        shared.set_file_id_latency(self.file_id_latency);
        let shared = Arc::new(shared);
        shared.lock().chat_problems = self.chat_problems;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(FakeBotApi {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// The fake Bot API server. See the [module docs](self).
///
/// Dropping it stops the server.
pub struct FakeBotApi {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeBotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeBotApi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeBotApi {
    /// A builder: no bots, no chats, Telegram's rate limits, no faults, no latency.
    pub fn builder() -> FakeBotApiBuilder {
        FakeBotApiBuilder::default()
    }

    /// The base URL to give the uploader (`with_api_base`), `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` with `content_type` at a fresh loopback URL, which the fake (acting as
    /// Telegram) can fetch: a stand-in for a presigned or public storage URL.
    pub fn host_file(&self, bytes: Bytes, content_type: &str) -> String {
        let mut state = self.shared.lock();
        state.next_hosted += 1;
        let n = state.next_hosted;
        state.hosted.insert(n, (bytes, content_type.to_owned()));
        format!("{}/files/{n}", self.base_url())
    }

    /// Replaces the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Sets (or, with `None`, clears) the problem `chat` refuses sends with from now on.
    pub fn set_chat_problem(&self, chat: i64, problem: Option<ChatProblem>) {
        let mut state = self.shared.lock();
        match problem {
            Some(p) => state.chat_problems.insert(chat, p),
            None => state.chat_problems.remove(&chat),
        };
    }

    /// Replaces the rate limits enforced from now on (bans already given stay).
    pub fn set_limits(&self, limits: FakeLimits) {
        self.shared.lock().set_limits(limits);
    }

    /// The totals so far.
    pub fn stats(&self) -> FakeStats {
        self.shared.lock().stats.clone()
    }

    /// What the fake has seen of the bytes with this hash.
    pub fn uploads_of(&self, sha256: &Sha256) -> MediaUploads {
        self.shared
            .lock()
            .per_media
            .get(sha256)
            .copied()
            .unwrap_or_default()
    }

    /// The file behind a file_id the fake issued.
    pub fn file(&self, file_id: &str) -> Option<FakeFile> {
        self.shared.lock().files.get(file_id).cloned()
    }

    /// Forgets a file_id, as when Telegram drops a file: sends by it answer "wrong file
    /// identifier" from now on. Answers whether the fake knew it.
    pub fn revoke(&self, file_id: &str) -> bool {
        self.shared.lock().files.remove(file_id).is_some()
    }

    /// Every request so far, in order of arrival.
    pub fn events(&self) -> Vec<FakeEvent> {
        self.shared.lock().events.clone()
    }

    /// Messages sent (or forwarded) to `chat` and not deleted, every bot's.
    pub fn messages_in(&self, chat: i64) -> usize {
        self.shared.lock().messages.in_chat(chat).count()
    }

    /// The message `message_id` in `chat`, as the fake answered it (the Bot API's
    /// [Message](https://core.telegram.org/bots/api#message)), if it was created and not
    /// deleted. In a private chat or a basic group each bot numbers its own messages: when
    /// two bots of the fake both have this id there, the one with the lower bot id answers.
    ///
    /// A message is created when its request is processed, before the fake's latency: it
    /// exists even when the client left before the answer, as at Telegram.
    pub fn message(&self, chat: i64, message_id: i64) -> Option<serde_json::Value> {
        self.shared.lock().messages.find(chat, message_id).cloned()
    }

    /// The captions of the messages in `chat` (every bot's, by id; `None` for a message
    /// without one).
    pub fn captions_in(&self, chat: i64) -> Vec<Option<String>> {
        self.shared
            .lock()
            .messages
            .in_chat(chat)
            .map(|m| m.get("caption").and_then(|c| c.as_str()).map(str::to_owned))
            .collect()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The bot's numeric id: the digits before the token's `:`, as Telegram's tokens are made
/// (<https://core.telegram.org/bots/api#authorizing-your-bot>: "123456:ABC-DEF1234...").
fn bot_id_of(token: &str) -> Result<String> {
    match token.split_once(':') {
        Some((id, secret))
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !secret.is_empty() =>
        {
            Ok(id.to_owned())
        }
        _ => Err(Error::Config {
            message: "a fake bot token must look like <digits>:<secret>, as BotFather's do"
                .to_owned(),
        }),
    }
}

impl server::Shared {
    fn lock(&self) -> MutexGuard<'_, server::State> {
        lock(&self.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters and maps updated in single steps: a poisoned lock still holds usable data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
