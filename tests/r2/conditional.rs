//! One round trip per new object (issue 14): conditional writes instead of HEAD then PUT,
//! what happens when another writer got there first, content types, and presigned GETs.

use std::time::Duration;

use bytes::Bytes;
use prewarm::store::{MediaStore, MediaStoreExt, PutOutcome, PutPayload};
use prewarm::{Error, ObjectKey, Sha256};

use crate::servers::*;

fn payload(bytes: &'static [u8]) -> (ObjectKey, PutPayload) {
    let bytes = Bytes::from_static(bytes);
    let key = ObjectKey::for_content(&Sha256::of(&bytes));
    (key, PutPayload::from_bytes(bytes))
}

#[tokio::test]
async fn a_new_object_is_one_conditional_put_with_its_type() {
    let server = fault_server(|_, _| reply(200, "")).await;
    let store = builder(server.addr).build().unwrap();
    let (key, p) = payload(b"\x89PNG\r\n\x1a\n a png");
    let outcome = store
        .put(&key, p.with_content_type("image/png"))
        .await
        .expect("put");
    assert_eq!(outcome, PutOutcome::Created);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "no HEAD before the PUT: {seen:?}");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
    assert_eq!(seen[0].header("content-type"), Some("image/png"));
}

/// Another writer stored the object between our decision to write and our write (the race a
/// HEAD-then-PUT client loses): the server answers 412, which is `AlreadyExists`, at once.
#[tokio::test]
async fn a_412_after_a_race_means_already_there() {
    let server = fault_server(|_, _| s3_error(412, "PreconditionFailed")).await;
    let store = builder(server.addr).build().unwrap();
    let (key, p) = payload(b"raced");
    assert_eq!(
        store.put(&key, p).await.expect("put"),
        PutOutcome::AlreadyExists
    );
    assert_eq!(server.seen().len(), 1, "a 412 is an answer, not retried");
}

/// A conflicting conditional write in flight (S3's 409 ConditionalRequestConflict) is tried
/// again, and the retry's 412 settles it.
#[tokio::test]
async fn a_conditional_conflict_is_retried() {
    let server = fault_server(|_, n| {
        if n == 1 {
            s3_error(409, "ConditionalRequestConflict")
        } else {
            s3_error(412, "PreconditionFailed")
        }
    })
    .await;
    let store = builder(server.addr).build().unwrap();
    let (key, p) = payload(b"conflict");
    assert_eq!(store.put(&key, p).await.unwrap(), PutOutcome::AlreadyExists);
    assert_eq!(server.seen().len(), 2);
}

fn multipart_store(server: &FaultServer) -> prewarm::store::R2Store {
    builder(server.addr)
        .with_multipart_threshold(1024)
        .with_part_size(5 * MIB as u64)
        .with_max_attempts(2)
        .build()
        .unwrap()
}

fn big() -> (ObjectKey, PutPayload) {
    let bytes = Bytes::from(vec![7u8; 6 * MIB]);
    let key = ObjectKey::for_content(&Sha256::of(&bytes));
    (key, PutPayload::from_bytes(bytes))
}

fn is_create(req: &Seen) -> bool {
    req.method == "POST" && (req.target.ends_with("?uploads=") || req.target.ends_with("?uploads"))
}

const CREATED: &str =
    "<InitiateMultipartUploadResult><UploadId>up+id/1==</UploadId></InitiateMultipartUploadResult>";

