//! The [`Uploader`] contract, behaviour by behaviour.
//!
//! The uploader under test must accept any bytes as a document and as a photo (a fake Bot API
//! does; the real one would want a decodable image), and must not be rate limited so hard that
//! a dozen uploads fail.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::media::{BotId, MediaKey, MediaKind, ObjectKey, Sha256};
use crate::store::{MediaStore, MediaStoreExt, MemoryStore};
use crate::upload::{MediaSource, UploadRequest, Uploader};

/// Runs every uploader behaviour below.
pub async fn run_all(uploader: &dyn Uploader) {
    uploads_from_memory(uploader).await;
    uploads_from_a_store(uploader).await;
    distinct_media_get_distinct_file_ids(uploader).await;
    media_of_another_bot_is_refused(uploader).await;
    media_over_the_limit_is_too_large(uploader).await;
}

fn unique_bytes(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::new();
    Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

fn request(bot: &BotId, bytes: Bytes, kind: MediaKind) -> UploadRequest {
    UploadRequest {
        key: MediaKey::new(bot.clone(), Sha256::of(&bytes), kind),
        size: bytes.len() as u64,
        source: MediaSource::from_bytes(bytes),
    }
}

/// Bytes held in memory upload into a non-empty file_id.
pub async fn uploads_from_memory(uploader: &dyn Uploader) {
    for kind in [MediaKind::Document, MediaKind::Photo] {
        let uploaded = uploader
            .upload(request(uploader.bot(), unique_bytes(2_000), kind))
            .await
            .unwrap_or_else(|e| panic!("uploading a {kind} from memory: {e}"));
        assert!(
            !uploaded.file_id.as_str().is_empty(),
            "a {kind} gets a file_id"
        );
    }
}

/// Bytes read from a store (no URL) upload too.
pub async fn uploads_from_a_store(uploader: &dyn Uploader) {
    let store = Arc::new(MemoryStore::new());
    let bytes = unique_bytes(300_000);
    let (object, _) = store.put_bytes(bytes.clone()).await.expect("put");
    assert_eq!(object, ObjectKey::for_content(&Sha256::of(&bytes)));
    let request = UploadRequest {
        key: MediaKey::new(
            uploader.bot().clone(),
            Sha256::of(&bytes),
            MediaKind::Document,
        ),
        size: bytes.len() as u64,
        source: MediaSource::from_store(store as Arc<dyn MediaStore>, object, None),
    };
    let uploaded = uploader
        .upload(request)
        .await
        .unwrap_or_else(|e| panic!("uploading from a store: {e}"));
    assert!(!uploaded.file_id.as_str().is_empty());
}

/// Two different media never share a file_id.
pub async fn distinct_media_get_distinct_file_ids(uploader: &dyn Uploader) {
    let a = uploader
        .upload(request(
            uploader.bot(),
            unique_bytes(1_000),
            MediaKind::Document,
        ))
        .await
        .expect("upload a");
    let b = uploader
        .upload(request(
            uploader.bot(),
            unique_bytes(1_000),
            MediaKind::Document,
        ))
        .await
        .expect("upload b");
    assert_ne!(a.file_id, b.file_id, "distinct media, distinct file_ids");
}

/// A media keyed to another bot is refused for good: its file_id would be useless to it.
pub async fn media_of_another_bot_is_refused(uploader: &dyn Uploader) {
    let other = BotId::new(format!("{}-other", uploader.bot())).expect("bot id");
    let result = uploader
        .upload(request(&other, unique_bytes(100), MediaKind::Document))
        .await;
    match result {
        Err(e) => assert!(!e.is_retryable(), "refusal is permanent: {e}"),
        Ok(up) => panic!("uploaded another bot's media: {up:?}"),
    }
}

/// A photo over the Bot API's 10 MB photo limit is refused as too large.
pub async fn media_over_the_limit_is_too_large(uploader: &dyn Uploader) {
    let result = uploader
        .upload(request(
            uploader.bot(),
            Bytes::from(vec![7u8; 10_000_001]),
            MediaKind::Photo,
        ))
        .await;
    assert!(
        matches!(
            result,
            Err(Error::TooLarge {
                kind: MediaKind::Photo,
                size: 10_000_001,
                ..
            })
        ),
        "a 10,000,001-byte photo is TooLarge: {result:?}"
    );
}
