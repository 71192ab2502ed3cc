//! [`TelegramUploader`]: warms media through the Telegram Bot API.

mod builder;
mod client;
mod pool;
mod ratelimit;
mod recover;
mod reply;
mod sniff;
mod stats;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use self::client::{Client, Input};
use self::pool::Bench;
use self::ratelimit::{Denied, Limiter, Permit, Purpose};
use self::reply::{ApiError, Message};
use super::{MediaSource, UploadJournal, UploadRequest, Uploaded, Uploader};
use crate::error::{Error, Result};
use crate::media::format::Format;
use crate::media::{BotId, FileId, MediaKey, MediaKind, SizeLimits};

pub use builder::TelegramUploaderBuilder;
pub use ratelimit::RateLimits;
pub use stats::UploaderStats;

/// The public Bot API.
const PUBLIC_API: &str = "https://api.telegram.org";

/// How long deleting a warm-up message waits for budget before leaving the message behind.
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Warms media by sending them to warm-up chats through the Telegram Bot API, and sends them
/// by file_id afterwards.
///
/// - Every kind, by URL where Telegram allows it and the media fits the URL limits (never
///   video notes; documents only as PDF, ZIP or GIF; stickers only as static WEBP), else by
///   a streamed multipart upload; a URL Telegram cannot fetch falls back to the upload.
/// - Sizes are checked against [`SizeLimits`] before any request.
/// - Sends are spread over the warm-up chats within [`RateLimits`], drawing from a
///   [`RateBudget`](super::RateBudget) shared by every clone (in the process by default; give every process of
///   the bot one shared budget with [`with_rate_budget`](TelegramUploaderBuilder::with_rate_budget)).
///   Telegram's 429 does not say whether the chat's or the bot's limit was hit, so a 429
///   pauses the chat and the bot for exactly the `retry_after` Telegram asks, before any
///   other send leaves, and the upload answers [`Error::RateLimited`]. Warms leave sends to
///   users a share of the bot-wide rate ([`RateLimits::with_user_share`]); an album counts
///   one send per item; deleting a warm-up message counts bot-wide only (not a message; the
///   Bot API's maintainers call delete limits "high enough to cover all reasonable usages",
///   tdlib/telegram-bot-api#572) and never goes inside a pause.
/// - A chat Telegram refuses ("chat not found", bot removed) leaves the pool; the others go on.
/// - The token never appears in an error, a log line or `Debug`.
///
/// # Clone
/// Clones share the HTTP connections and the rate limits.
///
/// ```no_run
/// use std::sync::Arc;
/// use prewarm::{PrewarmEngine, TelegramUploader};
///
/// # fn main() -> prewarm::Result<()> {
/// // TELEGRAM_BOT_TOKEN, MEDIA_WARMUP_CHAT_IDS, and optionally TELEGRAM_API_BASE.
/// let uploader = TelegramUploader::from_env().build()?;
/// let engine = PrewarmEngine::builder().with_uploader(Arc::new(uploader)).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TelegramUploader {
    inner: Arc<Inner>,
}

struct Inner {
    bot: BotId,
    /// The bot's Telegram user id (from its token): the sender of its messages.
    user: Option<i64>,
    client: Client,
    chats: Vec<i64>,
    limits: SizeLimits,
    limiter: Limiter,
    delete_warmup: bool,
    urls: bool,
    bench: Bench,
    stats: stats::Counters,
    journal: Option<Arc<dyn UploadJournal>>,
    seen: recover::Seen,
}

/// A message sent by [`TelegramUploader::send_file_id`] or [`TelegramUploader::send_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The chat it went to.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i64,
    /// The file it carries (the largest photo size for a photo).
    pub uploaded: Uploaded,
}

impl TelegramUploader {
    /// A builder with the defaults.
    pub fn builder() -> TelegramUploaderBuilder {
        TelegramUploaderBuilder::new()
    }

    /// A builder from the environment: `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_BASE` (default the
    /// public Bot API) and `MEDIA_WARMUP_CHAT_IDS` (a comma list of chat ids).
    pub fn from_env() -> TelegramUploaderBuilder {
        TelegramUploaderBuilder::from_env()
    }

    /// The warm-up chats.
    pub fn warmup_chats(&self) -> &[i64] {
        &self.inner.chats
    }