/// R2 evaluates `If-None-Match` at CreateMultipartUpload: an existing object costs one
/// request and no part.
#[tokio::test]
async fn multipart_create_412_uploads_no_part() {
    let server = fault_server(|req, _| {
        if is_create(req) {
            s3_error(412, "PreconditionFailed")
        } else {
            reply(500, "")
        }
    })
    .await;
    let store = multipart_store(&server);
    let (key, p) = big();
    assert_eq!(
        store
            .put(&key, p.with_content_type("video/mp4"))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
    assert_eq!(seen[0].header("content-type"), Some("video/mp4"));
}

/// A server that checks the condition only at completion (S3; R2 too when the object
/// appeared meanwhile) answers 412 there: `AlreadyExists`, and the parts are aborted.
#[tokio::test]
async fn multipart_complete_412_aborts_the_parts() {
    let server = fault_server(|req, _| match req.method.as_str() {
        _ if is_create(req) => reply(200, CREATED),
        "PUT" => Reply::Full {
            status: 200,
            headers: vec![("ETag".into(), "\"e\"".into())],
            body: Vec::new(),
        },
        "POST" => s3_error(412, "PreconditionFailed"),
        "DELETE" => reply(204, ""),
        _ => reply(400, ""),
    })
    .await;
    let store = multipart_store(&server);
    let (key, p) = big();
    assert_eq!(store.put(&key, p).await.unwrap(), PutOutcome::AlreadyExists);
    let seen = server.seen();
    let complete = seen
        .iter()
        .find(|s| s.method == "POST" && !is_create(s))
        .expect("a complete");
    assert_eq!(complete.header("if-none-match"), Some("*"));
    let abort = seen.last().expect("requests");
    assert_eq!(abort.method, "DELETE");
    assert!(
        abort.target.contains("uploadId=up%2Bid%2F1%3D%3D"),
        "{}",
        abort.target
    );
}

/// A part that fails on every attempt fails the put, and the upload is aborted so that no
/// part is left to bill.
#[tokio::test]
async fn a_part_failing_for_good_aborts_the_upload() {
    let server = fault_server(|req, _| match req.method.as_str() {
        _ if is_create(req) => reply(200, CREATED),
        "PUT" => s3_error(500, "InternalError"),
        "DELETE" => reply(204, ""),
        _ => reply(400, ""),
    })
    .await;
    let store = multipart_store(&server);
    let (key, p) = big();
    let err = store
        .put(&key, p)
        .await
        .expect_err("the part never goes through");
    assert!(err.is_retryable(), "{err:?}");
    let seen = server.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PUT", "PUT", "DELETE"], "{seen:?}");
    assert!(
        seen[3].target.contains("uploadId=up%2Bid%2F1%3D%3D"),
        "{}",
        seen[3].target
    );
}

/// Against s3s-fs: the stored type comes back from HEAD and GET and is served on presigned
/// URLs; `response-content-type` serves the type asked for, for an object stored without one
/// (as before content types were stored); a URL presigned for GET refuses HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_on_s3s_fs_and_presigned_gets() {
    let server = s3_server().await;
    let store = builder(server.addr).build().expect("store");
    let (key, p) = payload(b"\xff\xd8\xff\xe0 a jpeg");
    store
        .put(&key, p.with_content_type("image/jpeg"))
        .await
        .unwrap();
    assert_eq!(
        store.head(&key).await.unwrap().content_type.as_deref(),
        Some("image/jpeg")
    );
    assert_eq!(
        store.get(&key).await.unwrap().meta.content_type.as_deref(),
        Some("image/jpeg")
    );
    let http = reqwest::Client::new();
    let served = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(url).send().await.expect("GET");
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }
    };
    let url = store
        .url(&key, Duration::from_secs(60), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served(url.clone()).await.as_deref(), Some("image/jpeg"));
    // Signed for GET: a HEAD with the same URL is refused.
    let head = http.head(&url).send().await.expect("HEAD");
    assert_eq!(
        head.status().as_u16(),
        403,
        "a GET signature must not allow HEAD"
    );

    // An object stored without a type (before this change) serves the type asked for.
    let (old, p) = payload(b"GIF89a an old object");
    store.put(&old, p).await.unwrap();
    assert_eq!(
        store.head(&old).await.unwrap().content_type.as_deref(),
        Some("application/octet-stream")
    );
    let url = store
        .url(&old, Duration::from_secs(60), Some("image/gif"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served(url.clone()).await.as_deref(), Some("image/gif"));
    // The type is signed: changing it breaks the signature.
    let forged = url.replace("image%2Fgif", "text%2Fhtml");
    assert_ne!(forged, url);
    let resp = http.get(forged).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // And a second put is one conditional request answered 412.
    let (_, again) = store
        .put_bytes(Bytes::from_static(b"GIF89a an old object"))
        .await
        .unwrap();
    assert_eq!(again, PutOutcome::AlreadyExists);
    assert!(matches!(
        store.head(&ObjectKey::new("media/none").unwrap()).await,
        Err(Error::NotFound { .. })
    ));
}
