//! [`R2Store`]: a [`MediaStore`](super::MediaStore) over the S3 API, for Cloudflare R2 and any
//! S3-compatible service, with a hand-written SigV4 signer.
//!
//! - `builder.rs`: configuration, from code or the environment.
//! - `client.rs`: signed requests and the S3 operations.
//! - `errors.rs`: the retry policy, and S3 failures turned into [`Error`]s.
//! - `multipart.rs`: bounded-memory part uploads for large objects.
//! - `sigv4.rs`: the signer, with a cached signing key.

mod builder;
mod client;
mod errors;
mod multipart;
mod sigv4;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use builder::R2StoreBuilder;

use super::{GetResult, MediaStore, ObjectMeta, PutOutcome, PutPayload};
use crate::error::Result;
use crate::media::ObjectKey;

/// A [`MediaStore`] on Cloudflare R2 or any S3-compatible service.
///
/// Objects are addressed path-style (`<endpoint>/<bucket>/<key>`). Every request is signed
/// with AWS Signature Version 4; the signing key is derived once per UTC day. Puts are
/// idempotent in one round trip (`If-None-Match: *`, a 412 meaning the object is there),
/// store the payload's content type, sign the payload's SHA-256 (never the CRC32 checksum
/// headers that break R2 uploads), and switch to a multipart upload above a threshold,
/// holding at most one part in memory. URLs are fresh on every call and presigned ones serve
/// the content type asked for. Gets stream. Transient failures (5xx, 429,
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
/// let url = store.url(&key, Duration::from_secs(600), Some("image/gif")).await?;
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
        // One PUT up to the threshold; above it a multipart upload, whose parts a retry can
        // resend without the whole object in memory.
        if payload.len() > self.client.multipart_threshold {
            return multipart::upload(&self.client, key.as_str(), payload).await;
        }
        self.client.put(key.as_str(), payload).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        let (meta, body) = self.client.get(key.as_str()).await?;
        Ok(GetResult {
            meta: meta.into_meta(key),
            body,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        Ok(self.client.head(key.as_str()).await?.into_meta(key))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.client.delete(key.as_str()).await
    }

    async fn url(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        self.client
            .url(key.as_str(), expires_in, content_type)
            .map(Some)
    }
}

/// Entry points for `benches/sigv4.rs`: not part of the API, may change at any time.
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::sigv4::{AmzDate, Credentials, SignableRequest, Signer, UNSIGNED_PAYLOAD};

    /// The hex SHA-256 of an empty body.
    pub const EMPTY_SHA256: &str = super::sigv4::EMPTY_SHA256;

    /// The bench's host.
    pub const HOST: &str = "0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com";
    /// The bench's object path.
    pub const PATH: &str =
        "/media/media/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// The bench's access key id.
    pub const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
    /// The bench's secret (the AWS suite's example secret).
    pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A signer with fixed credentials and time, signing a typical object GET.
    #[derive(Debug)]
    pub struct SigningBench {
        signer: Signer,
        time: AmzDate,
    }

    impl Default for SigningBench {
        fn default() -> Self {
            Self::new()
        }
    }

    impl SigningBench {
        /// The bench fixture.
        pub fn new() -> Self {
            let signer = Signer::new(
                Credentials {
                    access_key_id: ACCESS_KEY_ID.into(),
                    secret_access_key: SECRET.into(),
                    session_token: None,
                },
                "auto",
                "s3",
                Arc::new(SystemTime::now),
            );
            let time = AmzDate::from_system_time(SystemTime::now()).expect("a sane clock");
            Self { signer, time }
        }

        fn get(&self) -> [(&'static str, &str); 3] {
            [
                ("host", HOST),
                ("x-amz-content-sha256", super::sigv4::EMPTY_SHA256),
                ("x-amz-date", self.time.as_str()),
            ]
        }

        /// The `Authorization` header for a GET, with the cached signing key.
        pub fn sign_get_cached(&self) -> String {
            let headers = self.get();
            self.signer
                .sign_headers(&self.req(&headers), &self.time)
                .authorization()
        }

        /// The same, deriving the signing key for the request (what the seed did).
        pub fn sign_get_uncached(&self) -> String {
            let headers = self.get();
            self.signer
                .sign_headers_uncached(&self.req(&headers), &self.time)
                .authorization()
        }

        /// A presigned GET query string, valid 10 minutes, with the cached key.
        pub fn presign_get(&self) -> String {
            let headers = [("host", HOST)];
            let req = SignableRequest {
                payload_hash: UNSIGNED_PAYLOAD,
                ..self.req(&headers)
            };
            self.signer
                .presign(&req, &self.time, Duration::from_secs(600))
                .expect("a valid expiry")
                .0
        }

        fn req<'a>(&self, headers: &'a [(&'a str, &'a str)]) -> SignableRequest<'a> {
            SignableRequest {
                method: "GET",
                canonical_uri: PATH,
                query: &[],
                headers,
                payload_hash: super::sigv4::EMPTY_SHA256,
            }
        }
    }
}

/// The store crosses tasks and threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<R2Store>();
    assert_send_sync::<R2StoreBuilder>();
};
