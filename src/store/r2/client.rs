//! Signed S3 requests over reqwest: the retry policy and S3 errors turned into [`Error`]s.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::errors::{Failure, RetryPolicy, default_code, xml_tag};
use super::sigv4::{
    AmzDate, EMPTY_SHA256, SignableRequest, Signer, UNSIGNED_PAYLOAD, parse_http_date,
    s3_canonical_uri, uri_encode, uri_encode_into,
};
use crate::error::{Error, Result};
use crate::store::{ByteStream, PutOutcome, PutPayload, verified};

/// The query parameter that makes each object URL unique.
const FRESH_PARAM: &str = "x-prewarm-fresh";

/// The `Content-Type` to store a payload with.
pub(super) fn stored_type(payload: &PutPayload) -> String {
    payload
        .content_type()
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// Everything [`Client::new`] needs.
pub(crate) struct ClientConfig {
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: Url,
    pub(crate) bucket: String,
    pub(crate) signer: Signer,
    pub(crate) public_base_url: Option<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: u64,
}

/// The S3 client behind an `R2Store`.
pub(crate) struct Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    pub(super) base: String,
    /// The `Host` header reqwest sends for `base`, which we sign.
    host: String,
    pub(super) bucket: String,
    pub(super) signer: Signer,
    public_base_url: Option<String>,
    retry: RetryPolicy,
    pub(super) multipart_threshold: u64,
    pub(super) part_size: u64,
    /// The next [`fresh_token`](Client::fresh_token).
    fresh: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2Client")
            .field("endpoint", &self.base)
            .field("bucket", &self.bucket)
            .field("signer", &self.signer)
            .field("public_base_url", &self.public_base_url)
            .field("retry", &self.retry)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// A request body that can be sent again on a retry without reading the source again.
#[derive(Clone)]
pub(super) enum Body {
    Empty,
    /// Chunks held in memory (at most one part), streamed to the socket without copying.
    Chunks {
        chunks: Arc<[Bytes]>,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Chunks { len, .. } => *len,
        }
    }

    fn to_reqwest(&self) -> reqwest::Body {
        match self {
            Body::Empty => reqwest::Body::from(Bytes::new()),
            Body::Chunks { chunks, .. } => {
                let chunks = chunks.clone();
                let n = chunks.len();
                reqwest::Body::wrap_stream(stream::iter(
                    (0..n).map(move |i| Ok::<Bytes, std::io::Error>(chunks[i].clone())),
                ))
            }
        }
    }
}

/// One S3 operation, signed afresh on every attempt.
pub(super) struct Op<'a> {
    pub(super) method: Method,
    /// The object key, decoded; empty for the bucket itself.
    pub(super) key: &'a str,
    pub(super) query: Vec<(&'static str, String)>,
    /// Extra headers, signed and sent.
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Body,
    /// Hex SHA-256 of the body or `UNSIGNED-PAYLOAD`.
    pub(super) payload_hash: String,
    /// What the operation is, for errors ("PUT media/ab/..").
    pub(super) what: &'static str,
}

impl Client {
    pub(crate) fn new(c: ClientConfig) -> Self {
        let host = match c.endpoint.port() {
            Some(p) => format!("{}:{p}", c.endpoint.host_str().unwrap_or_default()),
            None => c.endpoint.host_str().unwrap_or_default().to_owned(),
        };
        let base = format!("{}://{host}", c.endpoint.scheme());
        Self {
            http: c.http,
            base,
            host,
            bucket: c.bucket,
            signer: c.signer,
            public_base_url: c.public_base_url,
            retry: c.retry,
            multipart_threshold: c.multipart_threshold,
            part_size: c.part_size,
            // A random start in the low 48 bits: unique within a client, unlikely to meet
            // another client's, and short in the URL.
            fresh: std::sync::atomic::AtomicU64::new(fastrand::u64(..1 << 48) << 8),
        }
    }