    /// How media went out so far: by URL, by upload, and how often a URL Telegram could not
    /// use fell back to an upload.
    pub fn stats(&self) -> UploaderStats {
        self.inner.stats.snapshot()
    }

    /// Calls `getMe`: checks that Telegram accepts the token. Answers the bot's user object.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] for a wrong token; [`Error::Unavailable`] for network trouble.
    pub async fn get_me(&self) -> Result<serde_json::Value> {
        self.inner
            .client
            .get_me()
            .await
            .map_err(|e| self.inner.error(e, None))
    }

    /// Sends a media to `chat_id` by its cached file_id, within the chat's and the bot's rate
    /// limits: the cache-first send of bot code.
    ///
    /// # Errors
    /// [`Error::WrongFileId`] when Telegram no longer accepts the file_id: hand it to the
    /// engine's `report_wrong_file_id` (which invalidates and re-warms), then send again.
    /// [`Error::RateLimited`] when the chat is paused longer than the configured wait; the
    /// classified Telegram error otherwise.
    pub async fn send_file_id(
        &self,
        chat_id: i64,
        key: &MediaKey,
        file_id: &FileId,
    ) -> Result<SentMessage> {
        let inner = &self.inner;
        self.check_bot(key)?;
        let permit = inner.acquire(&[chat_id], Purpose::User, None).await?;
        let result = inner
            .client
            .send_media(
                key.kind,
                chat_id,
                Input::FileId(file_id.as_str().to_owned()),
                None,
            )
            .await;
        match result {
            Ok(message) => {
                drop(permit);
                inner.seen.note(chat_id, message.message_id);
                inner.sent(key.kind, &message)
            }
            Err(ApiError::RateLimited {
                retry_after,
                description,
            }) => {
                inner
                    .limited(permit, chat_id, retry_after, &description)
                    .await;
                Err(Error::RateLimited { retry_after })
            }
            Err(ApiError::WrongFileId { description }) => Err(Error::WrongFileId {
                key: key.clone(),
                message: description,
            }),
            Err(e) => Err(inner.error(e, Some((key.kind, 0)))),
        }
    }

    /// Uploads a media straight to `chat_id` (when it is not warm yet), by URL or multipart
    /// as for a warm, and answers the message with the file_id Telegram gave; record it in
    /// the engine so the background warm is skipped.
    ///
    /// # Errors
    /// As [`Uploader::upload`].
    pub async fn send_upload(&self, chat_id: i64, request: UploadRequest) -> Result<SentMessage> {
        self.check_bot(&request.key)?;
        let (chat, message) = self
            .inner
            .deliver(&request, &[chat_id], Purpose::User)
            .await?;
        let mut sent = self.inner.sent(request.key.kind, &message)?;
        sent.chat_id = chat;
        Ok(sent)
    }

