//! The [`MediaStore`] contract, behaviour by behaviour.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;

use crate::error::Error;
use crate::media::{ObjectKey, Sha256};
use crate::store::{MediaStore, MediaStoreExt, PutOutcome, PutPayload};

/// Runs every store behaviour below.
pub async fn run_all(store: &dyn MediaStore) {
    put_then_get_round_trips(store).await;
    put_is_idempotent(store).await;
    missing_objects_are_not_found(store).await;
    delete_removes_and_tolerates_missing(store).await;
    lying_payload_is_refused_and_leaves_nothing(store).await;
    keys_with_spaces_unicode_and_reserved_characters(store).await;
    multi_chunk_body_streams_back_intact(store).await;
    concurrent_puts_of_one_key_agree(store).await;
    url_is_optional_but_never_an_error(store).await;
    content_type_is_kept(store).await;
    urls_are_fresh_on_every_call(store).await;
}

fn random_bytes(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::new();
    Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

/// Bytes put under their content address come back identical, with their size.
pub async fn put_then_get_round_trips(store: &dyn MediaStore) {
    let data = random_bytes(10_000);
    let (key, outcome) = store.put_bytes(data.clone()).await.expect("put");
    assert_eq!(outcome, PutOutcome::Created, "a new object is created");
    assert_eq!(key, ObjectKey::for_content(&Sha256::of(&data)));
    let meta = store.head(&key).await.expect("head after put");
    assert_eq!(meta.size, data.len() as u64, "head reports the size");
    let got = store.get(&key).await.expect("get after put");
    assert_eq!(got.meta.size, data.len() as u64, "get reports the size");
    assert_eq!(
        got.bytes().await.expect("read body"),
        data,
        "same bytes back"
    );
}

/// A second put of the same key writes nothing and says so.
pub async fn put_is_idempotent(store: &dyn MediaStore) {
    let data = random_bytes(2_000);
    let (key, first) = store.put_bytes(data.clone()).await.expect("first put");
    assert_eq!(first, PutOutcome::Created);
    let (_, second) = store.put_bytes(data.clone()).await.expect("second put");
    assert_eq!(
        second,
        PutOutcome::AlreadyExists,
        "a put onto an existing key"
    );
    assert_eq!(store.get_bytes(&key).await.expect("get"), data);
}

/// `get` and `head` of a key never written answer `NotFound`.
pub async fn missing_objects_are_not_found(store: &dyn MediaStore) {
    let key = ObjectKey::for_content(&Sha256::of(&fastrand::u128(..).to_le_bytes()));
    assert!(
        matches!(store.head(&key).await, Err(Error::NotFound { .. })),
        "head of a missing key is NotFound"
    );
    assert!(
        matches!(store.get(&key).await, Err(Error::NotFound { .. })),
        "get of a missing key is NotFound"
    );
    assert!(!store.exists(&key).await.expect("exists"));
}

/// `delete` removes an object; deleting a missing key succeeds.
pub async fn delete_removes_and_tolerates_missing(store: &dyn MediaStore) {
    let (key, _) = store.put_bytes(random_bytes(100)).await.expect("put");
    store.delete(&key).await.expect("delete");
    assert!(
        matches!(store.head(&key).await, Err(Error::NotFound { .. })),
        "deleted object is gone"
    );
    store
        .delete(&key)
        .await
        .expect("delete of a missing key succeeds");
}

/// A body that does not match its declared length or digest fails the put and leaves no
/// object behind.
pub async fn lying_payload_is_refused_and_leaves_nothing(store: &dyn MediaStore) {
    let data = random_bytes(1_000);
    let sha = Sha256::of(&data);
    let key = ObjectKey::for_content(&sha);
    let cases = [
        ("short body", data.len() as u64 + 10, sha),
        ("long body", data.len() as u64 - 10, sha),
        (
            "wrong digest",
            data.len() as u64,
            Sha256::of(b"something else"),
        ),
    ];
    for (case, len, digest) in cases {
        let body = {
            let data = data.clone();
            stream::once(async move { Ok(data) }).boxed()
        };
        let result = store
            .put(&key, PutPayload::from_stream(len, digest, body))
            .await;
        assert!(result.is_err(), "{case}: put must fail, got {result:?}");
        assert!(
            !store.exists(&key).await.expect("head"),
            "{case}: a failed put leaves nothing behind"
        );
    }
}

/// Keys with spaces, non-ASCII letters and URL-reserved characters work.
pub async fn keys_with_spaces_unicode_and_reserved_characters(store: &dyn MediaStore) {
    let tag = fastrand::u64(..);
    for name in [
        format!("conformance/{tag}/with space.jpg"),
        format!("conformance/{tag}/ünïcødé ✓ фото.png"),
        format!("conformance/{tag}/reserved !$&'()*+,;=@[]~%20.bin"),
    ] {
        let key = ObjectKey::new(&name).expect("a valid key");
        let data = random_bytes(300);
        let outcome = store
            .put(&key, PutPayload::from_bytes(data.clone()))
            .await
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
        assert_eq!(outcome, PutOutcome::Created, "{name:?}");
        assert_eq!(
            store
                .get_bytes(&key)
                .await
                .unwrap_or_else(|e| panic!("get {name:?}: {e}")),
            data,
            "{name:?} round-trips"
        );
        store.delete(&key).await.expect("delete");
    }
}

/// A body given in many chunks is stored whole and read back as a stream of the same bytes.
pub async fn multi_chunk_body_streams_back_intact(store: &dyn MediaStore) {
    let data = random_bytes(3 * 1024 * 1024 + 17);
    let sha = Sha256::of(&data);
    let key = ObjectKey::for_content(&sha);
    let chunks: Vec<crate::Result<Bytes>> = data
        .chunks(100_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body = stream::iter(chunks).boxed();
    store
        .put(&key, PutPayload::from_stream(data.len() as u64, sha, body))
        .await
        .expect("put in chunks");
    let mut got = store.get(&key).await.expect("get").body;
    let mut read = Vec::with_capacity(data.len());
    while let Some(chunk) = got.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(read.len(), data.len(), "length read back");
    assert!(read == data[..], "bytes read back");
}

/// Concurrent puts of one key all succeed, at least one creates it, and the object is whole.
pub async fn concurrent_puts_of_one_key_agree(store: &dyn MediaStore) {
    let data = random_bytes(200_000);
    let results = futures::future::join_all((0..8).map(|_| store.put_bytes(data.clone()))).await;
    let mut created = 0;
    for r in &results {
        match r {
            Ok((_, PutOutcome::Created)) => created += 1,
            Ok((_, PutOutcome::AlreadyExists)) => {}
            Err(e) => panic!("a concurrent put failed: {e}"),
        }
    }
    assert!(created >= 1, "one of the puts created the object");
    let key = ObjectKey::for_content(&Sha256::of(&data));
    assert_eq!(store.get_bytes(&key).await.expect("get"), data);
}

/// `url` answers a URL or `None`, never an error, for an existing object.
pub async fn url_is_optional_but_never_an_error(store: &dyn MediaStore) {
    let (key, _) = store.put_bytes(random_bytes(64)).await.expect("put");
    let url = store
        .url(&key, std::time::Duration::from_secs(60), None)
        .await
        .expect("url");
    if let Some(url) = url {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "an http(s) URL: {url}"
        );
    }
}

/// The content type a put gives comes back from `head` and `get`.
pub async fn content_type_is_kept(store: &dyn MediaStore) {
    let data = random_bytes(300);
    let key = ObjectKey::for_content(&Sha256::of(&data));
    let payload = PutPayload::from_bytes(data).with_content_type("image/webp");
    assert_eq!(
        store.put(&key, payload).await.expect("put"),
        PutOutcome::Created
    );
    let head = store.head(&key).await.expect("head");
    assert_eq!(head.content_type.as_deref(), Some("image/webp"), "head");
    let got = store.get(&key).await.expect("get");
    assert_eq!(got.meta.content_type.as_deref(), Some("image/webp"), "get");
}

/// Two calls of `url` never answer the same URL (Telegram caches a URL's outcome, a failed
/// fetch too), whatever content type they ask for.
pub async fn urls_are_fresh_on_every_call(store: &dyn MediaStore) {
    let (key, _) = store.put_bytes(random_bytes(64)).await.expect("put");
    let ttl = std::time::Duration::from_secs(60);
    let a = store.url(&key, ttl, Some("image/jpeg")).await.expect("url");
    let b = store.url(&key, ttl, Some("image/jpeg")).await.expect("url");
    if a.is_some() || b.is_some() {
        assert_ne!(a, b, "two calls, two URLs");
    }
}
