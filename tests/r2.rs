//! `R2Store` against real servers on loopback:
//! - s3s-fs, an independent S3 implementation that verifies every signature, started here;
//! - a small fault server (raw HTTP/1.1 over a tokio `TcpListener`) for what s3s-fs does not
//!   do: `SlowDown`, an error inside a 200, a reset mid-body, clock skew, R2's refusals.
//!
//! `cargo test --features r2,conformance --test r2`

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, stream};
use prewarm::store::{MediaStore, MediaStoreExt, PutOutcome, PutPayload};
use prewarm::{Error, ObjectKey, Sha256};
use tokio::net::TcpListener;

#[path = "r2/conditional.rs"]
mod conditional;
#[path = "r2/servers.rs"]
mod servers;

use servers::*;

#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_against_s3s_fs() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    prewarm::conformance::store::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_idempotent_put_head_delete() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    let data = random_bytes(1000);
    let (key, outcome) = store.put_bytes(data.clone()).await.expect("put");
    assert_eq!(outcome, PutOutcome::Created);
    let (_, again) = store.put_bytes(data.clone()).await.expect("put again");
    assert_eq!(again, PutOutcome::AlreadyExists);
    assert_eq!(store.head(&key).await.expect("head").size, 1000);
    assert_eq!(store.get_bytes(&key).await.expect("get"), data);
    store.delete(&key).await.expect("delete");
    assert!(matches!(
        store.head(&key).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(store.get(&key).await, Err(Error::NotFound { .. })));
    store.delete(&key).await.expect("delete of a missing key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_a_typed_unauthorized_error_without_the_secret() {
    let server = s3_server().await;
    let wrong = "not-the-secret-XYZ";
    let store = builder(server.addr)
        .with_credentials(AKID, wrong)
        .build()
        .expect("store");
    let err = store
        .put_bytes(Bytes::from_static(b"x"))
        .await
        .expect_err("a wrong secret must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(
        msg.contains("R2_SECRET_ACCESS_KEY") && msg.contains("clock"),
        "{msg}"
    );
    assert!(!msg.contains(wrong) && !format!("{err:?}").contains(wrong));
    assert!(!err.is_retryable());
    assert!(!format!("{store:?}").contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_an_hour_off_is_corrected_from_the_server() {
    let server = s3_server().await;
    // s3s refuses requests more than 15 minutes off; hyper's Date header tells the truth.
    let store = builder(server.addr)
        .with_clock(|| SystemTime::now() - Duration::from_secs(3600))
        .build()
        .expect("store");
    let data = random_bytes(500);
    let (key, outcome) = store
        .put_bytes(data.clone())
        .await
        .expect("put after correction");
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.get_bytes(&key).await.expect("get"), data);
}

/// s3s-fs creates a bucket's folder on demand, so the fault server plays R2 here.
#[tokio::test]
async fn missing_bucket_is_a_config_error() {
    let server = fault_server(|_, _| s3_error(404, "NoSuchBucket")).await;
    let store = builder(server.addr).build().expect("store");
    let err = store
        .put_bytes(Bytes::from_static(b"x"))
        .await
        .expect_err("no bucket");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("R2_BUCKET"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_works_with_plain_get_and_refuses_tampering_and_expiry() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    let key = ObjectKey::new("presign/a b+c=é.jpg").expect("key");
    let data = random_bytes(4096);
    store
        .put(&key, PutPayload::from_bytes(data.clone()))
        .await
        .expect("put");
    let http = reqwest::Client::new();

    let url = store
        .url(&key, Duration::from_secs(300), None)
        .await
        .expect("url")
        .expect("a presigned URL");
    assert!(
        url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=300"),
        "{url}"
    );
    let resp = http.get(&url).send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body"), data);

    // Tampered: another object, or another signature.
    let other = url.replace("presign/", "presigned/");
    assert_eq!(http.get(&other).send().await.expect("GET").status(), 403);
    let last = url.pop_last_hex();
    let tampered = format!("{}{}", &url[..url.len() - 1], last);
    assert_eq!(http.get(&tampered).send().await.expect("GET").status(), 403);

    // Expired: signed two hours ago for one minute.
    let past = builder(server.addr)
        .with_clock(|| SystemTime::now() - Duration::from_secs(7200))
        .build()
        .expect("store");
    let old = past
        .url(&key, Duration::from_secs(60), None)
        .await
        .expect("url")
        .expect("url");
    assert_eq!(http.get(&old).send().await.expect("GET").status(), 403);

    // Expiry bounds are checked.
    for bad in [Duration::ZERO, Duration::from_secs(7 * 86_400 + 1)] {
        let err = store.url(&key, bad, None).await.expect_err("bad expiry");
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    }
}

trait PopLastHex {
    fn pop_last_hex(&self) -> char;
}

impl PopLastHex for String {
    /// A hex digit that differs from the string's last one.
    fn pop_last_hex(&self) -> char {
        if self.ends_with('0') { '1' } else { '0' }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_base_url_is_used_when_set_and_fresh_on_every_call() {
    let store = builder("127.0.0.1:9".parse().unwrap())
        .with_public_base_url("https://cdn.example.com/")
        .build()
        .expect("store");
    let key = ObjectKey::new("a b/ü.jpg").unwrap();
    let url = |ct| {
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .url(&key, Duration::from_secs(60), ct)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let first = url(None).await;
    assert!(
        first.starts_with("https://cdn.example.com/a%20b/%C3%BC.jpg?x-prewarm-fresh="),
        "{first}"
    );
    // Telegram caches a URL's outcome (a failed fetch too) for days: never the same twice.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        assert!(seen.insert(url(Some("image/jpeg")).await));
    }
    assert!(!seen.contains(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_spaces_unicode_and_reserved_characters() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    for name in [
        "k/with space.jpg",
        "k/ünïcødé ✓ фото ሴ.png",
        "k/reserved !$&'()*+,;=@[]~%20?#.bin",
        "k/a//b",
    ] {
        let Ok(key) = ObjectKey::new(name) else {
            continue; // the crate refuses empty segments: nothing to send
        };
        let data = random_bytes(100 + name.len());
        store
            .put(&key, PutPayload::from_bytes(data.clone()))
            .await
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
        assert_eq!(store.get_bytes(&key).await.expect("get"), data, "{name:?}");
        let url = store
            .url(&key, Duration::from_secs(60), None)
            .await
            .unwrap()
            .unwrap();
        let got = reqwest::get(&url)
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body");
        assert_eq!(got, data, "{name:?} by presigned URL");
    }
}

/// `len` pseudo-random bytes in chunks of `chunk`, generated lazily.
fn chunks(len: usize, chunk: usize) -> impl Iterator<Item = Bytes> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(chunk);
        left -= n;
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        Some(Bytes::from(v))
    })
}

/// The digest of [`chunks`] and a way to stream them, so that the whole object is never in
/// memory.
fn generated(len: usize, chunk: usize) -> (Sha256, impl Fn() -> prewarm::store::ByteStream) {
    let mut hasher = prewarm::Sha256Hasher::new();
    for c in chunks(len, chunk) {
        hasher.update(&c);
    }
    let make = move || stream::iter(chunks(len, chunk).map(Ok)).boxed();
    (hasher.finish(), make)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_above_threshold_round_trips() {
    let server = s3_server().await;
    let store = builder(server.addr)
        .with_multipart_threshold(5 * MIB as u64)
        .with_part_size(5 * MIB as u64)
        .build()
        .expect("store");
    let len = 12 * MIB + 123;
    let (sha, make) = generated(len, 100_003);
    let key = ObjectKey::for_content(&sha);
    let outcome = store
        .put(&key, PutPayload::from_stream(len as u64, sha, make()))
        .await
        .expect("multipart put");
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.head(&key).await.expect("head").size, len as u64);
    let mut hasher = prewarm::Sha256Hasher::new();
    let mut body = store.get(&key).await.expect("get").body;
    while let Some(c) = body.next().await {
        hasher.update(&c.expect("chunk"));
    }
    assert_eq!(hasher.finish(), sha);
    // Idempotent above the threshold too.
    let again = store
        .put(&key, PutPayload::from_stream(len as u64, sha, make()))
        .await
        .expect("put again");
    assert_eq!(again, PutOutcome::AlreadyExists);

    // A payload that lies about its digest fails and leaves nothing behind.
    let (_, make2) = generated(6 * MIB, 65_536);
    let liar = Sha256::of(b"not these bytes");
    let lkey = ObjectKey::for_content(&liar);
    let err = store
        .put(
            &lkey,
            PutPayload::from_stream(6 * MIB as u64, liar, make2()),
        )
        .await
        .expect_err("digest mismatch");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert!(!store.exists(&lkey).await.expect("head"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_50_mb_object() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    let len = 50 * 1000 * 1000;
    let (sha, make) = generated(len, 256 * 1024);
    let key = ObjectKey::for_content(&sha);
    store
        .put(&key, PutPayload::from_stream(len as u64, sha, make()))
        .await
        .expect("put 50 MB");
    let got = store.get(&key).await.expect("get");
    assert_eq!(got.meta.size, len as u64);
    let mut body = got.body;
    let mut hasher = prewarm::Sha256Hasher::new();
    let mut chunks = 0usize;
    let mut largest = 0usize;
    while let Some(c) = body.next().await {
        let c = c.expect("chunk");
        chunks += 1;
        largest = largest.max(c.len());
        hasher.update(&c);
    }
    assert_eq!(hasher.len(), len as u64);
    assert_eq!(hasher.finish(), sha);
    assert!(
        chunks > 10 && largest < 8 * MIB,
        "streamed: {chunks} chunks, largest {largest}"
    );
}

fn key() -> ObjectKey {
    ObjectKey::new("media/ab/object").unwrap()
}

#[tokio::test]
async fn slowdown_503_is_retried_and_re_signed() {
    let server = fault_server(|_, n| {
        if n == 1 {
            s3_error(503, "SlowDown")
        } else {
            reply(200, "hello")
        }
    })
    .await;
    let store = builder(server.addr).build().unwrap();
    assert_eq!(
        store.get_bytes(&key()).await.expect("get"),
        Bytes::from_static(b"hello")
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let auth = s.header("authorization").expect("signed");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPREWARMTEST/"),
            "{auth}"
        );
        assert!(s.header("x-amz-date").is_some());
    }
}

#[tokio::test]
async fn persistent_5xx_gives_up_with_a_retryable_error() {
    let server = fault_server(|_, _| s3_error(500, "InternalError")).await;
    let store = builder(server.addr).with_max_attempts(3).build().unwrap();
    let err = store.head(&key()).await.expect_err("always 500");
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert_eq!(server.seen().len(), 3, "bounded attempts");
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_typed() {
    let server = fault_server(|_, _| Reply::Full {
        status: 429,
        headers: vec![("Retry-After".into(), "7".into())],
        body: b"<Error><Code>SlowDown</Code></Error>".to_vec(),
    })
    .await;
    // The backoff is capped at 50 ms, yet the server's 7 s are not cut to it: a retry that
    // soon would only be refused again. 7 s do not fit in the 5 s of retry time, so the
    // caller gets the wait at once, after one request.
    let store = builder(server.addr)
        .with_max_attempts(2)
        .with_max_retry_time(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(4), store.get(&key()))
        .await
        .expect("no wait past the retry time")
        .expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err:?}");
    assert_eq!(server.seen().len(), 1, "no early retry inside Retry-After");
}

#[tokio::test]
async fn auth_errors_are_not_retried() {
    let server = fault_server(|_, _| s3_error(403, "SignatureDoesNotMatch")).await;
    let store = builder(server.addr).build().unwrap();
    let err = store.get(&key()).await.expect_err("403");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("R2_SECRET_ACCESS_KEY"));
    assert_eq!(server.seen().len(), 1, "no retry on an auth error");
}

#[tokio::test]
async fn connection_reset_mid_body_is_a_retryable_stream_error() {
    let server = fault_server(|_, _| Reply::ResetMidBody {
        announced: 1_000_000,
        sent: 1000,
    })
    .await;
    let store = builder(server.addr).build().unwrap();
    let got = store.get(&key()).await.expect("headers arrive");
    assert_eq!(got.meta.size, 1_000_000);
    let mut body = got.body;
    let mut read = 0;
    let err = loop {
        match body.next().await {
            Some(Ok(c)) => read += c.len(),
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly after {read} bytes of 1000000"),
        }
    };
    assert!(read <= 1000);
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("cut short"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    // Bind then drop: nothing listens on the port.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let store = builder(addr).with_max_attempts(2).build().unwrap();
    let err = store.head(&key()).await.expect_err("refused");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn clock_skew_is_corrected_from_the_server_date() {
    // The server's clock is one hour ahead of ours; it refuses requests off by > 15 min.
    fn http_date(t: SystemTime) -> String {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let days = secs / 86_400;
        let (y, m, d) = civil(days as i64);
        let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
        let mon = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][(m - 1) as usize];
        let r = secs % 86_400;
        format!(
            "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
            r / 3600,
            r % 3600 / 60,
            r % 60
        )
    }
    fn civil(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }
    let server_now = || SystemTime::now() + Duration::from_secs(3600);
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }
    fn amz_secs(s: &str) -> Option<i64> {
        let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
        Some(days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?)
    }
    let server = fault_server(move |req, _| {
        let now = server_now();
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ours = req.header("x-amz-date").and_then(amz_secs).unwrap_or(0);
        let status = if (ours - now_secs).abs() <= 900 {
            200
        } else {
            403
        };
        let body: &[u8] = if status == 200 {
            b"ok"
        } else {
            b"<Error><Code>RequestTimeTooSkewed</Code></Error>"
        };
        Reply::Full {
            status,
            headers: vec![("Date".into(), http_date(now))],
            body: body.to_vec(),
        }
    })
    .await;
    let store = builder(server.addr).build().unwrap();
    let got = store
        .get_bytes(&key())
        .await
        .expect("corrected and retried");
    assert_eq!(got, Bytes::from_static(b"ok"));
    assert_eq!(server.seen().len(), 2);
    // Later requests are signed with the corrected clock from the start.
    store.get_bytes(&key()).await.expect("again");
    assert_eq!(server.seen().len(), 3);
}

/// A multipart upload against the fault server: the upload id (with `+`, `/`, `=`) is
/// percent-encoded, the parts are equal but the last, every request has a Content-Length and
/// no chunked encoding or CRC32 header, and a 200 carrying `InternalError` is retried.
#[tokio::test]
async fn multipart_rules_and_error_inside_200() {
    let completes = Arc::new(Mutex::new(0));
    let c2 = completes.clone();
    let part_sizes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let sizes = part_sizes.clone();
    let first_part_failed = Arc::new(Mutex::new(false));
    let server = fault_server(move |req, _| {
        let t = req.target.as_str();
        match req.method.as_str() {
            "HEAD" => reply(404, ""),
            "POST" if t.ends_with("?uploads=") || t.ends_with("?uploads") => reply(
                200,
                "<InitiateMultipartUploadResult><UploadId>a+b/c==</UploadId></InitiateMultipartUploadResult>",
            ),
            "PUT" => {
                let mut failed = first_part_failed.lock().unwrap();
                if !*failed {
                    // The first attempt at part 1 fails: the part is sent again from memory.
                    *failed = true;
                    return s3_error(500, "InternalError");
                }
                sizes.lock().unwrap().push(req.body_len);
                Reply::Full {
                    status: 200,
                    headers: vec![("ETag".into(), format!("\"etag-{}\"", req.body_len))],
                    body: Vec::new(),
                }
            }
            "POST" => {
                // R2's refusal: all parts but the last must have one size, 5 MiB at least.
                let sizes = sizes.lock().unwrap();
                let (last, rest) = sizes.split_last().expect("parts");
                let equal = rest.iter().all(|s| *s == rest[0] && *s >= 5 * MIB);
                if !equal || *last == 0 || rest.first().is_some_and(|f| last > f) {
                    return s3_error(400, "InvalidPart");
                }
                let mut n = c2.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    s3_error(200, "InternalError")
                } else {
                    reply(200, "<CompleteMultipartUploadResult><ETag>\"x-3\"</ETag></CompleteMultipartUploadResult>")
                }
            }
            _ => reply(400, ""),
        }
    })
    .await;
    let store = builder(server.addr)
        .with_multipart_threshold(1024)
        .with_part_size(5 * MIB as u64)
        .build()
        .unwrap();
    let len = 11 * MIB;
    let (sha, make) = generated(len, 70_001);
    let outcome = store
        .put(
            &ObjectKey::for_content(&sha),
            PutPayload::from_stream(len as u64, sha, make()),
        )
        .await
        .expect("multipart put");
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(
        *completes.lock().unwrap(),
        2,
        "the InternalError in a 200 was retried"
    );
    let seen = server.seen();
    let parts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(
        parts.iter().map(|p| p.body_len).collect::<Vec<_>>(),
        [5 * MIB, 5 * MIB, 5 * MIB, MIB],
        "part 1 twice (the retry resends it whole from memory), then parts 2 and 3"
    );
    assert_eq!(
        parts[0].target, parts[1].target,
        "the retry is the same part"
    );
    assert_eq!(*part_sizes.lock().unwrap(), [5 * MIB, 5 * MIB, MIB]);
    for p in &parts {
        assert!(
            p.target.contains("uploadId=a%2Bb%2Fc%3D%3D"),
            "{}",
            p.target
        );
        assert!(
            p.header("x-amz-content-sha256")
                .is_some_and(|h| h.len() == 64)
        );
    }
    for s in &seen {
        assert!(s.header("transfer-encoding").is_none(), "{s:?}");
        assert!(s.header("expect").is_none(), "{s:?}");
        assert!(
            !s.headers
                .iter()
                .any(|(k, _)| k.to_ascii_lowercase().starts_with("x-amz-checksum")),
            "{s:?}"
        );
        if s.method == "PUT" || s.method == "POST" {
            assert!(s.header("content-length").is_some(), "{s:?}");
        }
    }
}

#[tokio::test]
async fn a_stalled_server_times_out_and_is_retried() {
    let server = fault_server(|_, _| Reply::Stall(Duration::from_secs(5))).await;
    let store = builder(server.addr)
        .with_read_timeout(Duration::from_millis(200))
        .with_max_attempts(2)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = store.head(&key()).await.expect_err("no answer");
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.seen().len(), 2, "retried once");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the read timeout cut the wait"
    );
}

#[tokio::test]
async fn not_implemented_is_rejected_without_retry() {
    let server = fault_server(|_, _| s3_error(501, "NotImplemented")).await;
    let store = builder(server.addr).build().unwrap();
    let err = store.get(&key()).await.expect_err("501");
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert_eq!(server.seen().len(), 1);
}
