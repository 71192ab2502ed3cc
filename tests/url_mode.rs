//! End to end by URL: `R2Store` on s3s-fs (an independent S3 server that checks
//! signatures), its presigned URLs fetched over HTTP by the crate's fake Bot API, which
//! reads the served `Content-Type` as Telegram does. For every kind Telegram takes by URL the
//! media goes by URL, with no multipart fallback; the kinds and formats it never takes by URL
//! are uploaded without a URL being tried; a URL that serves the wrong type is refused by the
//! fake, and the upload that follows is counted.
//!
//! `cargo test --features r2,testkit --test url_mode`

#[path = "r2/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prewarm::store::{GetResult, MediaStore, ObjectMeta, PutOutcome, PutPayload, R2Store};
use prewarm::testkit::{FakeBotApi, FakeLimits};
use prewarm::upload::{MediaSource, UploadRequest};
use prewarm::{MediaKey, MediaKind, ObjectKey, Sha256, TelegramUploader, Uploader};

const TOKEN: &str = "424242:url-mode-token-0123456789";
const CHAT: i64 = -1_001_234_567_001;

/// A media of `kind` in a real format: its magic bytes, then filler to `len`.
fn media(kind: MediaKind, magic: &[u8], len: usize) -> (MediaKind, Bytes) {
    let mut v = magic.to_vec();
    let mut rng = fastrand::Rng::with_seed(len as u64 ^ kind as u64);
    while v.len() < len {
        v.push(rng.u8(..));
    }
    (kind, Bytes::from(v))
}

const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0";
const GIF: &[u8] = b"GIF89a";
const PDF: &[u8] = b"%PDF-1.7\n";
const MP3: &[u8] = b"ID3\x04\0\0";
const OGG: &[u8] = b"OggS\0\x02";
const WEBP: &[u8] = b"RIFF\x24\0\0\0WEBPVP8 ";
const TGS: &[u8] = b"\x1f\x8b\x08\0";

struct Setup {
    _s3: servers::S3Server,
    store: R2Store,
    fake: FakeBotApi,
    uploader: TelegramUploader,
}

async fn setup() -> Setup {
    let s3 = servers::s3_server().await;
    let store = servers::builder(s3.addr).build().expect("store");
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([CHAT])
        .with_limits(FakeLimits::off())
        .start()
        .await
        .expect("fake");
    let uploader = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats([CHAT])
        .build()
        .expect("uploader");
    Setup {
        _s3: s3,
        store,
        fake,
        uploader,
    }
}

/// Stores `bytes` as the engine's save does (content type sniffed), and answers the request
/// a warm worker would make from the store: no bytes in memory, the store's URL.
async fn stored(
    store: Arc<dyn MediaStore>,
    up: &TelegramUploader,
    kind: MediaKind,
    bytes: &Bytes,
) -> UploadRequest {
    let sha = Sha256::of(bytes);
    let object = ObjectKey::for_content(&sha);
    let payload = PutPayload::from_bytes(bytes.clone())
        .with_sniffed_content_type(kind)
        .await;
    assert_eq!(
        store.put(&object, payload).await.unwrap(),
        PutOutcome::Created
    );
    let url = store
        .url(&object, Duration::from_secs(300), None)
        .await
        .unwrap();
    assert!(url.is_some(), "R2 has URLs");
    UploadRequest {
        key: MediaKey::new(up.bot().clone(), sha, kind),
        size: bytes.len() as u64,
        source: MediaSource::from_store(store, object, url),
    }
}

