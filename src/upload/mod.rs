//! Turning media into file_ids: the [`Uploader`] trait and an in-process stand-in.

mod budget;
mod journal;
mod memory;
#[cfg(feature = "telegram")]
mod telegram;

use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};

use crate::error::Result;
use crate::media::{BotId, FileId, MediaKey, MediaKind};
use crate::store::{ByteStream, MediaStore};

pub use budget::{BudgetRequest, Grant, MemoryBudget, Rate, RateBudget};
pub use journal::{Delivered, JournalEntry, MemoryJournal, UploadJournal};
pub use memory::{MemoryUploader, MemoryUploaderStats};
#[cfg(feature = "telegram")]
pub use telegram::{
    RateLimits, SentMessage, TelegramUploader, TelegramUploaderBuilder, UploaderStats,
};

/// Where an uploader can get a media's bytes: from memory, from a URL the service can fetch
/// itself, or as a stream opened on demand. An uploader picks what suits it (a URL first where
/// the service allows it, the bytes otherwise) and may open the stream more than once, for a
/// retry or a fallback.
///
/// A source over a store that has URLs mints a fresh one for each attempt
/// ([`fresh_url`](Self::fresh_url)): Telegram caches what it fetched from a URL, a failed
/// fetch too, for days.
#[derive(Clone)]
pub struct MediaSource {
    bytes: Option<Bytes>,
    url: Option<String>,
    store: Option<(Arc<dyn MediaStore>, crate::media::ObjectKey)>,
    /// Whether the store answers URLs (it answered one when the source was made).
    store_urls: bool,
    url_ttl: Duration,
    content_type: Option<String>,
}

/// How long a URL minted by [`MediaSource::fresh_url`] stays valid unless set otherwise.
const DEFAULT_URL_TTL: Duration = Duration::from_secs(600);