    pub(super) fn max_attempts(&self) -> u32 {
        self.retry.max_attempts
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        self.retry.backoff(attempt, None)
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `/bucket/key`, decoded.
    fn object_path(&self, key: &str) -> String {
        if key.is_empty() {
            format!("/{}", self.bucket)
        } else {
            format!("/{}/{key}", self.bucket)
        }
    }

    fn now(&self) -> Result<AmzDate> {
        AmzDate::from_system_time(self.signer.now()).map_err(|e| Error::Config {
            message: format!("cannot sign: {e}"),
        })
    }

    /// Builds and signs one attempt.
    fn build(&self, op: &Op<'_>) -> Result<reqwest::Request> {
        let path = s3_canonical_uri(&self.object_path(op.key));
        let time = self.now()?;
        let mut url = String::with_capacity(self.base.len() + path.len() + 64);
        url.push_str(&self.base);
        url.push_str(&path);
        let mut query: Vec<(&str, &str)> = op.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        query.sort_unstable();
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            uri_encode_into(&mut url, k, false);
            url.push('=');
            uri_encode_into(&mut url, v, false);
        }
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(op.headers.len() + 4);
        headers.push(("host", &self.host));
        headers.push(("x-amz-content-sha256", &op.payload_hash));
        headers.push(("x-amz-date", time.as_str()));
        if let Some(t) = self.signer.session_token() {
            headers.push(("x-amz-security-token", t));
        }
        for (k, v) in &op.headers {
            headers.push((k, v));
        }
        let signed = self.signer.sign_headers(
            &SignableRequest {
                method: op.method.as_str(),
                canonical_uri: &path,
                query: &query,
                headers: &headers,
                payload_hash: &op.payload_hash,
            },
            &time,
        );
        let url = Url::parse(&url).map_err(|e| Error::InvalidInput {
            what: "object key",
            reason: format!("{:?} does not make a URL: {e}", op.key),
        })?;
        let mut map = HeaderMap::with_capacity(headers.len() + 2);
        for (k, v) in headers.iter().skip(1) {
            let name = HeaderName::from_static(k);
            let value = HeaderValue::from_str(v).map_err(|_| Error::InvalidInput {
                what: "header",
                reason: format!("{k} has a value that is not a valid header"),
            })?;
            map.insert(name, value);
        }
        let mut auth =
            HeaderValue::from_str(&signed.authorization()).map_err(|_| Error::Config {
                message: "R2_ACCESS_KEY_ID holds characters not allowed in a header".to_owned(),
            })?;
        auth.set_sensitive(true);
        map.insert(reqwest::header::AUTHORIZATION, auth);
        let mut req = reqwest::Request::new(op.method.clone(), url);
        if !matches!(op.body, Body::Empty) || op.method == Method::PUT || op.method == Method::POST
        {
            // An explicit length: R2 refuses chunked transfer encoding.
            map.insert(
                reqwest::header::CONTENT_LENGTH,
                HeaderValue::from(op.body.len()),
            );
            *req.body_mut() = Some(op.body.to_reqwest());
        }
        *req.headers_mut() = map;
        Ok(req)
    }

