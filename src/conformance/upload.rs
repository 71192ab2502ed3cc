//! The [`Uploader`] contract, behaviour by behaviour.
//!
//! The uploader under test must accept any bytes as a document and as a photo (a fake Bot API
//! does; the real one would want a decodable image), and must not be rate limited so hard that
//! a dozen uploads fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::media::{BotId, MediaKey, MediaKind, ObjectKey, Sha256};
use crate::store::{
    GetResult, MediaStore, MediaStoreExt, MemoryStore, ObjectMeta, PutOutcome, PutPayload,
};
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

/// When [`Uploader::needs_bytes`] answers `false` for a media, an upload of it from a source
/// that offers a URL reads none of its bytes from the store. Each of `media` (kind, bytes) is
/// stored in `store` first, typed from its bytes as a save does, then uploaded from it with
/// the store's URL. `store` must hand out URLs the uploader's service can fetch, and `media`
/// must hold at least one media the uploader answers `false` for (not in [`run_all`]: an
/// uploader that never takes a URL keeps the default `true`, and has nothing to show here).
pub async fn what_needs_no_bytes_is_not_read(
    uploader: &dyn Uploader,
    store: Arc<dyn MediaStore>,
    media: &[(MediaKind, Bytes)],
) {
    let counting = Arc::new(CountingStore {
        inner: store,
        gets: Mutex::default(),
    });
    let mut by_url = 0;
    for (kind, bytes) in media {
        let sha = Sha256::of(bytes);
        let object = ObjectKey::for_content(&sha);
        let payload = PutPayload::from_bytes(bytes.clone())
            .with_sniffed_content_type(*kind)
            .await;
        let content_type = payload.content_type().map(str::to_owned);
        counting.put(&object, payload).await.expect("put");
        let size = bytes.len() as u64;
        let needs = uploader.needs_bytes(*kind, size, content_type.as_deref());
        let url = counting
            .url(&object, Duration::from_secs(600), content_type.as_deref())
            .await
            .expect("url");
        assert!(url.is_some(), "the store must hand out URLs");
        let request = UploadRequest {
            key: MediaKey::new(uploader.bot().clone(), sha, *kind),
            size,
            source: MediaSource::from_store(counting.clone(), object.clone(), url),
        };
        uploader
            .upload(request)
            .await
            .unwrap_or_else(|e| panic!("uploading a {kind} of {size} bytes: {e}"));
        if !needs {
            by_url += 1;
            assert_eq!(
                counting.gets(&object),
                0,
                "needs_bytes answered false for a {kind} of {size} bytes ({content_type:?}), \
                 yet its upload read it from the store"
            );
        }
    }
    assert!(by_url > 0, "no media of `media` goes without its bytes");
}

/// A store that counts the reads of each object's bytes.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn MediaStore>,
    // A std mutex: a map update, never held across an `.await`.
    gets: Mutex<HashMap<ObjectKey, u32>>,
}

impl CountingStore {
    fn gets(&self, key: &ObjectKey) -> u32 {
        let gets = self.gets.lock().unwrap_or_else(|p| p.into_inner());
        gets.get(key).copied().unwrap_or(0)
    }
}

#[async_trait]
impl MediaStore for CountingStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
        self.inner.put(key, payload).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        *self
            .gets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn url(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        self.inner.url(key, expires_in, content_type).await
    }
}