    /// Warms 2 to 10 photos and videos with one `sendMediaGroup` call to a warm-up chat, and
    /// answers their file_ids in the order given. Each item counts against the chat's and the
    /// bot's rate as one message (Telegram does not document how albums count). Items with a URL go by URL (the whole album is uploaded
    /// instead if Telegram cannot fetch one); the others are streamed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for fewer than 2 or more than 10 items or a kind other than
    /// photo and video; size errors as [`Uploader::upload`], before any request;
    /// [`Error::RateLimited`] when Telegram limits the album (its 400 "retry after N" too);
    /// the classified Telegram error otherwise. The album succeeds or fails as a whole.
    pub async fn upload_group(&self, requests: Vec<UploadRequest>) -> Result<Vec<Uploaded>> {
        let inner = &self.inner;
        if !(2..=10).contains(&requests.len()) {
            return Err(Error::InvalidInput {
                what: "media group",
                reason: format!("has {} media; sendMediaGroup takes 2 to 10", requests.len()),
            });
        }
        for r in &requests {
            self.check_bot(&r.key)?;
            if !matches!(r.key.kind, MediaKind::Photo | MediaKind::Video) {
                return Err(Error::InvalidInput {
                    what: "media group",
                    reason: format!(
                        "holds a {}: only photos and videos are warmed in albums; upload it alone",
                        r.key.kind
                    ),
                });
            }
            inner.limits.check(r.key.kind, r.size)?;
        }
        let mut url_types = Vec::with_capacity(requests.len());
        for r in &requests {
            url_types.push(inner.url_type(r).await);
        }
        loop {
            let targets = inner.bench.usable(&inner.chats).map_err(no_chat_left)?;
            let cost = requests.len() as u32;
            let permit = inner.acquire(&targets, Purpose::Warm(cost), None).await?;
            let chat = permit.chat;
            let mut items = Vec::with_capacity(requests.len());
            let mut any_url = false;
            for (r, mime) in requests.iter().zip(&url_types) {
                let url = match mime {
                    Some(mime) => r.source.fresh_url(Some(mime)).await.ok().flatten(),
                    None => None,
                };
                let input = match url {
                    Some(url) => {
                        any_url = true;
                        Input::Url(url.to_owned())
                    }
                    None => upload_input(r.key.kind, r.size, &r.source).await?,
                };
                items.push((r.key.kind, input));
            }
            match inner.client.send_media_group(chat, items).await {
                Ok(messages) => {
                    drop(permit);
                    let ids: Vec<i64> = messages.iter().map(|m| m.message_id).collect();
                    inner.journal_album(chat, &ids).await;
                    for _ in &messages {
                        inner.stats.sent(any_url);
                    }
                    if messages.len() != requests.len() {
                        return Err(Error::Unavailable {
                            message: format!(
                                "Telegram answered {} messages for an album of {}",
                                messages.len(),
                                requests.len()
                            ),
                        });
                    }
                    let uploaded = requests
                        .iter()
                        .zip(&messages)
                        .map(|(r, m)| inner.sent(r.key.kind, m).map(|s| s.uploaded))
                        .collect::<Result<Vec<_>>>()?;
                    if inner.delete_warmup {
                        for m in &messages {
                            inner.delete_warmup_message(chat, m.message_id).await;
                        }
                    }
                    return Ok(uploaded);
                }
                Err(
                    ApiError::UrlRefused { description } | ApiError::WrongFileId { description },
                ) if any_url => {
                    tracing::info!(chat, %description, "Telegram could not use a URL; uploading the album");
                    inner.stats.url_fallback();
                    url_types.iter_mut().for_each(|t| *t = None);
                }
                Err(ApiError::RateLimited {
                    retry_after,
                    description,
                }) => {
                    inner.limited(permit, chat, retry_after, &description).await;
                    return Err(Error::RateLimited { retry_after });
                }
                Err(ApiError::ChatUnusable { code, description }) => {
                    tracing::error!(chat, code, %description, "Telegram refuses this warm-up chat; it sits out of the pool for {:?}", pool::BENCH_FOR);
                    inner.bench.bench(chat, description);
                }
                Err(ApiError::ChatMigrated { to, description }) => {
                    tracing::error!(chat, to, %description, "a warm-up chat became a supergroup: put {to} in MEDIA_WARMUP_CHAT_IDS in place of {chat}");
                    inner
                        .limiter
                        .disable(chat, format!("chat {chat}: {description}"));
                }
                Err(e) => return Err(inner.error(e, None)),
            }
        }
    }

    fn check_bot(&self, key: &MediaKey) -> Result<()> {
        if key.bot != self.inner.bot {
            return Err(Error::Rejected {
                message: format!(
                    "media of bot {} given to the Telegram uploader of bot {}: file_ids belong to one bot",
                    key.bot, self.inner.bot
                ),
            });
        }
        Ok(())
    }
}

impl Inner {
    /// A permit for one of `chats`. `wait` caps the wait below the configured one.
    async fn acquire(
        &self,
        chats: &[i64],
        purpose: Purpose,
        wait: Option<Duration>,
    ) -> Result<ratelimit::Permit> {
        match self.limiter.acquire(chats, purpose, wait).await {
            Ok(permit) => Ok(permit),
            Err(Denied::Budget(e)) => Err(e),
            Err(Denied::Wait(retry_after)) => Err(Error::RateLimited { retry_after }),
            Err(Denied::NoChat(reason)) => Err(Error::Rejected {
                message: format!(
                    "no usable chat left ({reason}): check MEDIA_WARMUP_CHAT_IDS and that the bot \
                     is a member allowed to post there"
                ),
            }),
        }
    }

