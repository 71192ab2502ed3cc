//! Object storage for media bytes: the [`MediaStore`] trait and its local backends.
//!
//! Objects are content-addressed ([`ObjectKey::for_content`]): one object per distinct byte
//! string, shared by every bot and kind. That makes `put` idempotent and lets a store skip an
//! upload when the object is already there.

mod fs;
mod memory;
#[cfg(feature = "r2")]
mod r2;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::media::format::{OCTET_STREAM, content_type};
use crate::media::{MediaKind, ObjectKey, Sha256};

pub use fs::FsStore;
pub use memory::MemoryStore;
#[cfg(feature = "r2")]
#[doc(hidden)]
pub use r2::bench as __r2_bench;
#[cfg(feature = "r2")]
pub use r2::{R2Store, R2StoreBuilder};

/// A stream of byte chunks, as stores return them and uploaders consume them.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The bytes to [`put`](MediaStore::put), with their length and digest known up front.
///
/// Stores need both before the first byte moves: S3 signs the SHA-256 and sends a
/// `Content-Length` (R2 refuses chunked uploads), and a content-addressed store names the
/// object by the digest.
pub struct PutPayload {
    len: u64,
    sha256: Sha256,
    content_type: Option<String>,
    body: ByteStream,
    /// The digest was computed from these very bytes by the caller: not hashed again.
    hashed: bool,
}

impl PutPayload {
    /// A payload from bytes in memory.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let sha256 = Sha256::of(&bytes);
        Self {
            len: bytes.len() as u64,
            sha256,
            content_type: None,
            body: stream::once(async move { Ok(bytes) }).boxed(),
            hashed: true,
        }
    }

    /// A payload from a stream whose length and digest the caller already knows (a spooled
    /// file, say). A store checks both as the bytes pass and fails the put on a mismatch,
    /// leaving nothing behind.
    pub fn from_stream(len: u64, sha256: Sha256, body: ByteStream) -> Self {
        Self {
            len,
            sha256,
            content_type: None,
            body,
            hashed: false,
        }
    }

    /// A payload from a stream whose digest the caller computed from these very bytes (as
    /// [`PrewarmEngine`](crate::PrewarmEngine) does once per save): a store trusts the digest
    /// and does not hash the body again; it still fails the put when the length is wrong.
    /// A wrong digest here stores the bytes under the wrong content address: pass only a
    /// digest you computed yourself.
    pub fn from_hashed_stream(len: u64, sha256: Sha256, body: ByteStream) -> Self {
        Self {
            len,
            sha256,
            content_type: None,
            body,
            hashed: true,
        }
    }

    /// The MIME type to store the object with, which the store serves on its URLs (Telegram
    /// checks it when it fetches a media by URL). Without one the object is stored as
    /// `application/octet-stream`.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Names the content type from the payload's first bytes and `kind` (see
    /// [`with_content_type`](Self::with_content_type)), unless one is set already:
    /// `image/png`, `audio/ogg`, `application/pdf`, ..., or `application/octet-stream` for a
    /// format it does not know. It awaits the body's first chunk and puts it back in front
    /// (an error in its place is kept for the store to see).
    pub async fn with_sniffed_content_type(mut self, kind: MediaKind) -> Self {
        if self.content_type.is_some() {
            return self;
        }
        let first = self.body.next().await;
        let content_type = match &first {
            Some(Ok(chunk)) => content_type(kind, chunk),
            _ => OCTET_STREAM,
        };
        let rest = std::mem::replace(&mut self.body, stream::empty().boxed());
        self.body = stream::iter(first).chain(rest).boxed();
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// The MIME type given with [`with_content_type`](Self::with_content_type), if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of the bytes.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// Takes the body out.
    pub fn into_stream(self) -> ByteStream {
        self.body
    }
}

impl Debug for PutPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutPayload")
            .field("len", &self.len)
            .field("sha256", &self.sha256)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What [`put`](MediaStore::put) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object was already at that key; nothing was written.
    AlreadyExists,
}

/// What a store knows of an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// The MIME type it was stored with, when the store knows one.
    pub content_type: Option<String>,
}

/// An object being read: its metadata and a stream of its bytes.
pub struct GetResult {
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// Its bytes, in order.
    pub body: ByteStream,
}

