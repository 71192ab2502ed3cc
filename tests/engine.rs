//! PrewarmEngine end to end over the in-memory backends and the stand-in uploader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prewarm::upload::{UploadRequest, Uploaded};
use prewarm::{
    BotId, Error, FileIdCache, LruFileIdCache, MediaKey, MediaKind, MemoryQueue, MemoryUploader,
    PrewarmEngine, PrewarmEngineBuilder, PriorityQueue, Sendable, Sha256, Uploader,
};
use tokio::time::Instant;

#[path = "engine/faults.rs"]
mod faults;
#[path = "engine/races.rs"]
mod races;
#[path = "engine/weak.rs"]
mod weak;

fn bot() -> BotId {
    BotId::new("testbot").unwrap()
}

fn media(i: u64, len: usize) -> Bytes {
    let mut v = i.to_le_bytes().to_vec();
    v.resize(len.max(8), 0xAB);
    Bytes::from(v)
}

/// Saves `bytes` for the test bot; any error fails the test.
async fn save(engine: &PrewarmEngine, bytes: Bytes, kind: MediaKind) -> MediaKey {
    engine.save(&bot(), bytes, kind).await.unwrap()
}

/// Wraps an uploader and records when each upload starts.
#[derive(Debug, Clone)]
struct Recorder {
    inner: MemoryUploader,
    starts: Arc<Mutex<Vec<(MediaKey, Instant)>>>,
}

impl Recorder {
    fn new(inner: MemoryUploader) -> Self {
        Self {
            inner,
            starts: Arc::default(),
        }
    }

    fn starts(&self) -> Vec<(MediaKey, Instant)> {
        self.starts.lock().unwrap().clone()
    }
}

#[async_trait]
impl Uploader for Recorder {
    fn bot(&self) -> &BotId {
        self.inner.bot()
    }

    async fn upload(&self, request: UploadRequest) -> prewarm::Result<Uploaded> {
        self.starts
            .lock()
            .unwrap()
            .push((request.key.clone(), Instant::now()));
        self.inner.upload(request).await
    }

    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool {
        self.inner.needs_bytes(kind, size, content_type)
    }

    async fn rejected(&self, key: &MediaKey, file_id: &prewarm::FileId) -> prewarm::Result<()> {
        self.inner.rejected(key, file_id).await
    }
}

