//! TelegramUploader against the crate's fake Bot API over real loopback HTTP.
//!
//! `cargo test --features testkit --test telegram`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use prewarm::testkit::{ChatProblem, FakeBotApi, FakeLimits, FakeRate, Faults, Latency};
use prewarm::upload::{
    BudgetRequest, Grant, MediaSource, MemoryBudget, Rate, RateBudget, RateLimits, UploadRequest,
};
use prewarm::{
    BotId, Error, FileId, MediaKey, MediaKind, PrewarmEngine, Sha256, SizeLimits, TelegramUploader,
    Uploader,
};

const TOKEN: &str = "123456:AAE-fake-secret-token-0123456789";
const CHAT: i64 = -100_001;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Bytes that look like `kind` (its format's magic number), made unique by `n`, with the
/// Content-Type a storage server would give them.
fn sample(kind: MediaKind, n: u64, len: usize) -> (Bytes, &'static str) {
    let (magic, ct): (&[u8], &str) = match kind {
        MediaKind::Photo => (b"\xff\xd8\xff\xe0JFIF", "image/jpeg"),
        MediaKind::Video | MediaKind::VideoNote => (b"\0\0\0\x18ftypmp42", "video/mp4"),
        MediaKind::Animation => (b"GIF89a", "image/gif"),
        MediaKind::Document => (b"%PDF-1.7\n", "application/pdf"),
        MediaKind::Audio => (b"ID3\x04\0", "audio/mpeg"),
        MediaKind::Voice => (b"OggS\0\x02", "audio/ogg"),
        MediaKind::Sticker => (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
    };
    let mut v = magic.to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    (Bytes::from(v), ct)
}

fn request(bot: &BotId, kind: MediaKind, bytes: &Bytes, url: Option<String>) -> UploadRequest {
    // Hashing 50 MB in a debug build takes seconds; the uploader does not look at the hash.
    let sha = if bytes.len() > 1_000_000 {
        Sha256::from_bytes([7; 32])
    } else {
        Sha256::of(bytes)
    };
    UploadRequest {
        key: MediaKey::new(bot.clone(), sha, kind),
        size: bytes.len() as u64,
        source: MediaSource::from_bytes(bytes.clone()).with_url(url),
    }
}

async fn fake(limits: FakeLimits, chats: &[i64]) -> FakeBotApi {
    FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(chats.iter().copied())
        .with_limits(limits)
        .start()
        .await
        .expect("the fake starts")
}

/// An uploader of the fake's bot, journaling its warm-up sends (as `from_env`'s does).
fn uploader(fake: &FakeBotApi, chats: &[i64], limits: RateLimits) -> TelegramUploader {
    TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats(chats.iter().copied())
        .with_rate_limits(limits)
        .build()
        .expect("valid configuration")
}

#[tokio::test]
async fn every_kind_by_multipart_url_and_file_id() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    for (i, kind) in MediaKind::ALL.into_iter().enumerate() {
        // By multipart: the source has no URL.
        let (bytes, ct) = sample(kind, i as u64, 2000);
        let before = fake.stats();
        let req = request(&bot, kind, &bytes, None);
        let key = req.key.clone();
        let got = up
            .upload(req)
            .await
            .unwrap_or_else(|e| panic!("{kind} by multipart: {e}"));
        let file = fake
            .file(got.file_id.as_str())
            .expect("a file_id the fake issued");
        assert_eq!(
            (file.kind, file.sha256),
            (kind, key.sha256),
            "{kind}: the right file_id kept"
        );
        if kind == MediaKind::Photo {
            assert!(
                file.largest,
                "the largest photo size is kept, got {}x{}",
                file.width, file.height
            );
        }
        assert!(got.file_unique_id.is_some());
        let after = fake.stats();
        assert_eq!(
            after.url_fetches, before.url_fetches,
            "{kind}: no URL was given"
        );
        assert_eq!(fake.uploads_of(&key.sha256).succeeded, 1);

        // By URL: Telegram (the fake) fetches it, except video notes, which go multipart.
        let (bytes, ct2) = sample(kind, 100 + i as u64, 2000);
        assert_eq!(ct, ct2);
        let url = fake.host_file(bytes.clone(), ct);
        let before = fake.stats();
        let got_url = up
            .upload(request(&bot, kind, &bytes, Some(url)))
            .await
            .unwrap_or_else(|e| panic!("{kind} by URL: {e}"));
        let fetched = fake.stats().url_fetches - before.url_fetches;
        let expected = u64::from(kind != MediaKind::VideoNote);
        assert_eq!(fetched, expected, "{kind}: fetched by URL {fetched} times");
        let file = fake.file(got_url.file_id.as_str()).unwrap();
        assert_eq!((file.kind, file.sha256), (kind, Sha256::of(&bytes)));

        // By file_id, to another chat of the bot.
        let sent = up
            .send_file_id(CHAT, &key, &got.file_id)
            .await
            .unwrap_or_else(|e| panic!("{kind} by file_id: {e}"));
        assert_eq!(sent.chat_id, CHAT);
        let resent = fake.file(sent.uploaded.file_id.as_str()).unwrap();
        assert_eq!((resent.kind, resent.sha256), (kind, key.sha256));
    }
    assert_eq!(fake.stats().sent_by_file_id, 8);
    assert_eq!(fake.stats().violations, 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn file_ids_belong_to_one_bot_and_one_kind() {
    let other = "777:another-bots-secret-token";
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_bot(other)
        .with_chats([CHAT])
        .with_limits(FakeLimits::off())
        .start()
        .await
        .unwrap();
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let up2 = TelegramUploader::builder()
        .with_token(other)
        .with_api_base(fake.base_url())
        .with_warmup_chats([CHAT])
        .build()
        .unwrap();
    let (bytes, _) = sample(MediaKind::Animation, 1, 500);
    let req = request(up.bot(), MediaKind::Animation, &bytes, None);
    let key = req.key.clone();
    let got = up.upload(req).await.unwrap();
    // The animation's file_id, not the document Telegram also fills: it sends as animation.
    assert_eq!(
        fake.file(got.file_id.as_str()).unwrap().kind,
        MediaKind::Animation
    );

    let key2 = MediaKey::new(up2.bot().clone(), key.sha256, key.kind);
    match up2.send_file_id(CHAT, &key2, &got.file_id).await {
        Err(Error::WrongFileId { key: k, message }) => {
            assert_eq!(k, key2);
            assert!(message.contains("wrong file identifier"), "{message}");
        }
        other => panic!("another bot's file_id: {other:?}"),
    }
    let as_doc = MediaKey::new(key.bot.clone(), key.sha256, MediaKind::Document);
    let err = up
        .send_file_id(CHAT, &as_doc, &got.file_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { message } if message.contains("can't use file of type Animation as Document")),
        "{err}"
    );
    let err = up
        .send_file_id(CHAT, &key, &FileId::new("CgACnot-a-real-id"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongFileId { .. }), "{err}");
    fake.shutdown().await;
}

#[tokio::test]
async fn unusable_urls_fall_back_to_the_upload() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();

    // A URL that answers 404: "failed to get HTTP URL content".
    let (bytes, _) = sample(MediaKind::Photo, 1, 1000);
    let missing = format!("{}/files/999999", fake.base_url());
    let got = up
        .upload(request(&bot, MediaKind::Photo, &bytes, Some(missing)))
        .await
        .unwrap();
    assert_eq!(
        fake.file(got.file_id.as_str()).unwrap().sha256,
        Sha256::of(&bytes)
    );
    let seen = fake.uploads_of(&Sha256::of(&bytes));
    assert_eq!(
        (seen.uploads, seen.succeeded),
        (1, 1),
        "one multipart upload after the URL failed"
    );

    // A PDF served as an HTML page: "wrong type of the web page content".
    let (bytes, _) = sample(MediaKind::Document, 2, 1000);
    let url = fake.host_file(bytes.clone(), "text/html; charset=utf-8");
    let got = up
        .upload(request(&bot, MediaKind::Document, &bytes, Some(url)))
        .await
        .unwrap();
    assert_eq!(
        fake.file(got.file_id.as_str()).unwrap().kind,
        MediaKind::Document
    );
    assert_eq!(fake.stats().url_fetches, 0);

    // Over the 5 MB URL limit for photos: straight to multipart, no fetch tried.
    let (bytes, ct) = sample(MediaKind::Photo, 3, 5_000_001);
    let url = fake.host_file(bytes.clone(), ct);
    up.upload(request(&bot, MediaKind::Photo, &bytes, Some(url)))
        .await
        .unwrap();
    let events = fake.events();
    assert_eq!(
        events.iter().filter(|e| e.method == "sendPhoto").count(),
        3,
        "404 URL + its fallback + the large photo: {events:?}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn oversized_media_fail_typed_before_any_request() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let photo = Bytes::from(vec![0xffu8; 10_000_001]);
    let err = up
        .upload(request(&bot, MediaKind::Photo, &photo, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                kind: MediaKind::Photo,
                size: 10_000_001,
                limit: 10_000_000
            }
        ),
        "{err}"
    );
    let video = Bytes::from(vec![0u8; 50_000_001]);
    let err = up
        .upload(request(&bot, MediaKind::Video, &video, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 50_000_001,
                ..
            }
        ),
        "{err}"
    );
    let empty = Bytes::new();
    let err = up
        .upload(request(&bot, MediaKind::Voice, &empty, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmptyMedia { .. }), "{err}");
    assert_eq!(fake.stats().requests, 0, "nothing was sent");

    // With a local server's limits the uploader lets it through; the (public-API) fake
    // answers 413, which is a typed TooLarge too.
    let local = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats([CHAT])
        .with_size_limits(SizeLimits::local_server())
        .build()
        .unwrap();
    let err = local
        .upload(request(&bot, MediaKind::Video, &video, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                kind: MediaKind::Video,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fake.stats().requests, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_missing_warmup_chat_leaves_the_pool_and_deletes_clean_up() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let missing = -100_404;
    let up = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats([missing, CHAT])
        .with_rate_limits(RateLimits::unlimited())
        .with_delete_warmup_messages(true)
        .build()
        .unwrap();
    let bot = up.bot().clone();
    for n in 0..6 {
        let (bytes, _) = sample(MediaKind::Video, n, 300);
        up.upload(request(&bot, MediaKind::Video, &bytes, None))
            .await
            .unwrap();
    }
    let to_missing = fake
        .events()
        .iter()
        .filter(|e| e.chat == Some(missing))
        .count();
    assert!(to_missing <= 1, "{to_missing} requests to the missing chat");
    assert_eq!(fake.stats().deleted, 6);
    assert_eq!(fake.messages_in(CHAT), 0);

    // With only the missing chat, the error is permanent and keeps Telegram's words.
    let lone = uploader(&fake, &[missing], RateLimits::unlimited());
    let (bytes, _) = sample(MediaKind::Video, 99, 300);
    let err = lone
        .upload(request(&bot, MediaKind::Video, &bytes, None))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("chat not found"), "{err}");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_pauses_every_chat_for_its_retry_after() {
    let (a, b, c) = (-1001, -1002, -1003);
    // Chat A allows 2 sends a second; the uploader tries 10: A gets 429s.
    let limits = FakeLimits::off()
        .with_group_chat(FakeRate::new(100, Duration::from_secs(1)).with_burst(10))
        .with_chat(a, FakeRate::new(2, Duration::from_secs(1)));
    let fake = fake(limits, &[a, b, c]).await;
    let rates = RateLimits::default()
        .with_bot(Rate::new(1000, Duration::from_secs(1)).with_burst(100))
        .with_group_chat(Rate::new(10, Duration::from_secs(1)).with_burst(3));
    let up = uploader(&fake, &[a, b, c], rates);
    let bot = up.bot().clone();
    let jobs = (0..60).map(|n| {
        let up = up.clone();
        let bot = bot.clone();
        async move {
            let (bytes, _) = sample(MediaKind::Photo, n, 400);
            loop {
                match up
                    .upload(request(&bot, MediaKind::Photo, &bytes, None))
                    .await
                {
                    Ok(done) => return done,
                    Err(Error::RateLimited { retry_after }) => {
                        tokio::time::sleep(retry_after).await
                    }
                    Err(e) => panic!("upload {n}: {e}"),
                }
            }
        }
    });
    let done = join_all(jobs).await;
    assert_eq!(done.len(), 60);
    let stats = fake.stats();
    assert!(stats.too_many_requests > 0, "the storm happened: {stats:?}");
    assert_eq!(
        stats.violations, 0,
        "no request inside a retry_after: {stats:?}"
    );

    // A 429 does not say whether the chat's or the bot's limit was hit: while A was paused
    // (at least 1 s, Telegram's retry_after being whole seconds), B and C waited too, but
    // for requests already on the wire when the 429 came back (no latency here: 100 ms).
    let events = fake.events();
    let limited: Vec<_> = events
        .iter()
        .filter(|e| e.chat == Some(a) && e.status == 429)
        .collect();
    let inside = |l: &&&prewarm::testkit::FakeEvent| {
        events.iter().any(|e| {
            matches!(e.chat, Some(ch) if ch == b || ch == c)
                && e.at > l.at + Duration::from_millis(100)
                && e.at < l.at + Duration::from_secs(1)
        })
    };
    assert_eq!(
        limited.iter().filter(inside).count(),
        0,
        "other chats sent during a pause of A"
    );
    fake.shutdown().await;
}

/// Captures every log line (event fields, span fields) of the thread it is installed on.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut f = Fields(span.metadata().name().to_owned());
        span.record(&mut f);
        self.0.lock().unwrap().push(f.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut f = Fields(String::new());
        values.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(event.metadata().target().to_owned());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_token_is_unauthorized_and_never_printed() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let wrong = "123456:WRONG-secret-never-to-be-printed";
    let secret = "WRONG-secret-never-to-be-printed";
    let up = TelegramUploader::builder()
        .with_token(wrong)
        .with_api_base(fake.base_url())
        .with_warmup_chats([CHAT])
        .with_rate_limits(RateLimits::unlimited())
        .build()
        .unwrap();
    let mut printed = vec![format!("{up:?}")];

    let err = up.get_me().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    printed.push(format!("{err} {err:?}"));

    // Through the engine, so that its log lines about the failure are captured too.
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(up.clone()))
        .with_backoff(ms(5), ms(10))
        .build()
        .unwrap();
    let running = engine.spawn();
    let (bytes, _) = sample(MediaKind::Photo, 1, 100);
    let key = engine
        .save(up.bot(), bytes, MediaKind::Photo)
        .await
        .unwrap();
    let err = engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WarmFailed { reason, .. } if reason.contains("Unauthorized")),
        "{err}"
    );
    printed.push(format!("{err} {err:?}"));
    running.shutdown().await.unwrap();

    // A network error: reqwest's error carries the URL, with the token in it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let down = TelegramUploader::builder()
        .with_token(wrong)
        .with_api_base(format!("http://{addr}"))
        .with_warmup_chats([CHAT])
        .build()
        .unwrap();
    let err = down.get_me().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    printed.push(format!("{err} {err:?}"));

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("Unauthorized")),
        "the failure was logged: {logs:?}"
    );
    for text in printed.iter().chain(&logs) {
        assert!(!text.contains(secret), "the token leaked: {text}");
        assert!(
            !text.contains("WRONG-secret"),
            "part of the token leaked: {text}"
        );
    }
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_media_through_the_engine_with_faults_and_limits() {
    let chats = [-2001, -2002, -2003];
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(chats)
        .with_limits(
            FakeLimits::off()
                .with_bot(FakeRate::new(400, Duration::from_secs(1)).with_burst(40))
                // Well under the uploader's rate for chats, so that 429s happen: one send at
                // a time per chat, with the fake's latency, reaches about 40/s.
                .with_group_chat(FakeRate::new(30, Duration::from_secs(1)).with_burst(2)),
        )
        .with_faults(Faults::none().with_server_errors(0.05).with_resets(0.01))
        .with_latency(Latency::uniform(ms(1)..ms(4)).with_tail(0.02, ms(20)..ms(40)))
        .start()
        .await
        .unwrap();
    // With a journal: a send cut by a reset or a 5xx is looked for before it is sent again.
    let up = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats(chats)
        .with_rate_limits(
            RateLimits::default()
                .with_bot(Rate::new(300, Duration::from_secs(1)).with_burst(30))
                .with_group_chat(Rate::new(50, Duration::from_secs(1)).with_burst(2)),
        )
        .with_journal(Arc::new(prewarm::upload::MemoryJournal::new()))
        .build()
        .expect("valid configuration");
    let bot = up.bot().clone();
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(up))
        .with_concurrency(16)
        .with_max_attempts(20)
        .with_backoff(ms(10), ms(200))
        .with_poll_interval(ms(50))
        .build()
        .unwrap();
    let running = engine.spawn();

    let mut keys = Vec::new();
    for n in 0..500u64 {
        let kind = MediaKind::ALL[(n % 8) as usize];
        let (bytes, _) = sample(kind, n, 200 + (n as usize * 37) % 4000);
        keys.push(engine.save(&bot, bytes, kind).await.unwrap());
    }
    let ready = join_all(
        keys.iter()
            .map(|k| engine.wait_ready(k, Duration::from_secs(50))),
    )
    .await;
    for (key, r) in keys.iter().zip(&ready) {
        let id = r.as_ref().unwrap_or_else(|e| panic!("{key}: {e}"));
        let file = fake.file(id.as_str()).expect("issued by the fake");
        assert_eq!((file.kind, file.sha256), (key.kind, key.sha256));
        let seen = fake.uploads_of(&key.sha256);
        assert_eq!(seen.succeeded, 1, "{key}: {seen:?}");
        assert_eq!(
            seen.uploads,
            1 + seen.failed,
            "{key}: uploads = 1 + retried failures"
        );
    }
    running.shutdown().await.unwrap();
    let stats = fake.stats();
    assert_eq!(stats.violations, 0, "{stats:?}");
    assert!(stats.too_many_requests > 0, "429s were answered: {stats:?}");
    assert!(
        stats.server_errors + stats.resets > 0,
        "faults were injected: {stats:?}"
    );
    // One message per media; the rest are the copies made by forwards that looked for the
    // reply of a send that failed with a 5xx or a reset (see `recover`), and the texts that
    // marked each chat's place before its first warm, each deleted.
    assert_eq!(stats.texts, chats.len() as u64, "{stats:?}");
    assert_eq!(
        stats.messages - stats.forwards - stats.texts,
        500,
        "{stats:?}"
    );
    eprintln!("500 media: {stats:?}");
    fake.shutdown().await;
}