impl MediaSource {
    /// A source holding the bytes in memory.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes: Some(bytes),
            url: None,
            store: None,
            store_urls: false,
            url_ttl: DEFAULT_URL_TTL,
            content_type: None,
        }
    }

    /// A source reading the object at `key` from `store`, with a URL for it if the store has
    /// one (then [`fresh_url`](Self::fresh_url) asks the store for a new one each time).
    pub fn from_store(
        store: Arc<dyn MediaStore>,
        key: crate::media::ObjectKey,
        url: Option<String>,
    ) -> Self {
        Self {
            bytes: None,
            store_urls: url.is_some(),
            url,
            store: Some((store, key)),
            url_ttl: DEFAULT_URL_TTL,
            content_type: None,
        }
    }

    /// How long the URLs [`fresh_url`](Self::fresh_url) mints stay valid (default 10 minutes).
    #[must_use]
    pub fn with_url_ttl(mut self, ttl: Duration) -> Self {
        self.url_ttl = ttl;
        self
    }

    /// The media's MIME type, when the caller knows it (else [`content_type`](Self::content_type)
    /// asks the store).
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// A URL for one attempt to fetch the bytes, serving `content_type` where the store can
    /// set it: a new one from the store on every call when the source reads a store with
    /// URLs, else the URL given with [`with_url`](Self::with_url), if any.
    ///
    /// # Errors
    /// The store's error minting the URL.
    pub async fn fresh_url(&self, content_type: Option<&str>) -> Result<Option<String>> {
        match &self.store {
            Some((store, key)) if self.store_urls => {
                store.url(key, self.url_ttl, content_type).await
            }
            _ => Ok(self.url.clone()),
        }
    }

    /// The media's MIME type, as a media of `kind`: the one given with
    /// [`with_content_type`](Self::with_content_type), else the one the store keeps for the
    /// object (one `head`), else sniffed from the first bytes (for objects stored without a
    /// type: the first chunk of a `get`, the rest left unread); `None` when the format is
    /// unknown.
    ///
    /// # Errors
    /// The store's error.
    pub async fn content_type(&self, kind: crate::media::MediaKind) -> Result<Option<String>> {
        use crate::media::format::{OCTET_STREAM, content_type};
        if let Some(ct) = &self.content_type {
            return Ok(Some(ct.clone()));
        }
        let first = match (&self.bytes, &self.store) {
            (Some(bytes), _) => bytes.clone(),
            (None, Some((store, key))) => {
                if let Some(ct) = store.head(key).await?.content_type
                    && ct != OCTET_STREAM
                {
                    return Ok(Some(ct));
                }
                let mut body = store.get(key).await?.body;
                futures::TryStreamExt::try_next(&mut body)
                    .await?
                    .unwrap_or_default()
            }
            (None, None) => return Ok(None),
        };
        let sniffed = content_type(kind, &first);
        Ok((sniffed != OCTET_STREAM).then(|| sniffed.to_owned()))
    }

    /// The size in bytes, without reading them: from memory, else the store's `head`.
    ///
    /// # Errors
    /// As [`MediaSource::open`].
    pub async fn size(&self) -> Result<u64> {
        if let Some(bytes) = &self.bytes {
            return Ok(bytes.len() as u64);
        }
        match &self.store {
            Some((store, key)) => Ok(store.head(key).await?.size),
            None => Err(crate::Error::NotFound {
                what: "the media's bytes (the source has no bytes and no store)".to_owned(),
            }),
        }
    }

    /// Adds a URL the service can fetch the bytes from (used as is on every attempt; a
    /// source over a store mints its own).
    #[must_use]
    pub fn with_url(mut self, url: Option<String>) -> Self {
        self.url = url;
        self
    }

    /// A URL from which the bytes can be fetched, if there is one.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The bytes, if they are in memory already.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.bytes.as_ref()
    }

    /// Opens a stream of the bytes: from memory when held, from the store otherwise.
    ///
    /// # Errors
    /// The store's error, or [`Error::NotFound`](crate::Error::NotFound) when the source has
    /// neither bytes nor a store.
    pub async fn open(&self) -> Result<ByteStream> {
        if let Some(bytes) = &self.bytes {
            let bytes = bytes.clone();
            return Ok(stream::once(async move { Ok(bytes) }).boxed());
        }
        match &self.store {
            Some((store, key)) => Ok(store.get(key).await?.body),
            None => Err(crate::Error::NotFound {
                what: "the media's bytes (the source has no bytes and no store)".to_owned(),
            }),
        }
    }

    /// Reads all the bytes into memory (from memory when held).
    ///
    /// # Errors
    /// As [`MediaSource::open`].
    pub async fn read_all(&self) -> Result<Bytes> {
        if let Some(bytes) = &self.bytes {
            return Ok(bytes.clone());
        }
        let mut body = self.open().await?;
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = futures::TryStreamExt::try_next(&mut body).await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

impl Debug for MediaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may be presigned: its signature is a short-lived secret, so only say there is
        // one.
        f.debug_struct("MediaSource")
            .field("bytes", &self.bytes.as_ref().map(Bytes::len))
            .field("url", &self.url.as_ref().map(|_| "<url>"))
            .field("store_key", &self.store.as_ref().map(|(_, k)| k))
            .field("store_urls", &self.store_urls)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// One media to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The media: its bot, content hash and kind.
    pub key: MediaKey,
    /// Its size in bytes.
    pub size: u64,
    /// Where its bytes are.
    pub source: MediaSource,
}

/// What an upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The file_id to send the media by from now on.
    pub file_id: FileId,
    /// Telegram's `file_unique_id`: stable across bots, not usable to send.
    pub file_unique_id: Option<String>,
}