impl Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl GetResult {
    /// Reads the whole body into memory.
    ///
    /// # Errors
    /// The first error the stream yields.
    pub async fn bytes(self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(usize::try_from(self.meta.size).unwrap_or(0));
        let mut body = self.body;
        while let Some(chunk) = body.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// Object storage for media bytes.
///
/// # Contract
/// - `put` is atomic and idempotent: readers see the whole object or none of it, a failed put
///   leaves nothing behind, and a put onto an existing key writes nothing and answers
///   [`PutOutcome::AlreadyExists`] (keys are content addresses, so the bytes are the same).
///   A body shorter or longer than the payload's length, or with another digest, fails with
///   [`Error::InvalidInput`].
/// - `get` streams the bytes; `head` and `get` of a missing key answer [`Error::NotFound`].
/// - `delete` of a missing key succeeds.
/// - `put` keeps the payload's content type, `head` and `get` report it in [`ObjectMeta`].
/// - `url` answers a URL from which anyone holding it can GET the object until `expires_in`
///   has passed (a presigned or public URL), or `None` when the store has no such URL (local
///   stores). Telegram fetches media from it, and caches what it fetched (a failure too) by
///   URL for days, so every call answers a URL never answered before. The URL serves
///   `content_type` when one is given (whatever the object was stored with: objects stored
///   without a type serve the right one too), else the stored type.
/// - Errors name the problem and carry no secret.
#[async_trait]
pub trait MediaStore: Send + Sync + Debug + 'static {
    /// Stores `payload` at `key`.
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome>;

    /// Opens the object at `key` for reading.
    async fn get(&self, key: &ObjectKey) -> Result<GetResult>;

    /// The metadata of the object at `key`.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Removes the object at `key`, if any.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// A fresh URL Telegram can fetch the object from, valid for `expires_in`, serving
    /// `content_type` when given, if the store has URLs.
    async fn url(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> Result<Option<String>>;
}

/// Convenience methods on every [`MediaStore`].
#[async_trait]
pub trait MediaStoreExt: MediaStore {
    /// Stores `bytes` under their content address and answers the key.
    ///
    /// # Errors
    /// As [`MediaStore::put`].
    async fn put_bytes(&self, bytes: Bytes) -> Result<(ObjectKey, PutOutcome)> {
        let payload = PutPayload::from_bytes(bytes);
        let key = ObjectKey::for_content(&payload.sha256());
        let outcome = self.put(&key, payload).await?;
        Ok((key, outcome))
    }

    /// Reads the whole object into memory.
    ///
    /// # Errors
    /// As [`MediaStore::get`].
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        self.get(key).await?.bytes().await
    }

    /// Whether an object is at `key`.
    ///
    /// # Errors
    /// As [`MediaStore::head`], but a missing object is `Ok(false)`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: MediaStore + ?Sized> MediaStoreExt for T {}

/// Wraps a payload's body so that it fails unless exactly `len` bytes with digest `sha256`
/// pass through (the length only, for a payload [`from_hashed_stream`](PutPayload::from_hashed_stream)).
/// Stores use it to refuse a payload that lies about itself.
pub(crate) fn verified(payload: PutPayload) -> ByteStream {
    let PutPayload {
        len,
        sha256,
        body,
        hashed,
        ..
    } = payload;
    // `None`: the caller hashed these bytes already; only their length is checked.
    let mut hasher = (!hashed).then(crate::media::Sha256Hasher::new);
    let mut seen = 0u64;
    let mut body = body;
    let mut done = false;
    stream::poll_fn(move |cx| {
        if done {
            return std::task::Poll::Ready(None);
        }
        match futures::ready!(body.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                seen += chunk.len() as u64;
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&chunk);
                }
                if seen > len {
                    done = true;
                    return std::task::Poll::Ready(Some(Err(payload_mismatch(format!(
                        "the body is longer than its declared {len} bytes"
                    )))));
                }
                std::task::Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                done = true;
                std::task::Poll::Ready(Some(Err(e)))
            }
            None => {
                done = true;
                if seen != len {
                    return std::task::Poll::Ready(Some(Err(payload_mismatch(format!(
                        "the body has {seen} bytes, not its declared {len}"
                    )))));
                }
                if let Some(digest) = hasher.take().map(crate::media::Sha256Hasher::finish)
                    && digest != sha256
                {
                    return std::task::Poll::Ready(Some(Err(payload_mismatch(format!(
                        "the body's SHA-256 is {digest}, not its declared {sha256}"
                    )))));
                }
                std::task::Poll::Ready(None)
            }
        }
    })
    .boxed()
}

/// Streams a file in 64 KiB chunks.
pub(crate) fn file_stream(file: tokio::fs::File) -> ByteStream {
    use tokio::io::AsyncReadExt;
    stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("reading a file", e))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
    .boxed()
}

fn payload_mismatch(reason: String) -> Error {
    Error::InvalidInput {
        what: "put payload",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &'static [u8]) -> ByteStream {
        stream::once(async move { Ok(Bytes::from_static(bytes)) }).boxed()
    }

    async fn drain(payload: PutPayload) -> Result<()> {
        verified(payload).try_for_each(|_| async { Ok(()) }).await
    }

    #[tokio::test]
    async fn a_payload_hashed_by_its_caller_is_not_hashed_again_but_its_length_is_checked() {
        let bytes = b"a media";
        // A digest that is not the bytes': only a store that hashes again can tell.
        let other = Sha256::of(b"something else");
        let checked = drain(PutPayload::from_stream(7, other, body(bytes))).await;
        assert!(
            matches!(checked, Err(Error::InvalidInput { .. })),
            "{checked:?}"
        );
        drain(PutPayload::from_hashed_stream(7, other, body(bytes)))
            .await
            .expect("the caller's digest is trusted");
        for len in [6, 8] {
            let short = drain(PutPayload::from_hashed_stream(len, other, body(bytes))).await;
            assert!(
                matches!(short, Err(Error::InvalidInput { .. })),
                "{len}: {short:?}"
            );
        }
    }
}
