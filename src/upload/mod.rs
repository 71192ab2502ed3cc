//! Turning media into file_ids: the [`Uploader`] trait and an in-process stand-in.

mod budget;
mod memory;
#[cfg(feature = "telegram")]
mod telegram;

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};

use crate::error::Result;
use crate::media::{BotId, FileId, MediaKey};
use crate::store::{ByteStream, MediaStore};

pub use budget::{BudgetRequest, Grant, MemoryBudget, Rate, RateBudget};
pub use memory::{MemoryUploader, MemoryUploaderStats};
#[cfg(feature = "telegram")]
pub use telegram::{RateLimits, SentMessage, TelegramUploader, TelegramUploaderBuilder};

/// Where an uploader can get a media's bytes: from memory, from a URL the service can fetch
/// itself, or as a stream opened on demand. An uploader picks what suits it (a URL first where
/// the service allows it, the bytes otherwise) and may open the stream more than once, for a
/// retry or a fallback.
#[derive(Clone)]
pub struct MediaSource {
    bytes: Option<Bytes>,
    url: Option<String>,
    store: Option<(Arc<dyn MediaStore>, crate::media::ObjectKey)>,
}

impl MediaSource {
    /// A source holding the bytes in memory.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes: Some(bytes),
            url: None,
            store: None,
        }
    }

    /// A source reading the object at `key` from `store`, with a URL for it if the store has
    /// one.
    pub fn from_store(
        store: Arc<dyn MediaStore>,
        key: crate::media::ObjectKey,
        url: Option<String>,
    ) -> Self {
        Self {
            bytes: None,
            url,
            store: Some((store, key)),
        }
    }

    /// Adds a URL the service can fetch the bytes from.
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
#[async_trait]
pub trait Uploader: Send + Sync + Debug + 'static {
    /// The bot whose file_ids this uploader obtains.
    fn bot(&self) -> &BotId;

    /// Uploads one media.
    async fn upload(&self, request: UploadRequest) -> Result<Uploaded>;
}