/// The type a save names for `bytes` of `kind` (sniffed from the first bytes).
async fn sniffed(kind: MediaKind, bytes: &Bytes) -> Option<String> {
    let payload = PutPayload::from_bytes(bytes.clone())
        .with_sniffed_content_type(kind)
        .await;
    payload.content_type().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_telegram_takes_by_url_goes_by_url() {
    let s = setup().await;
    let store: Arc<dyn MediaStore> = Arc::new(s.store.clone());
    let by_url = [
        media(MediaKind::Photo, JPEG, 40_000),
        media(MediaKind::Video, MP4, 300_000),
        media(MediaKind::Animation, GIF, 20_000),
        media(MediaKind::Animation, MP4, 30_000),
        media(MediaKind::Document, PDF, 50_000),
        media(MediaKind::Audio, MP3, 60_000),
        media(MediaKind::Voice, OGG, 900_000),
        media(MediaKind::Sticker, WEBP, 10_000),
    ];
    for (kind, bytes) in &by_url {
        // What the engine asks at save: these need no bytes (they went by URL, below).
        let mime = sniffed(*kind, bytes).await;
        assert!(
            !s.uploader
                .needs_bytes(*kind, bytes.len() as u64, mime.as_deref()),
            "{kind} as {mime:?}"
        );
        let request = stored(store.clone(), &s.uploader, *kind, bytes).await;
        let uploaded = s
            .uploader
            .upload(request)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let file = s
            .fake
            .file(uploaded.file_id.as_str())
            .expect("issued by the fake");
        assert_eq!(file.kind, *kind);
        assert_eq!(
            file.sha256,
            Sha256::of(bytes),
            "{kind}: the bytes R2 served"
        );
    }
    let n = by_url.len() as u64;
    let stats = s.uploader.stats();
    assert_eq!(
        (stats.sent_by_url, stats.sent_by_upload, stats.url_fallbacks),
        (n, 0, 0),
        "{stats:?}"
    );
    let fake = s.fake.stats();
    assert_eq!(fake.url_fetches, n, "{fake:?}");
    assert_eq!(
        fake.uploads, n,
        "every body came by URL, none by multipart: {fake:?}"
    );
}

/// What Telegram never takes by URL is uploaded at once, without a URL tried (and refused)
/// first: video notes, animated stickers, voice notes over 1 MB (they would arrive as
/// documents), documents that are not PDF, ZIP or GIF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_telegram_refuses_by_url_is_uploaded_without_trying() {
    let s = setup().await;
    let store: Arc<dyn MediaStore> = Arc::new(s.store.clone());
    let uploaded = [
        media(MediaKind::VideoNote, MP4, 50_000),
        media(MediaKind::Sticker, TGS, 20_000),
        media(MediaKind::Voice, OGG, 1_200_000),
        media(MediaKind::Document, MP4, 40_000),
    ];
    for (kind, bytes) in &uploaded {
        let mime = sniffed(*kind, bytes).await;
        assert!(
            s.uploader
                .needs_bytes(*kind, bytes.len() as u64, mime.as_deref()),
            "{kind} as {mime:?} needs its bytes"
        );
        let request = stored(store.clone(), &s.uploader, *kind, bytes).await;
        let up = s
            .uploader
            .upload(request)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(s.fake.file(up.file_id.as_str()).unwrap().kind, *kind);
    }
    let stats = s.uploader.stats();
    assert_eq!(stats.sent_by_upload, uploaded.len() as u64, "{stats:?}");
    assert_eq!(
        (stats.sent_by_url, stats.url_fallbacks),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(s.fake.stats().url_fetches, 0);
}

/// R2 behind something that serves every object as `application/octet-stream` (a CDN or
/// proxy that drops the type): the fake refuses the URL as Telegram does ("wrong type of the
/// web page content"), the uploader falls back to uploading the bytes from R2, and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_serving_the_wrong_type_falls_back_to_an_upload_and_is_counted() {
    let s = setup().await;
    let (kind, bytes) = media(MediaKind::Photo, JPEG, 30_000);
    let proxied: Arc<dyn MediaStore> = Arc::new(WrongTypeUrls {
        inner: s.store.clone(),
        url: s.fake.host_file(bytes.clone(), "application/octet-stream"),
    });
    let request = stored(proxied, &s.uploader, kind, &bytes).await;
    let up = s
        .uploader
        .upload(request)
        .await
        .expect("uploaded after the fallback");
    assert_eq!(s.fake.file(up.file_id.as_str()).unwrap().kind, kind);
    let stats = s.uploader.stats();
    assert_eq!(
        (stats.url_fallbacks, stats.sent_by_upload, stats.sent_by_url),
        (1, 1, 0),
        "{stats:?}"
    );
    let fake = s.fake.stats();
    assert_eq!(
        fake.sends, 2,
        "the refused URL send, then the upload: {fake:?}"
    );
    assert_eq!(fake.url_fetches, 0, "the fetched body was refused");
}

/// R2 for the bytes, and URLs that serve them as `application/octet-stream`.
#[derive(Debug)]
struct WrongTypeUrls {
    inner: R2Store,
    url: String,
}