    /// Records a 429 from `chat` in the budget: the chat and the bot pause for `retry_after`
    /// (see [`ratelimit`] for why the bot too). A budget that cannot record it is logged: the
    /// caller answers [`Error::RateLimited`] either way.
    ///
    /// The send's slot is freed only once the pause is recorded: a send waiting for the slot
    /// must see the pause, or it leaves inside Telegram's ban and prolongs it.
    async fn limited(&self, slot: Permit, chat: i64, retry_after: Duration, description: &str) {
        tracing::info!(chat, ?retry_after, %description, "rate limited by Telegram; the chat and the bot pause");
        if let Err(e) = self.limiter.pause(chat, retry_after).await {
            tracing::warn!(chat, error = %e, "could not record Telegram's pause in the rate budget");
        }
        drop(slot);
    }

    /// Deletes a warm-up message, within the budget (one bot-wide slot, never inside a
    /// pause). The file_id outlives the message; a delete that fails or finds no slot soon
    /// only leaves the message behind.
    async fn delete_warmup_message(&self, chat: i64, message_id: i64) {
        let permit = match self
            .acquire(&[chat], Purpose::Delete, Some(DELETE_WAIT))
            .await
        {
            Ok(permit) => permit,
            Err(e) => {
                tracing::debug!(chat, error = %e, "no budget to delete the warm-up message; it stays");
                return;
            }
        };
        match self.client.delete_message(chat, message_id).await {
            Ok(()) => {}
            Err(ApiError::RateLimited {
                retry_after,
                description,
            }) => {
                self.limited(permit, chat, retry_after, &description).await;
            }
            Err(e) => tracing::debug!(
                chat,
                error = e.description(),
                "could not delete the warm-up message"
            ),
        }
    }

    /// Sends `request` to one of `chats`: by URL when Telegram's rules allow it (a fresh URL
    /// on every attempt), else multipart; when `purpose` is a warm (`chats` is the warm-up
    /// pool), away from a chat Telegram refuses (which sits out a while). A 429 pauses the
    /// chat and the bot, and answers [`Error::RateLimited`] at once: no chat could take the
    /// send before the pause ends, and the engine's queue holds the job for that long better
    /// than a held worker. Answers the chat used and the message.
    async fn deliver(
        &self,
        request: &UploadRequest,
        chats: &[i64],
        purpose: Purpose,
    ) -> Result<(i64, Message)> {
        let pool = matches!(purpose, Purpose::Warm(_));
        let kind = request.key.kind;
        self.limits.check(kind, request.size)?;
        let mut url_type = self.url_type(request).await;
        // The loop ends: a 429 ends the attempt, the URL fallback happens once, and a refused
        // chat leaves the pool until none is left.
        loop {
            let targets = if pool {
                self.bench.usable(chats).map_err(no_chat_left)?
            } else {
                chats.to_vec()
            };
            // The stream is opened (the store's first byte awaited) before the permit is
            // taken, so that the request leaves when the limiter counts it: Telegram counts
            // it when it arrives, and a store's latency in between would shift it out of the
            // limiter's schedule.
            let url = match url_type {
                Some(mime) => match request.source.fresh_url(Some(mime)).await {
                    Ok(url) => url,
                    Err(e) => {
                        tracing::debug!(error = %e, "no URL for the media; uploading the bytes");
                        None
                    }
                },
                None => None,
            };
            let arrival = Arrival::default();
            let input = match url {
                Some(url) => Input::Url(url),
                None => arrival.at_end_of(upload_input(kind, request.size, &request.source).await?),
            };
            let mut permit = self.acquire(&targets, purpose, None).await?;
            let chat = permit.chat;
            if pool {
                match self.anchor_turn(chat).await {
                    recover::Turn::Known => {}
                    recover::Turn::Wait(mut done) => {
                        // Another warm is anchoring the chat: this permit may be stale by
                        // then (a 429), so the warm takes a new one.
                        drop(permit);
                        let _ = done.wait_for(|done| *done).await;
                        continue;
                    }
                    recover::Turn::Mine(done) => {
                        // The anchor takes this permit; the warm takes the next one.
                        self.anchor(permit, done).await?;
                        continue;
                    }
                }
            }
            // A warm is journaled before it leaves, and names its media in its caption, so
            // that a successor can find it should its reply never arrive (see `recover`).
            let caption = if pool {
                self.journal_begin(&request.key, chat).await?;
                recover::marker(&request.key)
            } else {
                None
            };
            let by_url = matches!(input, Input::Url(_));
            let result = self
                .client
                .send_media(kind, chat, input, caption.as_deref())
                .await;
            if let Some(at) = arrival.get() {
                permit.arrived(at);
            }
            match &result {
                Ok(message) => self.seen.note(chat, message.message_id),
                // No reply: the message may exist, and the journal entry stays pending.
                Err(ApiError::Unavailable { .. }) => {}
                Err(_) if pool => self.journal_refused(&request.key).await,
                Err(_) => {}
            }
            match result {
                Ok(message) => {
                    self.stats.sent(by_url);
                    return Ok((chat, message));
                }
                Err(
                    ApiError::UrlRefused { description } | ApiError::WrongFileId { description },
                ) if by_url => {
                    tracing::info!(chat, %kind, %description, "Telegram could not use the URL; uploading the bytes");
                    self.stats.url_fallback();
                    url_type = None;
                }
                Err(ApiError::RateLimited {
                    retry_after,
                    description,
                }) => {
                    self.limited(permit, chat, retry_after, &description).await;
                    return Err(Error::RateLimited { retry_after });
                }
                Err(ApiError::ChatUnusable { code, description }) if pool => {
                    tracing::error!(chat, code, %description, "Telegram refuses this warm-up chat; it sits out of the pool for {:?}", pool::BENCH_FOR);
                    self.bench.bench(chat, description);
                }
                Err(ApiError::ChatMigrated { to, description }) if pool => {
                    tracing::error!(chat, to, %description, "a warm-up chat became a supergroup: put {to} in MEDIA_WARMUP_CHAT_IDS in place of {chat}");
                    self.limiter
                        .disable(chat, format!("chat {chat}: {description}"));
                }
                Err(e) => return Err(self.error(e, Some((kind, request.size)))),
            }
        }
    }