/// Waits for a media by polling: unlike `wait_ready`, it does not promote the job.
async fn poll_ready(engine: &PrewarmEngine, key: &MediaKey) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while engine.lookup(key).is_none() {
        assert!(Instant::now() < deadline, "{key} never warmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn builder(uploader: impl Uploader) -> PrewarmEngineBuilder {
    PrewarmEngine::builder()
        .with_uploader(Arc::new(uploader))
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_all_warm_with_one_upload_plus_one_per_transient_failure() {
    let injected: Arc<Mutex<HashMap<MediaKey, u32>>> = Arc::default();
    let faults = injected.clone();
    let uploader = MemoryUploader::new(bot())
        .with_latency(Duration::from_micros(100)..Duration::from_millis(5))
        .with_faults(move |key, _attempt| {
            let mut faults = faults.lock().unwrap();
            let n = faults.entry(key.clone()).or_default();
            // 10% transient errors, at most three in a row, under the five attempts allowed.
            if *n < 3 && fastrand::f64() < 0.10 {
                *n += 1;
                return Some(Error::Unavailable {
                    message: "injected 502".into(),
                });
            }
            None
        });
    let engine = builder(uploader.clone())
        .with_concurrency(16)
        .build()
        .unwrap();
    let running = engine.spawn();
    let mut keys = Vec::new();
    for i in 0..1_000 {
        keys.push(
            engine
                .save(&bot(), media(i, 1_000), MediaKind::Photo)
                .await
                .unwrap(),
        );
    }
    for key in &keys {
        engine
            .wait_ready(key, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{key} not ready: {e}"));
    }
    let injected = injected.lock().unwrap().clone();
    let mut total_faults = 0;
    for key in &keys {
        let faults = injected.get(key).copied().unwrap_or(0);
        total_faults += faults;
        assert_eq!(
            uploader.attempts(key),
            1 + faults,
            "{key}: uploads = 1 + transient failures"
        );
        assert_eq!(uploader.successes(key), 1, "{key}: one successful upload");
    }
    assert!(total_faults > 0, "the test injected failures");
    let stats = uploader.stats();
    assert_eq!(
        stats.overlapping, 0,
        "a media was uploaded by two workers at once"
    );
    assert!(
        stats.max_in_flight <= 16,
        "concurrency bound: {}",
        stats.max_in_flight
    );
    assert!(stats.max_in_flight > 1, "uploads ran concurrently");
    let m = engine.metrics().await.unwrap();
    assert_eq!(m.warmed, 1_000);
    assert_eq!(m.retried, u64::from(total_faults));
    assert_eq!(m.queue.pending(), 0);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_saves_and_waits_cause_one_upload() {
    let uploader = MemoryUploader::new(bot())
        .with_latency(Duration::from_millis(50)..Duration::from_millis(60));
    let engine = builder(uploader.clone()).build().unwrap();
    let running = engine.spawn();
    let bytes = media(7, 50_000);
    let key = MediaKey::new(bot(), Sha256::of(&bytes), MediaKind::Video);
    let calls = (0..100).map(|i| {
        let engine = engine.clone();
        let bytes = bytes.clone();
        let key = key.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                engine.save(&bot(), bytes, MediaKind::Video).await.unwrap();
            } else {
                // Waiters may come before the first save has stored anything.
                loop {
                    match engine.wait_ready(&key, Duration::from_secs(10)).await {
                        Ok(_) => break,
                        Err(Error::NotFound { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("wait failed: {e}"),
                    }
                }
            }
        })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap();
    }
    let id = engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(uploader.stats().uploads, 1, "exactly one upload");
    assert_eq!(id, uploader.file_id_for(&key, 1));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn claim_order_follows_the_priority_policy() {
    let recorder = Recorder::new(
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(1)..Duration::from_secs(1)),
    );
    let engine = builder(recorder.clone())
        .with_concurrency(1)
        .build()
        .unwrap();
    // Queued before the workers start, a second apart.
    let big_video = engine
        .save(&bot(), media(1, 9_000_000), MediaKind::Video)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let old_photo = engine
        .save(&bot(), media(2, 30_000), MediaKind::Photo)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let document = engine
        .save(&bot(), media(3, 300_000), MediaKind::Document)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let new_photo = engine
        .save(&bot(), media(4, 30_000), MediaKind::Photo)
        .await
        .unwrap();
    // Someone waits for the document before the workers start: it goes first.
    let waiter = {
        let engine = engine.clone();
        let document = document.clone();
        tokio::spawn(async move { engine.wait_ready(&document, Duration::from_secs(60)).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let running = engine.spawn();
    waiter.await.unwrap().unwrap();
    for key in [&big_video, &old_photo, &new_photo] {
        poll_ready(&engine, key).await;
    }
    let order: Vec<MediaKey> = recorder.starts().into_iter().map(|(k, _)| k).collect();
    assert_eq!(order, vec![document, new_photo, old_photo, big_video]);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_large_video_under_a_flood_of_photos_starts_within_the_aging_bound() {
    let recorder = Recorder::new(
        MemoryUploader::new(bot())
            .with_latency(Duration::from_millis(900)..Duration::from_millis(900)),
    );
    let engine = builder(recorder.clone())
        .with_concurrency(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    // One photo already running so the video has to queue.
    engine
        .save(&bot(), media(0, 1_000), MediaKind::Photo)
        .await
        .unwrap();
    tokio::task::yield_now().await;
    let queued_at = Instant::now();
    let video = engine
        .save(&bot(), media(1, 20_000_000), MediaKind::Video)
        .await
        .unwrap();
    // A photo every 800 ms: faster than the 900 ms uploads, so without aging the video would
    // never run.
    let flood = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for i in 2..400u64 {
                engine
                    .save(&bot(), media(i, 1_000), MediaKind::Photo)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        })
    };
    poll_ready(&engine, &video).await;
    let started = recorder
        .starts()
        .into_iter()
        .find(|(k, _)| *k == video)
        .map(|(_, at)| at)
        .unwrap();
    let waited = started - queued_at;
    // Aging bound (60 s) plus at most one upload already running when it aged.
    assert!(
        waited <= Duration::from_secs(60) + Duration::from_millis(900),
        "the video waited {waited:?}"
    );
    assert!(
        waited >= Duration::from_secs(59),
        "photos went first until the bound: waited {waited:?}"
    );
    flood.abort();
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_is_honoured_to_the_millisecond_and_not_counted() {
    let recorder = Recorder::new(MemoryUploader::new(bot()).with_faults(|_, attempt| {
        (attempt <= 2).then(|| Error::RateLimited {
            retry_after: Duration::from_millis(1_500),
        })
    }));
    // One attempt allowed: rate limits must not use it up.
    let engine = builder(recorder.clone())
        .with_max_attempts(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap();
    let starts: Vec<Instant> = recorder.starts().into_iter().map(|(_, at)| at).collect();
    assert_eq!(starts.len(), 3, "two rate-limited attempts and one success");
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1_500) && gap <= Duration::from_millis(1_501),
            "retried {gap:?} after the hint of 1.5 s"
        );
    }
    let m = engine.metrics().await.unwrap();
    assert_eq!((m.rate_limited, m.retried, m.warmed), (2, 0, 1));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_go_dead_at_once_keeping_the_error() {
    let uploader = MemoryUploader::new(bot()).with_faults(|_, _| {
        Some(Error::Rejected {
            message: "Bad Request: wrong file type".into(),
        })
    });
    let engine = builder(uploader.clone()).build().unwrap();
    let running = engine.spawn();
    let key = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    let err = engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WarmFailed { reason, .. } if reason.contains("wrong file type")),
        "{err}"
    );
    assert_eq!(uploader.stats().uploads, 1, "not retried");
    let dead = engine.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("wrong file type")
    );
    // The bytes are still sendable: no "not ready" error for media that exists.
    assert!(matches!(
        engine.sendable(&key, Duration::ZERO).await.unwrap(),
        Sendable::Upload(_)
    ));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_back_off_then_die_after_max_attempts() {
    let recorder = Recorder::new(MemoryUploader::new(bot()).with_faults(|_, _| {
        Some(Error::Unavailable {
            message: "HTTP 502".into(),
        })
    }));
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(recorder.clone()))
        .with_max_attempts(4)
        .with_backoff(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    let err = engine
        .wait_ready(&key, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WarmFailed { .. }), "{err}");
    let starts: Vec<Instant> = recorder.starts().into_iter().map(|(_, at)| at).collect();
    assert_eq!(starts.len(), 4, "max attempts");
    for (n, pair) in starts.windows(2).enumerate() {
        let nominal = Duration::from_secs(1 << n);
        let gap = pair[1] - pair[0];
        assert!(
            gap >= nominal / 2 && gap <= nominal + Duration::from_millis(1),
            "backoff {n}: {gap:?} for nominal {nominal:?}"
        );
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_uploads_finish_and_keeps_the_queue() {
    let queue = Arc::new(MemoryQueue::new());
    let cache = Arc::new(LruFileIdCache::new(100).unwrap());
    let uploader =
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(2)..Duration::from_secs(2));
    let engine = builder(uploader.clone())
        .with_concurrency(2)
        .with_queue(queue.clone())
        .with_cache(cache.clone())
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(
            engine
                .save(&bot(), media(i, 100), MediaKind::Photo)
                .await
                .unwrap(),
        );
    }
    let running = engine.spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(engine.metrics().await.unwrap().queue.claimed, 2);
    running.shutdown().await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.queued, depth.claimed), (8, 0), "{depth:?}");
    assert_eq!(
        uploader.stats().succeeded,
        2,
        "the running uploads finished"
    );
    let warm = keys.iter().filter(|k| cache.get_local(k).is_some()).count();
    assert_eq!(warm, 2);

    // Started again over the same queue, it finishes the rest: nothing was lost.
    let running = engine.spawn();
    for key in &keys {
        engine
            .wait_ready(key, Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert_eq!(uploader.stats().succeeded, 10);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_its_grace_returns_running_jobs_to_the_queue() {
    let queue = Arc::new(MemoryQueue::new());
    let uploader =
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(60)..Duration::from_secs(60));
    let engine = builder(uploader.clone())
        .with_concurrency(3)
        .with_queue(queue.clone())
        .with_shutdown_grace(Duration::from_secs(1))
        .build()
        .unwrap();
    for i in 0..5 {
        engine
            .save(&bot(), media(i, 100), MediaKind::Photo)
            .await
            .unwrap();
    }
    let running = engine.spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(queue.depth().await.unwrap().claimed, 3);
    running.shutdown().await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.queued, depth.claimed), (5, 0), "{depth:?}");
    assert!(queue.dead(10).await.unwrap().is_empty());
    assert_eq!(
        uploader.stats().succeeded,
        0,
        "none finished within the grace"
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_the_engine_keeps_serving() {
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone()).build().unwrap();
    let running = engine.spawn();
    let empty = engine.save(&bot(), Bytes::new(), MediaKind::Photo).await;
    assert!(
        matches!(
            empty,
            Err(Error::EmptyMedia {
                kind: MediaKind::Photo
            })
        ),
        "{empty:?}"
    );
    let big = engine
        .save(&bot(), Bytes::from(vec![0u8; 10_000_001]), MediaKind::Photo)
        .await;
    assert!(
        matches!(
            big,
            Err(Error::TooLarge {
                size: 10_000_001,
                limit: 10_000_000,
                ..
            })
        ),
        "{big:?}"
    );
    let kind = "gif".parse::<MediaKind>();
    assert!(matches!(kind, Err(Error::UnknownKind { .. })));
    let stranger = engine
        .save(
            &BotId::new("stranger").unwrap(),
            media(1, 10),
            MediaKind::Photo,
        )
        .await;
    assert!(
        matches!(stranger, Err(Error::UnknownBot { .. })),
        "{stranger:?}"
    );
    let streamed = engine
        .save_stream(
            &bot(),
            futures::stream::iter(
                (0..11).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1_000_000]))),
            ),
            MediaKind::Photo,
        )
        .await;
    assert!(
        matches!(streamed, Err(Error::TooLarge { .. })),
        "{streamed:?}"
    );

    let key = engine
        .save(&bot(), media(2, 1_000), MediaKind::Photo)
        .await
        .unwrap();
    engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        uploader.stats().uploads,
        1,
        "nothing of the bad input reached the uploader"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn save_stream_stores_and_warms_without_holding_the_media() {
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone()).build().unwrap();
    let running = engine.spawn();
    let chunks: Vec<Bytes> = (0..20u8).map(|i| Bytes::from(vec![i; 100_000])).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let key = engine
        .save_stream(
            &bot(),
            futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)),
            MediaKind::Video,
        )
        .await
        .unwrap();
    assert_eq!(key.sha256, Sha256::of(&whole));
    engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(uploader.stats().bytes, whole.len() as u64);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn sendable_answers_bytes_when_not_warm_in_time_and_record_skips_the_upload() {
    let uploader =
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(5)..Duration::from_secs(5));
    let engine = builder(uploader.clone())
        .with_concurrency(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    let first = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    let second = engine
        .save(&bot(), media(2, 100), MediaKind::Photo)
        .await
        .unwrap();
    tokio::task::yield_now().await;
    // Not warm within 100 ms: the bytes to send directly.
    match engine
        .sendable(&second, Duration::from_millis(100))
        .await
        .unwrap()
    {
        Sendable::Upload(source) => assert_eq!(source.read_all().await.unwrap(), media(2, 100)),
        Sendable::FileId(id) => panic!("unexpectedly warm: {id}"),
    }
    // The bot uploaded it itself and reports the file_id: the queued warm uploads nothing.
    engine
        .record_file_id(&second, prewarm::FileId::new("from-the-bot"))
        .await
        .unwrap();
    engine
        .wait_ready(&first, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        uploader.attempts(&second),
        0,
        "no upload for a recorded media"
    );
    assert_eq!(engine.lookup(&second).unwrap().as_str(), "from-the-bot");
    assert_eq!(engine.metrics().await.unwrap().queue.pending(), 0);
    let unknown = MediaKey::new(bot(), Sha256::of(b"never saved"), MediaKind::Photo);
    assert!(matches!(
        engine.sendable(&unknown, Duration::ZERO).await,
        Err(Error::NotFound { .. })
    ));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rejected_file_id_is_rewarmed_up_to_the_limit() {
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone())
        .with_retry_weak_id(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    let first = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    engine.report_wrong_file_id(&key, &first).await.unwrap();
    let second = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(first, second, "re-warmed into a new file_id");
    assert_eq!(uploader.successes(&key), 2);
    let err = engine
        .report_wrong_file_id(&key, &second)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WarmFailed { .. }), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_builder_names_every_problem() {
    let err = PrewarmEngine::builder()
        .with_concurrency(0)
        .with_max_attempts(0)
        .build()
        .unwrap_err()
        .to_string();
    for needle in ["concurrency is 0", "max attempts is 0", "no uploader"] {
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    let err = PrewarmEngine::builder()
        .with_uploader(Arc::new(MemoryUploader::new(bot())))
        .with_uploader(Arc::new(MemoryUploader::new(bot())))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("two uploaders for bot testbot"),
        "{err}"
    );
}

#[tokio::test]
async fn running_twice_is_refused() {
    let engine = builder(MemoryUploader::new(bot())).build().unwrap();
    let running = engine.spawn();
    tokio::task::yield_now().await;
    let err = engine.run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn engines_of_different_bots_sharing_a_queue_leave_each_other_s_jobs_alone() {
    let queue = Arc::new(MemoryQueue::new());
    let bot_a = BotId::new("bot_a").unwrap();
    let bot_b = BotId::new("bot_b").unwrap();
    let store = Arc::new(prewarm::store::MemoryStore::new());
    let uploader_b = MemoryUploader::new(bot_b.clone());
    let engine_a = PrewarmEngine::builder()
        .with_uploader(Arc::new(MemoryUploader::new(bot_a)))
        .with_queue(queue.clone())
        .with_store(store.clone())
        .build()
        .unwrap();
    let engine_b = PrewarmEngine::builder()
        .with_uploader(Arc::new(uploader_b.clone()))
        .with_queue(queue.clone())
        .with_store(store)
        .build()
        .unwrap();
    let (running_a, running_b) = (engine_a.spawn(), engine_b.spawn());
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(
            engine_b
                .save(&bot_b, media(i, 100), MediaKind::Photo)
                .await
                .unwrap(),
        );
    }
    for key in &keys {
        engine_b
            .wait_ready(key, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    assert!(
        queue.dead(10).await.unwrap().is_empty(),
        "no job of bot B died in engine A"
    );
    assert_eq!(uploader_b.stats().succeeded, 20);
    running_a.shutdown().await.unwrap();
    running_b.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unbounded_wait_does_not_overflow() {
    let engine = builder(MemoryUploader::new(bot())).build().unwrap();
    let running = engine.spawn();
    let key = engine
        .save(&bot(), media(1, 100), MediaKind::Photo)
        .await
        .unwrap();
    engine.wait_ready(&key, Duration::MAX).await.unwrap();
    assert!(matches!(
        engine.sendable(&key, Duration::MAX).await.unwrap(),
        Sendable::FileId(_)
    ));
    running.shutdown().await.unwrap();
}

/// A memory store that hands out URLs (as R2's presigned ones) and counts, per object, the
/// reads of its bytes, and the `head` calls.
#[derive(Debug, Default)]
struct UrlStore {
    inner: prewarm::store::MemoryStore,
    gets: Mutex<HashMap<prewarm::ObjectKey, u32>>,
    heads: std::sync::atomic::AtomicU32,
}

impl UrlStore {
    fn gets(&self, key: &MediaKey) -> u32 {
        let gets = self.gets.lock().unwrap();
        gets.get(&key.object_key()).copied().unwrap_or(0)
    }
}

#[async_trait]
impl prewarm::MediaStore for UrlStore {
    async fn put(
        &self,
        key: &prewarm::ObjectKey,
        payload: prewarm::store::PutPayload,
    ) -> prewarm::Result<prewarm::store::PutOutcome> {
        self.inner.put(key, payload).await
    }
    async fn get(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::GetResult> {
        *self.gets.lock().unwrap().entry(key.clone()).or_default() += 1;
        self.inner.get(key).await
    }
    async fn head(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::ObjectMeta> {
        self.heads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.head(key).await
    }
    async fn delete(&self, key: &prewarm::ObjectKey) -> prewarm::Result<()> {
        self.inner.delete(key).await
    }
    async fn url(
        &self,
        key: &prewarm::ObjectKey,
        _expires_in: Duration,
        _content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        Ok(Some(format!(
            "https://store.example/{key}?n={}",
            fastrand::u64(..)
        )))
    }
}

/// A JPEG of `len` bytes (its magic number, then filler): a type the save can name.
fn jpeg(i: u64, len: usize) -> Bytes {
    let mut v = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v.resize(len, 0xAB);
    Bytes::from(v)
}

/// A media the uploader must upload by its bytes (over its URL limit), saved behind a backlog
/// of media that go by URL and followed at once by saves that would push it out of the byte
/// cache, is warmed by the next free worker from the byte cache, where it stays pinned
/// meanwhile: its bytes are never read from the store. Demand still goes first. The photos that left the byte cache go by URL with the type the save
/// named: no `head` to ask the store for it.
#[tokio::test(start_paused = true)]
async fn a_media_that_needs_its_bytes_is_warmed_while_the_byte_cache_holds_them() {
    const URL_LIMIT: u64 = 100_000;
    let store = Arc::new(UrlStore::default());
    let recorder = Recorder::new(
        MemoryUploader::new(bot())
            .with_latency(Duration::from_secs(1)..Duration::from_secs(1))
            .with_urls(|_kind, size, _type| size <= URL_LIMIT),
    );
    // 512 KiB: the video (200 KB) fits, and twenty photos of 50 KB push it out. (Media of
    // at most 256 KiB are hashed inline: paused time cannot run ahead during a save.)
    let engine = builder(recorder.clone())
        .with_store(store.clone())
        .with_concurrency(1)
        .with_byte_cache(512 << 10, Duration::from_secs(600))
        .build()
        .unwrap();
    let running = engine.spawn();
    let first = save(&engine, jpeg(0, 50_000), MediaKind::Photo).await;
    tokio::task::yield_now().await;
    let mut photos = vec![first.clone()];
    for i in 1..=20 {
        photos.push(save(&engine, jpeg(i, 50_000), MediaKind::Photo).await);
    }
    // Someone waits for one of the earlier photos.
    let wanted = photos[5].clone();
    let waiter = {
        let engine = engine.clone();
        let wanted = wanted.clone();
        tokio::spawn(async move { engine.wait_ready(&wanted, Duration::from_secs(600)).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let video = save(&engine, media(1_000, 200_000), MediaKind::Video).await;
    // More saves at once, while the first photo still uploads: enough to push the video out
    // of the byte cache, were it not pinned there for its job.
    for i in 21..=40 {
        photos.push(save(&engine, jpeg(i, 50_000), MediaKind::Photo).await);
    }
    waiter.await.unwrap().unwrap();
    for key in photos.iter().chain([&video]) {
        poll_ready(&engine, key).await;
    }
    assert_eq!(
        store.gets(&video),
        0,
        "the video's bytes came from the byte cache"
    );
    let order: Vec<MediaKey> = recorder.starts().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        order[..3],
        [first, wanted, video.clone()],
        "the photo already running, the demanded one, then the video"
    );
    let stats = recorder.inner.stats();
    assert!(
        stats.by_url >= 10,
        "photos pushed out of the cache went by URL: {stats:?}"
    );
    assert_eq!(
        store.heads.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the uploader got the type from the save, not from the store"
    );
    running.shutdown().await.unwrap();
}

/// A warm of a media already in the store reads its size and type with one `head`, and hands
/// the type to the uploader, which takes the media by URL without asking the store again.
#[tokio::test]
async fn a_warm_of_a_stored_media_asks_the_store_for_its_type_once() {
    let store = Arc::new(UrlStore::default());
    let uploader =
        MemoryUploader::new(bot()).with_urls(|_kind, _size, ty| ty == Some("image/jpeg"));
    let engine = builder(uploader.clone())
        .with_store(store.clone())
        .build()
        .unwrap();
    let bytes = jpeg(1, 20_000);
    let key = MediaKey::new(bot(), Sha256::of(&bytes), MediaKind::Photo);
    let payload = prewarm::store::PutPayload::from_bytes(bytes)
        .with_sniffed_content_type(MediaKind::Photo)
        .await;
    prewarm::MediaStore::put(&*store, &key.object_key(), payload)
        .await
        .unwrap();
    let running = engine.spawn();
    engine.warm(&key).await.unwrap();
    engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(uploader.stats().by_url, 1, "{:?}", uploader.stats());
    assert_eq!(
        store.heads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "warm's own head, and none by the uploader"
    );
    assert_eq!(store.gets(&key), 0);
    running.shutdown().await.unwrap();
}