/// Turns a media into a file_id for one bot.
///
/// # Contract
/// - `upload` makes the service hold the media and answers its file_id for [`Uploader::bot`]
///   and the request's kind; distinct media get distinct file_ids.
/// - A request for another bot's media is refused with a permanent error (its file_id would
///   be useless to that bot), and one over the kind's size limit with
///   [`Error::TooLarge`](crate::Error::TooLarge), both before any network call.
/// - Errors are classified for the engine's retry policy:
///   [`Error::RateLimited`](crate::Error::RateLimited) with the server's wait (honoured
///   exactly and not counted as a failed attempt); retryable errors
///   ([`Error::is_retryable`](crate::Error::is_retryable)) are retried with backoff; any other
///   error is permanent and the job goes to the dead state with it.
/// - An uploader does its own rate limiting for its bot and chats, shared by all callers.
/// - When [`needs_bytes`](Uploader::needs_bytes) answers `false` for a media, an upload of it
///   whose source offers a URL reads none of its bytes (unless the service then refuses the
///   URL and the bytes go instead).
#[async_trait]
pub trait Uploader: Send + Sync + Debug + 'static {
    /// The bot whose file_ids this uploader obtains.
    fn bot(&self) -> &BotId;

    /// Uploads one media.
    async fn upload(&self, request: UploadRequest) -> Result<Uploaded>;

    /// Whether an upload of a media of `kind`, `size` bytes and MIME type `content_type`
    /// (`None`: unknown) reads the media's bytes even when its source offers a URL: `false`
    /// only when the uploader would hand the service the URL instead, as
    /// `TelegramUploader` does for what Telegram fetches by URL.
    /// Answered from the arguments alone, with no I/O.
    ///
    /// The engine asks when a media is saved, while it holds the bytes: a media whose bytes
    /// the upload will need is warmed ahead of others ([`Job::hot`](crate::Job::hot)), so
    /// that they need not be read back from the store later.
    ///
    /// When unsure, answer `true`, as [`MemoryUploader`] does unless told otherwise: a `true`
    /// for a media that needed no bytes only moves it ahead in the queue, within the limits
    /// of [`PriorityPolicy`](crate::PriorityPolicy); a `false` for one that did costs a read
    /// of the whole media from the store. A wrapper answers what the uploader it wraps does.
    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool;

    /// Telegram rejected `file_id` when `key` was sent by it ("wrong file identifier"), and
    /// the engine is about to warm the media again: no later [`upload`](Uploader::upload) of
    /// `key` may answer this file_id. An uploader that remembers what it uploaded (as
    /// `TelegramUploader` does in its journal, to find a send cut short by a crash) forgets
    /// it here; one that remembers nothing answers `Ok(())`. A wrapper passes it on.
    ///
    /// # Errors
    /// Where the uploader remembers, its storage's error: the engine then does not re-warm.
    async fn rejected(&self, key: &MediaKey, file_id: &FileId) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::media::ObjectKey;
    use crate::store::{GetResult, MemoryStore, ObjectMeta, PutOutcome, PutPayload};

    /// A memory store that counts the reads of whole objects.
    #[derive(Debug, Default)]
    struct CountingStore {
        inner: MemoryStore,
        gets: AtomicU32,
    }

    #[async_trait]
    impl MediaStore for CountingStore {
        async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
            self.inner.put(key, payload).await
        }
        async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
            self.inner.head(key).await
        }
        async fn delete(&self, key: &ObjectKey) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn url(
            &self,
            key: &ObjectKey,
            expires_in: Duration,
            content_type: Option<&str>,
        ) -> Result<Option<String>> {
            self.inner.url(key, expires_in, content_type).await
        }
    }

    #[tokio::test]
    async fn size_and_stored_type_come_without_reading_the_media() {
        let store = Arc::new(CountingStore::default());
        let bytes = Bytes::from_static(b"GIF89a an animation");
        let typed = ObjectKey::new("media/typed").unwrap();
        let payload = PutPayload::from_bytes(bytes.clone()).with_content_type("image/gif");
        store.put(&typed, payload).await.unwrap();
        let source = MediaSource::from_store(store.clone(), typed, None);
        assert_eq!(source.size().await.unwrap(), bytes.len() as u64);
        assert_eq!(
            source
                .content_type(MediaKind::Animation)
                .await
                .unwrap()
                .as_deref(),
            Some("image/gif")
        );
        assert_eq!(store.gets.load(Ordering::SeqCst), 0, "no read of the media");

        // Stored without a type (before types were kept): sniffed from its first chunk.
        let untyped = ObjectKey::new("media/untyped").unwrap();
        store
            .put(&untyped, PutPayload::from_bytes(bytes))
            .await
            .unwrap();
        let source = MediaSource::from_store(store.clone(), untyped, None);
        assert_eq!(
            source
                .content_type(MediaKind::Animation)
                .await
                .unwrap()
                .as_deref(),
            Some("image/gif")
        );
        assert_eq!(store.gets.load(Ordering::SeqCst), 1);
    }
}