    /// The MIME type to have Telegram fetch `request` by URL with, or `None` when it must be
    /// uploaded: no URL, URL uploads off, or a kind, format or size Telegram does not take by
    /// URL ([`sniff::url_refusal`]).
    async fn url_type(&self, request: &UploadRequest) -> Option<&'static str> {
        if !self.urls || request.source.url().is_none() {
            return None;
        }
        let kind = request.key.kind;
        let format = match request.source.content_type(kind).await {
            Ok(ct) => ct.as_deref().and_then(Format::of_mime),
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell the media's type; uploading it");
                None
            }
        };
        match self.url_refusal(kind, format, request.size) {
            Some(why) => {
                tracing::debug!(%kind, %why, "not by URL");
                None
            }
            None => format.map(|f| f.mime(kind)),
        }
    }

    /// Why a media goes by upload even when a URL is at hand (URL uploads off, or Telegram's
    /// rules, [`sniff::url_refusal`]), or `None` when it goes by URL.
    fn url_refusal(&self, kind: MediaKind, format: Option<Format>, size: u64) -> Option<String> {
        if !self.urls {
            return Some("URL uploads are off".to_owned());
        }
        sniff::url_refusal(kind, format, size)
    }

    fn sent(&self, kind: MediaKind, message: &Message) -> Result<SentMessage> {
        let file = message.file(kind).ok_or_else(|| Error::Unavailable {
            message: format!(
                "Telegram's reply to {} carries no {kind}",
                client::method(kind)
            ),
        })?;
        Ok(SentMessage {
            chat_id: message.chat.id,
            message_id: message.message_id,
            uploaded: Uploaded {
                file_id: FileId::new(file.file_id),
                file_unique_id: file.file_unique_id,
            },
        })
    }

    /// Turns a classified Bot API error into the crate's error. `media` names the kind and
    /// size for a 413.
    fn error(&self, e: ApiError, media: Option<(MediaKind, u64)>) -> Error {
        match e {
            ApiError::RateLimited { retry_after, .. } => Error::RateLimited { retry_after },
            ApiError::Unauthorized { description } => Error::Unauthorized {
                message: format!(
                    "Telegram refused the bot token ({description}): check TELEGRAM_BOT_TOKEN"
                ),
            },
            ApiError::TooLarge { description } => match media {
                Some((kind, size)) => {
                    tracing::warn!(%description, "Telegram refused the upload as too large");
                    Error::TooLarge {
                        kind,
                        size,
                        // Telegram's own limit, which our configured one did not catch.
                        limit: kind.upload_limit().min(size.saturating_sub(1)),
                    }
                }
                None => Error::Rejected {
                    message: format!("Telegram answered 413: {description}"),
                },
            },
            ApiError::ChatUnusable { code, description }
            | ApiError::Rejected { code, description } => Error::Rejected {
                message: format!("Telegram answered {code}: {description}"),
            },
            ApiError::ChatMigrated { description, .. } => Error::Rejected {
                message: format!("Telegram answered 400: {description}"),
            },
            ApiError::UrlRefused { description } | ApiError::WrongFileId { description } => {
                Error::Rejected {
                    message: format!("Telegram answered 400: {description}"),
                }
            }
            ApiError::Unavailable { description } => Error::Unavailable {
                message: description,
            },
        }
    }
}

