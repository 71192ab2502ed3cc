//! [`R2Store`]: a [`MediaStore`](super::MediaStore) over the S3 API, for Cloudflare R2 and any
//! S3-compatible service, with a hand-written SigV4 signer.
//!
//! - `builder.rs`: configuration, from code or the environment.
//! - `client.rs`: signed requests, the retry policy, and S3 errors turned into [`Error`]s.
//! - `multipart.rs`: bounded-memory part uploads for large objects.
//! - `sigv4.rs`: the signer, with a cached signing key.

mod builder;
mod client;
mod multipart;
mod sigv4;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use builder::R2StoreBuilder;

use super::{GetResult, MediaStore, ObjectMeta, PutOutcome, PutPayload};
use crate::error::{Error, Result};
use crate::media::ObjectKey;

/// A [`MediaStore`] on Cloudflare R2 or any S3-compatible service.
///
/// Objects are addressed path-style (`<endpoint>/<bucket>/<key>`). Every request is signed
/// with AWS Signature Version 4; the signing key is derived once per UTC day. Puts are
/// idempotent (a `HEAD`, then `If-None-Match: *`), sign the payload's SHA-256 (never the CRC32
/// checksum headers that break R2 uploads), and switch to a multipart upload above a
/// threshold, holding at most one part in memory. Gets stream. Transient failures (5xx, 429,
/// `SlowDown`, `InternalError`, connection errors, timeouts) are retried with exponential
/// backoff and jitter, re-signed each time; refused credentials are not.
///
/// # Clone
/// Clones share one HTTP connection pool and one signing-key cache.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use prewarm::store::{MediaStore, MediaStoreExt, R2Store};
///
/// # async fn demo() -> prewarm::Result<()> {
/// // R2_ACCOUNT_ID (or R2_ENDPOINT), R2_BUCKET, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY
/// let store = R2Store::from_env()?.build()?;
/// let (key, _) = store.put_bytes(Bytes::from_static(b"GIF89a...")).await?;
/// let url = store.url(&key, Duration::from_secs(600)).await?;
/// println!("Telegram can fetch {url:?}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct R2Store {
    client: Arc<client::Client>,
}

impl R2Store {
    /// A builder with nothing set: give it an endpoint, a bucket and credentials.
    pub fn builder() -> R2StoreBuilder {
        R2StoreBuilder::new()
    }

    /// A builder filled from the `R2_*` environment variables (see [`R2StoreBuilder::from_env`]).
    ///
    /// # Errors
    /// As [`R2StoreBuilder::from_env`].
    pub fn from_env() -> Result<R2StoreBuilder> {
        R2StoreBuilder::from_env()
    }

    /// The bucket the store writes to.
    pub fn bucket(&self) -> &str {
        self.client.bucket()
    }
}

#[async_trait]
impl MediaStore for R2Store {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
        self.client.put(key.as_str(), payload).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        let (size, body) = self.client.get(key.as_str()).await?;
        Ok(GetResult {
            meta: ObjectMeta {
                key: key.clone(),
                size,
            },
            body,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let size = self.client.head(key.as_str()).await?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.client.delete(key.as_str()).await
    }

    async fn url(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>> {
        self.client.url(key.as_str(), expires_in).map(Some)
    }
}

/// Keeps `Error` in scope for the docs above.
#[allow(dead_code)]
type _DocError = Error;