    /// Sends `op`, retrying transient failures; answers the successful response or the last
    /// failure.
    pub(super) async fn send(
        &self,
        op: &Op<'_>,
    ) -> Result<std::result::Result<reqwest::Response, Failure>> {
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            attempt += 1;
            let req = self.build(op)?;
            let local = self.signer.local_now();
            let skew_before = self.signer.skew_ms();
            let failure = match self.http.execute(req).await {
                Ok(resp) => {
                    self.observe_date(resp.headers(), local);
                    if resp.status().is_success() {
                        return Ok(Ok(resp));
                    }
                    self.failure_from(resp, local).await
                }
                Err(e) => Failure::transport(e),
            };
            // A refusal that came with a new clock correction (a HEAD's 403 has no body to
            // say `RequestTimeTooSkewed`, but its Date header shows the skew): sign again.
            let corrected = self.signer.skew_ms() != skew_before
                && matches!(&failure, Failure::Status { status, .. } if *status == StatusCode::FORBIDDEN);
            if corrected && attempt < self.retry.max_attempts {
                continue;
            }
            if !failure.retryable() || attempt >= self.retry.max_attempts {
                if attempt > 1 {
                    tracing::warn!(op = op.what, key = op.key, attempts = attempt, elapsed = ?started.elapsed(), "S3 request failed: {failure:?}");
                }
                return Ok(Err(failure));
            }
            let skewed =
                matches!(&failure, Failure::Status { code, .. } if code == "RequestTimeTooSkewed");
            let wait = if skewed {
                Duration::ZERO // the clock was corrected from the answer: re-sign now
            } else {
                match self
                    .retry
                    .wait(attempt, failure.retry_after(), started.elapsed())
                {
                    Some(wait) => wait,
                    None => {
                        tracing::debug!(op = op.what, key = op.key, attempts = attempt, retry_after = ?failure.retry_after(), "S3 request out of retry time: {failure:?}");
                        return Ok(Err(failure));
                    }
                }
            };
            tracing::debug!(
                op = op.what,
                key = op.key,
                attempt,
                ?wait,
                "retrying S3 request: {failure:?}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Like [`send`](Self::send), with the failure made a public error.
    pub(super) async fn send_ok(&self, op: &Op<'_>) -> Result<reqwest::Response> {
        match self.send(op).await? {
            Ok(r) => Ok(r),
            Err(f) => Err(f.into_error(self, op.what, op.key)),
        }
    }

    fn observe_date(&self, headers: &HeaderMap, local: std::time::SystemTime) {
        if let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            self.signer.observe_server_time(server, local);
        }
    }

    async fn failure_from(&self, resp: reqwest::Response, local: std::time::SystemTime) -> Failure {
        let status = resp.status();
        // Seconds, or an HTTP date (RFC 9110 section 10.2.3).
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| match v.trim().parse::<u64>() {
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => parse_http_date(v.trim())
                    .map(|at| at.duration_since(local).unwrap_or(Duration::ZERO)),
            });
        // Error bodies are small XML documents; read at most 64 KiB of one.
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() > 64 * 1024 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body);
        let code = xml_tag(&text, "Code").unwrap_or_else(|| default_code(status).to_owned());
        let message = xml_tag(&text, "Message").unwrap_or_default();
        if code == "RequestTimeTooSkewed" {
            // S3 puts the server's time in the body too; the Date header was read already.
            if let Some(server) = xml_tag(&text, "ServerTime").and_then(|t| parse_iso8601(&t)) {
                self.signer.observe_server_time(server, local);
            }
        }
        Failure::Status {
            status,
            code,
            message,
            retry_after,
        }
    }

    // ---- operations ----

    pub(crate) async fn head(&self, key: &str) -> Result<Meta> {
        let resp = self
            .send_ok(&self.simple(Method::HEAD, key, "HEAD"))
            .await?;
        let size = content_length(&resp).ok_or_else(|| Error::Backend {
            backend: "r2",
            message: format!("HEAD {key}: the answer has no Content-Length"),
            retryable: false,
        })?;
        Ok(Meta {
            size,
            content_type: content_type(&resp),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<(Meta, ByteStream)> {
        let resp = self.send_ok(&self.simple(Method::GET, key, "GET")).await?;
        let meta = Meta {
            size: content_length(&resp).unwrap_or(0),
            content_type: content_type(&resp),
        };
        let base = self.base.clone();
        let bucket = self.bucket.clone();
        let key = key.to_owned();
        let body = resp
            .bytes_stream()
            .map_err(move |e| Error::Unavailable {
                message: format!(
                    "GET object {key} in bucket {bucket} at {base}: the body was cut short: {}",
                    match Failure::transport(e) {
                        Failure::Transport { message, .. } => message,
                        Failure::Status { .. } => String::new(),
                    }
                ),
            })
            .boxed();
        Ok((meta, body))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        match self
            .send(&self.simple(Method::DELETE, key, "DELETE"))
            .await?
        {
            Ok(_) => Ok(()),
            Err(f) if f.is_status(StatusCode::NOT_FOUND) => Ok(()),
            Err(f) => Err(f.into_error(self, "DELETE", key)),
        }
    }

    /// A URL for GET of `key`, fresh on every call: Telegram caches what it fetched from a
    /// URL, a failure too, for days, so a retry must not reuse one. Both kinds carry a
    /// signed-in, never-repeated `x-prewarm-fresh` query parameter (S3 and R2 ignore `x-`
    /// query parameters they do not know); a presigned one also asks the server to answer
    /// with `content_type` (`response-content-type`), whatever the object was stored with.
    ///
    /// A public base URL has no signature, so it cannot set the served type: objects served
    /// that way need their type stored at put. Behind a CDN each fresh URL is a cache miss
    /// that reads the bucket once (a CDN that ignores query strings serves its cached copy,
    /// which is right too: objects are content-addressed and never change).
    pub(crate) fn url(
        &self,
        key: &str,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> Result<String> {
        let fresh = self.fresh_token();
        if let Some(base) = &self.public_base_url {
            return Ok(format!(
                "{base}/{}?{FRESH_PARAM}={fresh}",
                uri_encode(key, true)
            ));
        }
        let path = s3_canonical_uri(&self.object_path(key));
        let time = self.now()?;
        let mut query: Vec<(&str, &str)> = vec![(FRESH_PARAM, &fresh)];
        if let Some(ct) = content_type {
            query.push(("response-content-type", ct));
        }
        query.sort_unstable();
        let (query, _) = self
            .signer
            .presign(
                &SignableRequest {
                    method: "GET",
                    canonical_uri: &path,
                    query: &query,
                    headers: &[("host", &self.host)],
                    payload_hash: UNSIGNED_PAYLOAD,
                },
                &time,
                expires_in,
            )
            .map_err(|e| Error::InvalidInput {
                what: "URL expiry",
                reason: e.to_string(),
            })?;
        Ok(format!("{}{path}?{query}", self.base))
    }

    /// A token no earlier call of this client answered: a counter, after a random start so
    /// that clients (and processes) do not share values.
    fn fresh_token(&self) -> String {
        let n = self
            .fresh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{n:x}")
    }

    /// Stores `payload` in one round trip when the object is new: a PUT with
    /// `If-None-Match: *`, whose 412 means the object is there already (R2 and S3 both
    /// evaluate the condition atomically, so two writers racing on one key both succeed, one
    /// with `AlreadyExists`). Payloads over the multipart threshold are the caller's to send
    /// by multipart upload (`multipart::upload`), conditional the same way.
    pub(crate) async fn put(&self, key: &str, payload: PutPayload) -> Result<PutOutcome> {
        let sha = payload.sha256().to_hex();
        let len = payload.len();
        let content_type = stored_type(&payload);
        // At most the threshold in memory, so that a retry can resend the body.
        let chunks: Vec<Bytes> = verified(payload).try_collect().await?;
        let op = Op {
            method: Method::PUT,
            key,
            query: Vec::new(),
            headers: vec![
                ("content-type", content_type),
                ("if-none-match", "*".to_owned()),
            ],
            body: Body::Chunks {
                chunks: chunks.into(),
                len,
            },
            payload_hash: sha,
            what: "PUT",
        };
        match self.send(&op).await? {
            Ok(_) => Ok(PutOutcome::Created),
            Err(f) if f.is_status(StatusCode::PRECONDITION_FAILED) => Ok(PutOutcome::AlreadyExists),
            Err(f) => Err(f.into_error(self, "PUT", key)),
        }
    }

    pub(super) fn simple<'a>(&self, method: Method, key: &'a str, what: &'static str) -> Op<'a> {
        Op {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            payload_hash: EMPTY_SHA256.to_owned(),
            what,
        }
    }
}

/// What a HEAD or GET says of an object.
pub(crate) struct Meta {
    pub(crate) size: u64,
    pub(crate) content_type: Option<String>,
}

impl Meta {
    pub(crate) fn into_meta(self, key: &crate::media::ObjectKey) -> crate::store::ObjectMeta {
        crate::store::ObjectMeta {
            key: key.clone(),
            size: self.size,
            content_type: self.content_type,
        }
    }
}

fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn content_length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `2024-01-01T00:00:00Z` (S3's `ServerTime`), fractional seconds ignored.
fn parse_iso8601(s: &str) -> Option<std::time::SystemTime> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = super::sigv4::days_from_civil(y as i64, mo as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + se;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time() {
        assert!(parse_iso8601("2024-01-01T00:00:00.000Z").is_some());
        assert!(parse_iso8601("2024-01-01").is_none());
    }
}