#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telegram_uploader_passes_the_uploader_conformance_suite() {
    // Telegram's own limits on the fake; the uploader keeps to them with its defaults. Two
    // private chats (one send a second each) keep the suite quick.
    let fake = fake(FakeLimits::telegram(), &[1001, 1002]).await;
    let up = uploader(&fake, &[1001, 1002], RateLimits::default());
    prewarm::conformance::upload::run_all(&up).await;
    assert_eq!(fake.stats().violations, 0);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_cached_rewarms_a_rejected_file_id_and_sends_again() {
    let user = 4242;
    let fake = fake(FakeLimits::off(), &[CHAT, user]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(up.clone()))
        .build()
        .unwrap();
    let running = engine.spawn();
    let (bytes, _) = sample(MediaKind::Photo, 7, 800);
    let sha = Sha256::of(&bytes);
    let key = engine.save(&bot, bytes, MediaKind::Photo).await.unwrap();
    let first = engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap();

    // Warm: sent by file_id, nothing uploaded.
    let sent = prewarm::send_cached(&engine, &up, user, &key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(sent.chat_id, user);
    assert_eq!(fake.stats().sent_by_file_id, 1);
    assert_eq!(fake.uploads_of(&sha).succeeded, 1);

    // Telegram forgets the file: the send is refused, the media re-warmed, the send repeated.
    assert!(fake.revoke(first.as_str()));
    let sent = prewarm::send_cached(&engine, &up, user, &key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        fake.file(sent.uploaded.file_id.as_str()).unwrap().sha256,
        sha
    );
    assert_eq!(fake.uploads_of(&sha).succeeded, 2, "uploaded once more");
    let second = engine.lookup(&key).expect("a new file_id is cached");
    assert_ne!(second, first);
    assert_eq!(fake.messages_in(user), 2);

    // The send by the re-warmed file_id succeeded, which forgave the rejection before it: a
    // rejection long after is re-warmed again (the limit, 1 by default, counts rejections with
    // no good send between; tests/engine.rs covers it).
    assert!(fake.revoke(second.as_str()));
    prewarm::send_cached(&engine, &up, user, &key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fake.uploads_of(&sha).succeeded, 3, "re-warmed once more");
    running.shutdown().await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn send_cached_uploads_straight_to_the_chat_when_not_warm() {
    let user = 4242;
    let fake = fake(FakeLimits::off(), &[CHAT, user]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    // Not spawned: nothing warms in the background.
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(up.clone()))
        .build()
        .unwrap();
    let (bytes, _) = sample(MediaKind::Video, 8, 800);
    let key = engine.save(&bot, bytes, MediaKind::Video).await.unwrap();
    let sent = prewarm::send_cached(&engine, &up, user, &key, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(sent.chat_id, user);
    assert_eq!(
        engine.lookup(&key),
        Some(sent.uploaded.file_id.clone()),
        "recorded"
    );
    assert_eq!(fake.messages_in(CHAT), 0, "no warm-up message");
    assert_eq!(fake.messages_in(user), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn albums_warm_photos_and_videos_in_one_call() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let mut requests = Vec::new();
    for n in 0..10u64 {
        let kind = if n < 6 {
            MediaKind::Photo
        } else {
            MediaKind::Video
        };
        let (bytes, ct) = sample(kind, 500 + n, 700);
        // One of them by URL.
        let url = (n == 3).then(|| fake.host_file(bytes.clone(), ct));
        requests.push(request(&bot, kind, &bytes, url));
    }
    let keys: Vec<MediaKey> = requests.iter().map(|r| r.key.clone()).collect();
    let got = up.upload_group(requests).await.unwrap();
    assert_eq!(got.len(), 10);
    for (key, uploaded) in keys.iter().zip(&got) {
        let file = fake.file(uploaded.file_id.as_str()).unwrap();
        assert_eq!((file.kind, file.sha256), (key.kind, key.sha256));
        if key.kind == MediaKind::Photo {
            assert!(file.largest);
        }
        assert_eq!(fake.uploads_of(&key.sha256).succeeded, 1);
    }
    let calls = fake
        .events()
        .iter()
        .filter(|e| e.method == "sendMediaGroup")
        .count();
    assert_eq!(calls, 1);
    assert_eq!((fake.stats().messages, fake.stats().url_fetches), (10, 1));

    // What an album cannot hold is refused before any request.
    let (doc, _) = sample(MediaKind::Document, 1, 100);
    let (photo, _) = sample(MediaKind::Photo, 1, 100);
    let err = up
        .upload_group(vec![
            request(&bot, MediaKind::Document, &doc, None),
            request(&bot, MediaKind::Photo, &photo, None),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let err = up
        .upload_group(vec![request(&bot, MediaKind::Photo, &photo, None)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert_eq!(
        fake.stats().requests,
        1 + 1,
        "the album and its URL fetch only"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn an_album_over_the_limit_gets_a_400_retry_after_and_is_honoured() {
    let limits = FakeLimits::off().with_chat(CHAT, FakeRate::new(1, Duration::from_secs(1)));
    let fake = fake(limits, &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let album = |base: u64, n: u64| {
        (0..n)
            .map(|i| {
                let (bytes, _) = sample(MediaKind::Photo, base + i, 300);
                request(&bot, MediaKind::Photo, &bytes, None)
            })
            .collect::<Vec<_>>()
    };
    up.upload_group(album(900, 5)).await.unwrap();
    // The chat's one send a second is spent: the next album is limited.
    let err = up.upload_group(album(920, 5)).await.unwrap_err();
    let Error::RateLimited { retry_after } = err else {
        panic!("{err}")
    };
    assert!(retry_after >= Duration::from_secs(1));
    let mut limited = 1;
    loop {
        match up.upload_group(album(950, 2)).await {
            Ok(got) => {
                assert_eq!(got.len(), 2);
                break;
            }
            Err(Error::RateLimited { retry_after }) => {
                limited += 1;
                assert!(limited < 10, "never got through");
                tokio::time::sleep(retry_after).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let stats = fake.stats();
    assert_eq!(stats.violations, 0, "{stats:?}");
    assert!(stats.too_many_requests >= 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_resets_are_retryable_and_say_what_happened() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    fake.set_faults(Faults::none().with_server_errors(1.0));
    let mut seen_html = false;
    let mut seen_json = false;
    for n in 0..20 {
        let (bytes, _) = sample(MediaKind::Audio, n, 100);
        let err = up
            .upload(request(&bot, MediaKind::Audio, &bytes, None))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let text = err.to_string();
        seen_html |= text.contains("502") && text.contains("non-JSON");
        seen_json |= text.contains("Internal Server Error");
    }
    assert!(
        seen_html && seen_json,
        "both the HTML 502 and the JSON 500 were classified"
    );
    fake.set_faults(Faults::none().with_resets(1.0));
    let (bytes, _) = sample(MediaKind::Audio, 99, 100);
    let err = up
        .upload(request(&bot, MediaKind::Audio, &bytes, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(fake.stats().resets, 1);
    fake.set_faults(Faults::none());
    up.upload(request(&bot, MediaKind::Audio, &bytes, None))
        .await
        .unwrap();
    fake.shutdown().await;
}

/// The fake counts a request against the rate limits when it arrives, then takes its latency:
/// a request refused on arrival is refused even if the limits change during its latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_counts_a_request_when_it_arrives_not_after_its_latency() {
    let chat = 4242;
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([chat])
        .with_limits(FakeLimits::off().with_chat(chat, FakeRate::new(1, Duration::from_secs(60))))
        .with_latency(Latency::fixed(ms(400)))
        .start()
        .await
        .expect("the fake starts");
    let up = uploader(&fake, &[chat], RateLimits::unlimited());
    let bot = up.bot().clone();
    let (first, _) = sample(MediaKind::Photo, 1, 300);
    up.upload(request(&bot, MediaKind::Photo, &first, None))
        .await
        .expect("the first send conforms");
    let (second, _) = sample(MediaKind::Photo, 2, 300);
    let pending = tokio::spawn({
        let up = up.clone();
        let bot = bot.clone();
        async move {
            up.upload(request(&bot, MediaKind::Photo, &second, None))
                .await
        }
    });
    // The second send arrives over the chat's rate; its latency is still running when the
    // limits are lifted, which must not admit it.
    tokio::time::sleep(ms(150)).await;
    fake.set_limits(FakeLimits::off());
    let result = pending.await.expect("the upload task");
    assert!(
        matches!(result, Err(Error::RateLimited { .. })),
        "refused on arrival: {result:?}"
    );
    let stats = fake.stats();
    assert_eq!(stats.too_many_requests, 1, "{stats:?}");
    assert_eq!(stats.messages, 1, "{stats:?}");
    fake.shutdown().await;
}

/// A store whose reads are slow, as a remote store's are: `get` answers after `delay`, or,
/// with `mid_body`, answers at once and sends the second half of the object after `delay`
/// (an upload whose body reaches Telegram late, as a large one on a slow link does).
#[derive(Debug)]
struct SlowStore {
    inner: prewarm::store::MemoryStore,
    delay: Duration,
    mid_body: bool,
}

#[async_trait::async_trait]
impl prewarm::MediaStore for SlowStore {
    async fn put(
        &self,
        key: &prewarm::ObjectKey,
        payload: prewarm::store::PutPayload,
    ) -> prewarm::Result<prewarm::store::PutOutcome> {
        self.inner.put(key, payload).await
    }
    async fn get(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::GetResult> {
        use futures::StreamExt;
        if !self.mid_body {
            tokio::time::sleep(self.delay).await;
            return self.inner.get(key).await;
        }
        let got = self.inner.get(key).await?;
        let meta = got.meta.clone();
        let bytes = got.bytes().await?;
        let (head, tail) = (
            bytes.slice(..bytes.len() / 2),
            bytes.slice(bytes.len() / 2..),
        );
        let delay = self.delay;
        let body = futures::stream::iter([Ok(head)])
            .chain(futures::stream::once(async move {
                tokio::time::sleep(delay).await;
                Ok(tail)
            }))
            .boxed();
        Ok(prewarm::store::GetResult { meta, body })
    }
    async fn head(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &prewarm::ObjectKey) -> prewarm::Result<()> {
        self.inner.delete(key).await
    }
    async fn url(
        &self,
        key: &prewarm::ObjectKey,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        self.inner.url(key, expires_in, content_type).await
    }
}

/// An upload waiting for its store holds no send slot: the request leaves as soon as the
/// limiter counts it, and another upload goes ahead meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_waiting_for_its_store_holds_no_send_slot() {
    use prewarm::MediaStoreExt;
    let chat = 4243;
    let fake = fake(FakeLimits::off(), &[chat]).await;
    let up = uploader(
        &fake,
        &[chat],
        RateLimits::unlimited().with_in_flight_per_chat(1),
    );
    let bot = up.bot().clone();
    let store = Arc::new(SlowStore {
        inner: prewarm::store::MemoryStore::new(),
        delay: ms(800),
        mid_body: false,
    });
    let (slow_bytes, _) = sample(MediaKind::Photo, 1, 300);
    let (object, _) = store.put_bytes(slow_bytes.clone()).await.expect("put");
    let slow = UploadRequest {
        key: MediaKey::new(bot.clone(), Sha256::of(&slow_bytes), MediaKind::Photo),
        size: slow_bytes.len() as u64,
        source: MediaSource::from_store(store.clone(), object, None),
    };
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = tokio::spawn({
        let (up, order) = (up.clone(), order.clone());
        async move {
            up.upload(slow).await.expect("the slow upload");
            order.lock().unwrap().push("from the store");
        }
    });
    tokio::time::sleep(ms(100)).await;
    let (fast, _) = sample(MediaKind::Photo, 2, 300);
    up.upload(request(&bot, MediaKind::Photo, &fast, None))
        .await
        .expect("the fast upload");
    order.lock().unwrap().push("from memory");
    first.await.expect("the slow task");
    assert_eq!(
        *order.lock().unwrap(),
        ["from memory", "from the store"],
        "the upload from memory did not wait for the store's delay"
    );
    fake.shutdown().await;
}

/// `with_file_id_latency`: a send by file_id takes its own latency, uploads the general one
/// (paused time: the fake's sleeps are what the clock shows).
#[tokio::test(start_paused = true)]
async fn sends_by_file_id_take_their_own_latency() {
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([CHAT])
        .with_limits(FakeLimits::off())
        .with_latency(Latency::fixed(ms(1500)))
        .with_file_id_latency(Latency::fixed(ms(40)))
        .start()
        .await
        .expect("fake");
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let (bytes, _) = sample(MediaKind::Photo, 1, 2000);
    let started = tokio::time::Instant::now();
    let got = up
        .upload(request(&bot, MediaKind::Photo, &bytes, None))
        .await
        .expect("upload");
    let upload = started.elapsed();
    let key = MediaKey::new(bot, Sha256::of(&bytes), MediaKind::Photo);
    let started = tokio::time::Instant::now();
    up.send_file_id(CHAT, &key, &got.file_id)
        .await
        .expect("by file_id");
    let by_file_id = started.elapsed();
    assert!(
        upload >= ms(1500),
        "the upload took the general latency: {upload:?}"
    );
    assert!(
        (ms(40)..ms(1000)).contains(&by_file_id),
        "the send by file_id took its own: {by_file_id:?}"
    );
}

/// 400 "Bad Request: can't upload file by URL" (Telegram fetched the content and could make
/// no file of it) is a URL problem, not the media's: the upload follows, and is counted.
#[tokio::test]
async fn a_url_telegram_cannot_make_a_file_of_falls_back_to_the_upload() {
    let fake = fake(FakeLimits::off(), &[CHAT]).await;
    fake.set_faults(Faults::none().with_url_generation_failures(1.0));
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let (bytes, ct) = sample(MediaKind::Photo, 41, 2_000);
    let url = fake.host_file(bytes.clone(), ct);
    let got = up
        .upload(request(&bot, MediaKind::Photo, &bytes, Some(url)))
        .await
        .expect("uploaded after the fallback");
    assert_eq!(
        fake.file(got.file_id.as_str()).expect("issued").sha256,
        Sha256::of(&bytes)
    );
    let statuses: Vec<u16> = fake
        .events()
        .iter()
        .filter(|e| e.method == "sendPhoto")
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [400, 200], "the URL refused, then the upload");
    assert_eq!(up.stats().url_fallbacks, 1);
    fake.shutdown().await;
}

/// A user's chat that refuses the bot (403 "Forbidden: bot was kicked ...", "bot was
/// blocked by the user") is a refusal of that send, not of the bot's token.
#[tokio::test]
async fn a_chat_refusing_the_bot_is_not_an_authorization_failure() {
    const USER: i64 = 7_001;
    let fake = fake(FakeLimits::off(), &[CHAT, USER]).await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let (bytes, _) = sample(MediaKind::Photo, 42, 2_000);
    let request = request(&bot, MediaKind::Photo, &bytes, None);
    let key = request.key.clone();
    let warm = up.upload(request).await.expect("warm");
    fake.set_chat_problem(USER, Some(ChatProblem::Kicked));
    let err = up
        .send_file_id(USER, &key, &warm.file_id)
        .await
        .expect_err("the chat refuses");
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("kicked"), "{err}");
    fake.shutdown().await;
}

/// A budget whose pause takes a while to record, as a shared one does (a database round
/// trip).
#[derive(Debug)]
struct SlowPause(MemoryBudget);

#[async_trait::async_trait]
impl RateBudget for SlowPause {
    async fn take(&self, request: &BudgetRequest<'_>) -> prewarm::Result<Grant> {
        self.0.take(request).await
    }

    async fn pause(&self, bot: &BotId, chat: i64, retry_after: Duration) -> prewarm::Result<()> {
        tokio::time::sleep(ms(300)).await;
        self.0.pause(bot, chat, retry_after).await
    }
}

/// After a 429 the chat's slot is handed on only once the pause is recorded: the send
/// waiting for it does not leave inside Telegram's ban.
#[tokio::test]
async fn a_send_waiting_for_the_slot_of_a_429_does_not_go_inside_the_ban() {
    let fake = fake(
        FakeLimits::off().with_chat(CHAT, FakeRate::new(1, Duration::from_secs(2))),
        &[CHAT],
    )
    .await;
    let up = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats([CHAT])
        .with_rate_limits(RateLimits::unlimited().with_in_flight_per_chat(1))
        .with_rate_budget(Arc::new(SlowPause(MemoryBudget::new())))
        .build()
        .expect("uploader");
    let bot = up.bot().clone();
    let (bytes, _) = sample(MediaKind::Photo, 43, 2_000);
    let request = request(&bot, MediaKind::Photo, &bytes, None);
    let key = request.key.clone();
    // The chat's one send of these 2 s: the next two meet the fake's limit.
    let warm = up.upload(request).await.expect("warm");
    let (a, b) = tokio::join!(
        up.send_file_id(CHAT, &key, &warm.file_id),
        up.send_file_id(CHAT, &key, &warm.file_id)
    );
    let errors = [&a, &b].iter().filter(|r| r.is_err()).count();
    assert!(errors >= 1, "one of the two met the limit: {a:?} {b:?}");
    let stats = fake.stats();
    assert_eq!(stats.violations, 0, "a send went inside the ban: {stats:?}");
    fake.shutdown().await;
}

/// A group counts messages as they arrive. An upload whose body arrived 1.5 s after its
/// slot was taken holds the group's next send for an interval after that arrival, so three
/// sends keep to "2 in any 2 s" at the fake; counting from the slots taken, the third went
/// 1.1 s after the late one and met a 429.
#[tokio::test]
async fn a_group_send_after_a_late_arrival_keeps_the_groups_window() {
    use prewarm::MediaStoreExt;
    const GROUP: i64 = -4_244;
    let fake = fake(
        FakeLimits::off().with_chat(GROUP, FakeRate::window(2, Duration::from_secs(2))),
        &[GROUP],
    )
    .await;
    let up = uploader(
        &fake,
        &[GROUP],
        RateLimits::unlimited()
            .with_group_chat(Rate::new(2, ms(2_200)))
            .with_in_flight_per_chat(1),
    );
    let bot = up.bot().clone();
    let store = Arc::new(SlowStore {
        inner: prewarm::store::MemoryStore::new(),
        delay: ms(1_500),
        mid_body: true,
    });
    let (late, _) = sample(MediaKind::Photo, 51, 4_000);
    let (object, _) = store.put_bytes(late.clone()).await.expect("put");
    up.upload(UploadRequest {
        key: MediaKey::new(bot.clone(), Sha256::of(&late), MediaKind::Photo),
        size: late.len() as u64,
        source: MediaSource::from_store(store, object, None),
    })
    .await
    .expect("the late upload");
    for n in [52, 53] {
        let (bytes, _) = sample(MediaKind::Photo, n, 2_000);
        up.upload(request(&bot, MediaKind::Photo, &bytes, None))
            .await
            .expect("an upload");
    }
    let stats = fake.stats();
    assert_eq!(stats.too_many_requests, 0, "{stats:?}");
    assert_eq!(stats.messages, 3, "{stats:?}");
    fake.shutdown().await;
}

/// `deleteMessage` is no message, but Telegram bans a bot's requests: the fake refuses a
/// delete that arrives inside a running bot-wide ban, prolongs the ban, and counts it as a
/// violation, so that a client deleting inside a pause is caught.
#[tokio::test]
async fn the_fake_refuses_a_delete_inside_a_bot_ban() {
    let fake = fake(
        FakeLimits::off().with_bot(FakeRate::new(1, Duration::from_secs(10))),
        &[CHAT],
    )
    .await;
    let up = uploader(&fake, &[CHAT], RateLimits::unlimited());
    let bot = up.bot().clone();
    let (bytes, _) = sample(MediaKind::Photo, 61, 2_000);
    let warm = up
        .upload(request(&bot, MediaKind::Photo, &bytes, None))
        .await
        .expect("the bot's one message of these 10 s");
    let api = format!("{}/bot{TOKEN}", fake.base_url());
    let client = reqwest::Client::new();
    let post = |method: &str, form: Vec<(&str, String)>| {
        client.post(format!("{api}/{method}")).form(&form).send()
    };
    let again = post(
        "sendPhoto",
        vec![
            ("chat_id", CHAT.to_string()),
            ("photo", warm.file_id.as_str().to_owned()),
        ],
    )
    .await
    .expect("an answer");
    assert_eq!(again.status(), 429, "over the bot's rate: banned");
    let delete = post(
        "deleteMessage",
        vec![
            ("chat_id", CHAT.to_string()),
            ("message_id", "1".to_owned()),
        ],
    )
    .await
    .expect("an answer");
    assert_eq!(delete.status(), 429, "a delete inside the ban");
    let stats = fake.stats();
    assert_eq!((stats.violations, stats.deleted), (1, 0), "{stats:?}");
    fake.shutdown().await;
}
