//! [`R2StoreBuilder`]: every setting of an [`R2Store`], validated in one place.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::R2Store;
use super::client::{Client, ClientConfig};
use super::errors::RetryPolicy;
use super::sigv4::{ClockFn, Credentials, Signer};
use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;
/// R2's (and S3's) smallest part, but for the last.
pub(crate) const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part.
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

/// Configures an [`R2Store`].
///
/// `with_*` setters never fail; [`build`](R2StoreBuilder::build) checks everything.
///
/// ```no_run
/// use prewarm::store::R2StoreBuilder;
///
/// let store = R2StoreBuilder::new()
///     .with_account_id("0123456789abcdef0123456789abcdef")
///     .with_bucket("media")
///     .with_credentials("AKID...", "secret...")
///     .build()?;
/// # Ok::<(), prewarm::Error>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct R2StoreBuilder {
    endpoint: Option<String>,
    account_id: Option<String>,
    bucket: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: String,
    public_base_url: Option<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
    multipart_threshold: u64,
    part_size: u64,
    retry: RetryPolicy,
    clock: Option<ClockFn>,
}

impl fmt::Debug for R2StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2StoreBuilder")
            .field("endpoint", &self.endpoint)
            .field("account_id", &self.account_id)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "******"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "******"),
            )
            .field("region", &self.region)
            .field("public_base_url", &self.public_base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for R2StoreBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl R2StoreBuilder {
    /// A builder with the defaults: region `auto`, 10 s connect and 30 s read timeouts,
    /// multipart above 8 MiB in 8 MiB parts, 4 attempts with backoff from 100 ms to 5 s within
    /// 60 s in all.
    pub fn new() -> Self {
        Self {
            endpoint: None,
            account_id: None,
            bucket: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            region: "auto".to_owned(),
            public_base_url: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            multipart_threshold: 8 * MIB,
            part_size: 8 * MIB,
            retry: RetryPolicy::default(),
            clock: None,
        }
    }

    /// A builder filled from the environment: `R2_ENDPOINT` or `R2_ACCOUNT_ID`, `R2_BUCKET`,
    /// `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`, `R2_REGION` (default `auto`) and
    /// `R2_PUBLIC_BASE_URL`. Missing variables are reported by [`build`](Self::build).
    ///
    /// # Errors
    /// [`Error::Config`] when a variable is set but not valid Unicode.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&crate::env::process)
    }

    /// [`from_env`](Self::from_env) over any lookup (tests pass a map).
    pub(crate) fn from_lookup(get: crate::env::Lookup<'_>) -> Result<Self> {
        let mut b = Self::new();
        b.endpoint = get("R2_ENDPOINT")?;
        b.account_id = get("R2_ACCOUNT_ID")?;
        b.bucket = get("R2_BUCKET")?;
        b.access_key_id = get("R2_ACCESS_KEY_ID")?;
        b.secret_access_key = get("R2_SECRET_ACCESS_KEY")?;
        if let Some(region) = get("R2_REGION")? {
            b.region = region;
        }
        b.public_base_url = get("R2_PUBLIC_BASE_URL")?;
        Ok(b)
    }

    /// The service's base URL, `https://<account>.r2.cloudflarestorage.com` for R2 or any
    /// S3-compatible endpoint (`http://127.0.0.1:9000`). Takes precedence over the account id.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The Cloudflare account id; the endpoint becomes
    /// `https://<account_id>.r2.cloudflarestorage.com`.
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    /// The bucket (it must exist).
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// The access key id and secret access key of an R2 API token.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// A session token for temporary credentials (sent as `x-amz-security-token`).
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// The signing region: `auto` for R2 (the default), the bucket's region elsewhere.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// A public base URL (an R2 custom domain or r2.dev address) that serves the bucket's
    /// objects: [`url`](crate::MediaStore::url) then answers `<base>/<key>` instead of a
    /// presigned URL.
    pub fn with_public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// How long to wait for a connection (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a read may stall, headers or body (default 30 s). There is no limit on a
    /// whole transfer, so large streams are not cut short.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Objects larger than this go up as multipart uploads (default 8 MiB). Smaller ones go in
    /// one `PUT`, held in memory meanwhile so that a retry can resend them.
    pub fn with_multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// The size of each part but the last, 5 MiB to 5 GiB (default 8 MiB). One part at a
    /// time is held in memory. Raised automatically to stay within 10,000 parts.
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// How many times a request is tried in all (default 4; at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts;
        self
    }

    /// The backoff between attempts: `base * 2^n` capped at `max`, with full jitter
    /// (defaults 100 ms and 5 s). A server's `Retry-After` is honoured as sent, within
    /// [`with_max_retry_time`](Self::with_max_retry_time).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry.base_delay = base;
        self.retry.max_delay = max;
        self
    }

    /// The longest one request may take over all its attempts and waits (default 60 s). A
    /// wait that would pass it is not taken: the request fails then, a 429 or `SlowDown`
    /// with [`Error::RateLimited`](crate::Error::RateLimited) carrying the server's wait.
    pub fn with_max_retry_time(mut self, total: Duration) -> Self {
        self.retry.max_elapsed = total;
        self
    }

    /// The clock the signer reads (default the system clock), for tests and for hosts with a
    /// better time source. A skew measured from the server's answers is added to it.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the settings and builds the store.
    ///
    /// # Errors
    /// [`Error::Config`] naming the missing or malformed setting and its environment
    /// variable: no endpoint or account id, no bucket, no credentials, an endpoint that is not
    /// an `http(s)` URL without a path, a bad public base URL, a part size outside 5 MiB to
    /// 5 GiB, a zero multipart threshold.
    pub fn build(self) -> Result<R2Store> {
        let config = |message: String| Error::Config { message };
        let endpoint = match (&self.endpoint, &self.account_id) {
            (Some(e), _) => e.trim_end_matches('/').to_owned(),
            (None, Some(a)) => {
                if a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(config(format!(
                        "R2_ACCOUNT_ID {a:?} is not an account id (letters and digits, as in the \
                         dashboard's R2 overview)"
                    )));
                }
                format!("https://{a}.r2.cloudflarestorage.com")
            }
            (None, None) => {
                return Err(config(
                    "no R2 endpoint: set R2_ACCOUNT_ID (or R2_ENDPOINT for another S3 service), \
                     or call with_account_id / with_endpoint"
                        .to_owned(),
                ));
            }
        };
        let url = reqwest::Url::parse(&endpoint).map_err(|e| {
            config(format!(
                "R2_ENDPOINT {endpoint:?} is not a URL ({e}): expected https://<account>.r2.cloudflarestorage.com"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.path() != "/"
            || url.query().is_some()
        {
            return Err(config(format!(
                "R2_ENDPOINT {endpoint:?} must be an http(s) URL with a host and no path, such as \
                 https://<account>.r2.cloudflarestorage.com (the bucket goes in R2_BUCKET)"
            )));
        }
        let bucket = self
            .bucket
            .clone()
            .ok_or_else(|| config("no bucket: set R2_BUCKET or call with_bucket".to_owned()))?;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(config(format!(
                "R2_BUCKET {bucket:?} is not a bucket name: 3 to 63 lower-case letters, digits, \
                 '-' or '.'"
            )));
        }
        let (Some(access_key_id), Some(secret_access_key)) =
            (self.access_key_id.clone(), self.secret_access_key.clone())
        else {
            return Err(config(
                "no credentials: set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (an R2 API token) \
                 or call with_credentials"
                    .to_owned(),
            ));
        };
        if self.region.is_empty() {
            return Err(config("R2_REGION is empty: use `auto` for R2".to_owned()));
        }
        let public_base_url = match &self.public_base_url {
            None => None,
            Some(p) => {
                let p = p.trim_end_matches('/');
                match reqwest::Url::parse(p) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {
                        Some(p.to_owned())
                    }
                    _ => {
                        return Err(config(format!(
                            "R2_PUBLIC_BASE_URL {p:?} is not an http(s) URL such as \
                             https://media.example.com"
                        )));
                    }
                }
            }
        };
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(config(format!(
                "part size {} is outside 5 MiB ({MIN_PART_SIZE}) to 5 GiB ({MAX_PART_SIZE})",
                self.part_size
            )));
        }
        if self.multipart_threshold == 0 {
            return Err(config(
                "the multipart threshold must be at least 1 byte".to_owned(),
            ));
        }
        let clock: ClockFn = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemTime::now));
        let signer = Signer::new(
            Credentials {
                access_key_id,
                secret_access_key,
                session_token: self.session_token.clone(),
            },
            &self.region,
            "s3",
            clock,
        );
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {}", e.without_url())))?;
        let client = Client::new(ClientConfig {
            http,
            endpoint: url,
            bucket,
            signer,
            public_base_url,
            retry: RetryPolicy {
                max_attempts: self.retry.max_attempts.max(1),
                ..self.retry
            },
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
        });
        Ok(R2Store {
            client: Arc::new(client),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<R2StoreBuilder> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        R2StoreBuilder::from_lookup(&|k| Ok(map.get(k).cloned()))
    }

    const SECRET: &str = "do-not-print-me";

    #[test]
    fn from_env_names_what_is_missing() {
        let err = from(&[]).unwrap().build().unwrap_err();
        assert!(err.to_string().contains("R2_ACCOUNT_ID"), "{err}");
        let err = from(&[("R2_ACCOUNT_ID", "abc123")])
            .unwrap()
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("R2_BUCKET"));
        let err = from(&[("R2_ACCOUNT_ID", "abc123"), ("R2_BUCKET", "media")])
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("R2_SECRET_ACCESS_KEY"), "{err}");
        let err = from(&[("R2_ENDPOINT", "ftp://x/y"), ("R2_BUCKET", "media")])
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("R2_ENDPOINT"), "{err}");
    }

    #[test]
    fn from_env_builds_and_hides_the_secret() {
        let b = from(&[
            ("R2_ACCOUNT_ID", "0123abc"),
            ("R2_BUCKET", "media"),
            ("R2_ACCESS_KEY_ID", "AKID"),
            ("R2_SECRET_ACCESS_KEY", SECRET),
            ("R2_PUBLIC_BASE_URL", "https://cdn.example.com/"),
        ])
        .unwrap();
        assert!(!format!("{b:?}").contains(SECRET));
        let store = b.build().unwrap();
        let dbg = format!("{store:?}");
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains("0123abc.r2.cloudflarestorage.com"), "{dbg}");
        assert_eq!(store.bucket(), "media");
    }

    #[test]
    fn part_size_is_checked() {
        let b = R2StoreBuilder::new()
            .with_endpoint("http://127.0.0.1:9")
            .with_bucket("media")
            .with_credentials("a", "b");
        assert!(b.clone().with_part_size(MIN_PART_SIZE - 1).build().is_err());
        assert!(b.clone().with_part_size(MAX_PART_SIZE + 1).build().is_err());
        assert!(b.clone().with_multipart_threshold(0).build().is_err());
        assert!(b.with_part_size(MIN_PART_SIZE).build().is_ok());
    }
}