#[async_trait::async_trait]
impl MediaStore for WrongTypeUrls {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> prewarm::Result<PutOutcome> {
        self.inner.put(key, payload).await
    }
    async fn get(&self, key: &ObjectKey) -> prewarm::Result<GetResult> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> prewarm::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> prewarm::Result<()> {
        self.inner.delete(key).await
    }
    async fn url(
        &self,
        _key: &ObjectKey,
        _expires_in: Duration,
        _content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        Ok(Some(self.url.clone()))
    }
}

/// Every attempt asks the store for a new URL rather than reusing the one the source was
/// made with: here that first URL serves the wrong type (as a failed fetch Telegram has
/// cached would keep failing), and the send goes by a fresh R2 URL all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_gets_a_fresh_url_from_the_store() {
    let s = setup().await;
    let store: Arc<dyn MediaStore> = Arc::new(s.store.clone());
    let (kind, bytes) = media(MediaKind::Document, PDF, 20_000);
    let mut request = stored(store.clone(), &s.uploader, kind, &bytes).await;
    let stale = s.fake.host_file(bytes.clone(), "text/html");
    let object = ObjectKey::for_content(&Sha256::of(&bytes));
    request.source = MediaSource::from_store(store, object, Some(stale));
    s.uploader.upload(request).await.expect("by a fresh URL");
    let stats = s.uploader.stats();
    assert_eq!(
        (stats.sent_by_url, stats.url_fallbacks),
        (1, 0),
        "{stats:?}"
    );
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0";
const M4A: &[u8] = b"\0\0\0\x20ftypM4A \0\0\0\0";

/// The whole path, as a bot runs it: `PrewarmEngine::save` into R2 (the engine sniffs and
/// stores the content type), its workers warm each media from the store through the
/// uploader, and the fake fetches R2's presigned URL and checks the type it serves. Every
/// kind and format Telegram takes by URL goes by URL, and the file_ids come back to the
/// engine's cache. (No byte cache: the warm reads the media as it does after a restart or
/// once the save's bytes have left the cache.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_warms_every_kind_telegram_takes_by_url_from_r2_by_url() {
    let s = setup().await;
    // The fake enforces no limits here: neither does this uploader (the group's 3 s would
    // make the test wait half a minute).
    let uploader = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(s.fake.base_url())
        .with_warmup_chats([CHAT])
        .with_rate_limits(prewarm::upload::RateLimits::unlimited())
        .build()
        .expect("uploader");
    let engine = prewarm::PrewarmEngine::builder()
        .with_store(Arc::new(s.store.clone()))
        .with_uploader(Arc::new(uploader.clone()))
        .with_byte_cache(0, Duration::from_secs(1))
        .build()
        .expect("engine");
    let running = engine.spawn();
    let by_url = [
        media(MediaKind::Photo, JPEG, 41_000),
        media(MediaKind::Photo, PNG, 42_000),
        media(MediaKind::Video, MP4, 310_000),
        media(MediaKind::Animation, GIF, 21_000),
        media(MediaKind::Document, PDF, 51_000),
        media(MediaKind::Document, ZIP, 52_000),
        media(MediaKind::Document, GIF, 53_000),
        media(MediaKind::Audio, MP3, 61_000),
        media(MediaKind::Audio, M4A, 62_000),
        media(MediaKind::Voice, OGG, 800_000),
        media(MediaKind::Sticker, WEBP, 11_000),
    ];
    let bot = uploader.bot().clone();
    for (kind, bytes) in &by_url {
        let key = engine
            .save(&bot, bytes.clone(), *kind)
            .await
            .unwrap_or_else(|e| panic!("save {kind}: {e}"));
        let file_id = engine
            .wait_ready(&key, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("warm {kind}: {e}"));
        let file = s.fake.file(file_id.as_str()).expect("issued by the fake");
        assert_eq!((file.kind, file.sha256), (*kind, Sha256::of(bytes)));
    }
    running.shutdown().await.expect("shutdown");
    let n = by_url.len() as u64;
    let stats = uploader.stats();
    assert_eq!(
        (stats.sent_by_url, stats.sent_by_upload, stats.url_fallbacks),
        (n, 0, 0),
        "{stats:?}"
    );
    let fake = s.fake.stats();
    assert_eq!(
        (fake.url_fetches, fake.uploads),
        (n, n),
        "every body came by URL from R2, none by multipart: {fake:?}"
    );
}