/// The error when every warm-up chat sits out: it names each chat and why.
fn no_chat_left(reasons: String) -> Error {
    Error::Rejected {
        message: format!(
            "no usable warm-up chat left ({reasons}): check MEDIA_WARMUP_CHAT_IDS, add the bot \
             to each chat, and in a channel make it an administrator allowed to post messages"
        ),
    }
}

/// When an upload's body was all sent: about when Telegram counts its message.
#[derive(Debug, Default, Clone)]
struct Arrival(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl Arrival {
    /// `input` with its body's end recorded here.
    fn at_end_of(&self, input: Input) -> Input {
        match input {
            Input::Upload {
                body,
                size,
                file_name,
                mime,
            } => {
                let cell = self.0.clone();
                let end = stream::once(async move {
                    *cell.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(tokio::time::Instant::now());
                })
                .filter_map(|()| async { None });
                Input::Upload {
                    body: body.chain(end).boxed(),
                    size,
                    file_name,
                    mime,
                }
            }
            other => other,
        }
    }

    fn get(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens the source as a multipart input, naming the part from its first bytes.
async fn upload_input(kind: MediaKind, size: u64, source: &MediaSource) -> Result<Input> {
    let mut body = source.open().await?;
    // Peek at the first chunk for the format, then put it back in front.
    let first = body.try_next().await?.unwrap_or_default();
    let (file_name, mime) = sniff::name(kind, &first);
    let body = stream::once(async move { Ok::<Bytes, Error>(first) })
        .chain(body)
        .boxed();
    Ok(Input::Upload {
        body,
        size,
        file_name,
        mime,
    })
}

#[async_trait]
impl Uploader for TelegramUploader {
    fn bot(&self) -> &BotId {
        &self.inner.bot
    }

    async fn upload(&self, request: UploadRequest) -> Result<Uploaded> {
        let inner = &self.inner;
        self.check_bot(&request.key)?;
        inner.limits.check(request.key.kind, request.size)?;
        if let Some(uploaded) = inner.recover(&request).await? {
            return Ok(uploaded);
        }
        let (chat, message) = inner
            .deliver(&request, &inner.chats, Purpose::Warm(1))
            .await?;
        let sent = inner.sent(request.key.kind, &message)?;
        inner
            .journal_delivered(&request.key, message.message_id, &sent.uploaded.file_id)
            .await;
        if inner.delete_warmup {
            inner.delete_warmup_message(chat, message.message_id).await;
        }
        Ok(sent.uploaded)
    }

    /// `false` for what goes by URL when the source has one: URL uploads on, and a kind,
    /// format and size Telegram fetches by URL (see [`TelegramUploader`]); an unknown type
    /// goes by upload.
    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool {
        let format = content_type.and_then(Format::of_mime);
        self.inner.url_refusal(kind, format, size).is_some()
    }

    /// Forgets the journal entry that holds `file_id`, so that the next warm uploads.
    async fn rejected(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        self.inner.journal_rejected(key, file_id).await
    }
}

impl fmt::Debug for TelegramUploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("TelegramUploader")
            .field("bot", &inner.bot)
            .field("client", &inner.client)
            .field("warmup_chats", &inner.chats)
            .field("limits", &inner.limits)
            .field("delete_warmup", &inner.delete_warmup)
            .finish_non_exhaustive()
    }
}
