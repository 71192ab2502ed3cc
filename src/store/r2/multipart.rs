//! Multipart upload (<https://docs.aws.amazon.com/AmazonS3/latest/API/mpUploadComplete.html>)
//! with R2's rules: parts of 5 MiB to 5 GiB, all but the last of one size, at most 10,000,
//! and the upload id percent-encoded in the query (it holds `+`, `/` and `=`; the client's
//! query encoder encodes every reserved character, in the URL and the signature alike).
//!
//! One part at a time is held in memory (as the chunks that arrived, not copied), so a
//! retry can resend it and its SHA-256 can be signed; the source stream is never read whole.

use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::client::{Body, Client, Op, stored_type};
use super::errors::{Failure, xml_escape, xml_tag};
use super::sigv4::{hex, sha256_hex};
use crate::error::{Error, Result};
use crate::store::{PutOutcome, PutPayload, verified};

const MAX_PARTS: u64 = 10_000;

/// The part size for an object of `len` bytes: the configured size, raised (to a whole MiB)
/// when the object would otherwise need more than 10,000 parts.
pub(super) fn part_size_for(len: u64, configured: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = len.div_ceil(MAX_PARTS);
    configured.max(needed.div_ceil(MIB) * MIB)
}

/// Uploads `payload` in parts. Conditional at both ends, as R2 documents
/// (<https://developers.cloudflare.com/r2/api/s3/conditional-operations/>: CreateMultipartUpload
/// and CompleteMultipartUpload accept `If-None-Match`): R2 refuses the create with 412 when
/// the object exists, before any part moves; a server that evaluates the condition only at
/// complete (S3) answers 412 there, and the parts are aborted.
pub(super) async fn upload(client: &Client, key: &str, payload: PutPayload) -> Result<PutOutcome> {
    let len = payload.len();
    let part_size = part_size_for(len, client.part_size);
    let upload_id = match create(client, key, stored_type(&payload)).await? {
        Some(id) => id,
        None => return Ok(PutOutcome::AlreadyExists),
    };
    match upload_parts(client, key, &upload_id, payload, part_size).await {
        Ok(parts) => match complete(client, key, &upload_id, &parts).await {
            Ok(outcome) => {
                if outcome == PutOutcome::AlreadyExists {
                    abort(client, key, &upload_id).await;
                }
                Ok(outcome)
            }
            Err(e) => {
                abort(client, key, &upload_id).await;
                Err(e)
            }
        },
        Err(e) => {
            abort(client, key, &upload_id).await;
            Err(e)
        }
    }
}

/// Starts an upload; `None` when the server says the object exists already.
async fn create(client: &Client, key: &str, content_type: String) -> Result<Option<String>> {
    let op = Op {
        query: vec![("uploads", String::new())],
        headers: vec![
            ("content-type", content_type),
            ("if-none-match", "*".to_owned()),
        ],
        ..client.simple(Method::POST, key, "CreateMultipartUpload")
    };
    let resp = match client.send(&op).await? {
        Ok(r) => r,
        Err(f) if f.is_status(StatusCode::PRECONDITION_FAILED) => return Ok(None),
        Err(f) => return Err(f.into_error(client, "CreateMultipartUpload", key)),
    };
    let text = resp
        .text()
        .await
        .map_err(|e| Failure::transport(e).into_error(client, "CreateMultipartUpload", key))?;
    xml_tag(&text, "UploadId")
        .map(Some)
        .ok_or_else(|| Error::Backend {
            backend: "r2",
            message: format!("CreateMultipartUpload {key}: the answer has no UploadId"),
            retryable: true,
        })
}

/// Reads the payload part by part and uploads each; answers the ETags in order.
async fn upload_parts(
    client: &Client,
    key: &str,
    upload_id: &str,
    payload: PutPayload,
    part_size: u64,
) -> Result<Vec<String>> {
    let mut body = verified(payload);
    let mut etags = Vec::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut filled = 0u64;
    let mut hasher = Sha256::new();
    let mut pending: Option<Bytes> = None;
    loop {
        let next = match pending.take() {
            Some(b) => Some(b),
            None => body.try_next().await?,
        };
        let done = next.is_none();
        if let Some(mut chunk) = next {
            let room = part_size - filled;
            if chunk.len() as u64 > room {
                // Split without copying: the rest starts the next part.
                pending = Some(chunk.split_off(room as usize));
            }
            hasher.update(&chunk);
            filled += chunk.len() as u64;
            chunks.push(chunk);
        }
        let full = filled == part_size;
        if full || (done && filled > 0) {
            let number = etags.len() + 1;
            let hash = hex(&std::mem::take(&mut hasher).finalize());
            let part = Body::Chunks {
                chunks: std::mem::take(&mut chunks).into(),
                len: filled,
            };
            filled = 0;
            etags.push(upload_part(client, key, upload_id, number, part, hash).await?);
        }
        if done {
            return Ok(etags);
        }
    }
}

async fn upload_part(
    client: &Client,
    key: &str,
    upload_id: &str,
    number: usize,
    body: Body,
    hash: String,
) -> Result<String> {
    let op = Op {
        method: Method::PUT,
        key,
        query: vec![
            ("partNumber", number.to_string()),
            ("uploadId", upload_id.to_owned()),
        ],
        headers: Vec::new(),
        body,
        payload_hash: hash,
        what: "UploadPart",
    };
    let resp = client.send_ok(&op).await?;
    resp.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::Backend {
            backend: "r2",
            message: format!("UploadPart {number} of {key}: the answer has no ETag"),
            retryable: true,
        })
}

async fn complete(
    client: &Client,
    key: &str,
    upload_id: &str,
    etags: &[String],
) -> Result<PutOutcome> {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            xml_escape(etag)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let xml = Bytes::from(xml);
    let hash = sha256_hex(&xml);
    let len = xml.len() as u64;
    let op = Op {
        method: Method::POST,
        key,
        query: vec![("uploadId", upload_id.to_owned())],
        headers: vec![
            ("content-type", "application/xml".to_owned()),
            ("if-none-match", "*".to_owned()),
        ],
        body: Body::Chunks {
            chunks: vec![xml].into(),
            len,
        },
        payload_hash: hash,
        what: "CompleteMultipartUpload",
    };
    // S3 may answer 200 and then report an error in the body (the connection was held open
    // while it assembled the parts): such an InternalError is retried like a 500.
    let mut attempt = 1u32;
    loop {
        let resp = match client.send(&op).await? {
            Ok(r) => r,
            Err(f) if f.is_status(StatusCode::PRECONDITION_FAILED) => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(f) => return Err(f.into_error(client, "CompleteMultipartUpload", key)),
        };
        let text = resp.text().await.map_err(|e| {
            Failure::transport(e).into_error(client, "CompleteMultipartUpload", key)
        })?;
        if !text.contains("<Error>") {
            return Ok(PutOutcome::Created);
        }
        let code = xml_tag(&text, "Code").unwrap_or_default();
        let message = xml_tag(&text, "Message").unwrap_or_default();
        let failure = Failure::Status {
            status: StatusCode::OK,
            code: code.clone(),
            message,
            retry_after: None,
        };
        let retryable = matches!(
            code.as_str(),
            "InternalError" | "SlowDown" | "ServiceUnavailable"
        );
        if !retryable || attempt >= client.max_attempts() {
            return Err(failure.into_error(client, "CompleteMultipartUpload", key));
        }
        tokio::time::sleep(client.backoff(attempt)).await;
        attempt += 1;
    }
}

/// Best effort: an upload left behind costs storage until R2's lifecycle rule removes it.
async fn abort(client: &Client, key: &str, upload_id: &str) {
    let op = Op {
        query: vec![("uploadId", upload_id.to_owned())],
        ..client.simple(Method::DELETE, key, "AbortMultipartUpload")
    };
    match client.send(&op).await {
        Ok(Ok(_)) => {}
        Ok(Err(f)) => tracing::warn!(key, "could not abort a multipart upload: {f:?}"),
        Err(e) => tracing::warn!(key, "could not abort a multipart upload: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn part_size_stays_within_10000_parts() {
        assert_eq!(part_size_for(50 * MIB, 8 * MIB), 8 * MIB);
        // 100 GiB in 8 MiB parts would be 12,800 parts: raised to 11 MiB (9,310 parts).
        let len = 100 * 1024 * MIB;
        let size = part_size_for(len, 8 * MIB);
        assert_eq!(size, 11 * MIB);
        assert!(len.div_ceil(size) <= MAX_PARTS);
        assert_eq!(size % MIB, 0);
    }
}
