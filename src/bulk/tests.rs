//! `BulkSaver::save_all` against a store whose writes take time: the bounds, the order, the
//! laziness, and one failure among many. Paused tokio time: the store's delays cost nothing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{BulkSaver, SaveInput};
use crate::error::{Error, Result};
use crate::media::{BotId, MediaKind, ObjectKey};
use crate::store::{GetResult, MediaStore, MemoryStore, ObjectMeta, PutOutcome, PutPayload};
use crate::{MemoryUploader, PrewarmEngine};

/// A memory store whose writes take 200 ms, counting how many run at once and the sizes in
/// the order they started.
#[derive(Debug, Default)]
struct SlowStore {
    inner: MemoryStore,
    running: AtomicUsize,
    max_running: AtomicUsize,
    bytes_running: AtomicU64,
    max_bytes_running: AtomicU64,
    started: Mutex<Vec<u64>>,
}

#[async_trait]
impl MediaStore for SlowStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
        let size = payload.len();
        self.started.lock().unwrap().push(size);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let bytes = self.bytes_running.fetch_add(size, Ordering::SeqCst) + size;
        self.max_bytes_running.fetch_max(bytes, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let out = self.inner.put(key, payload).await;
        self.bytes_running.fetch_sub(size, Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
        out
    }
    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
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
        ttl: Duration,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        self.inner.url(key, ttl, content_type).await
    }
}

fn setup() -> (PrewarmEngine, BotId, Arc<SlowStore>) {
    let bot = BotId::new("bulk").unwrap();
    let store = Arc::new(SlowStore::default());
    let engine = PrewarmEngine::builder()
        .with_store(store.clone())
        .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
        .build()
        .unwrap();
    (engine, bot, store)
}

/// `len` distinct bytes starting with a JPEG marker.
fn media(i: u64, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v[8] = 0xff;
    Bytes::from(v)
}

#[tokio::test(start_paused = true)]
async fn saves_run_in_parallel_up_to_the_count_bound() {
    let (engine, bot, store) = setup();
    let inputs = (0..100).map(|i| SaveInput::bytes(i, MediaKind::Photo, media(i, 1000)));
    let started = tokio::time::Instant::now();
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .with_max_in_flight(10)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    assert_eq!(saved.len(), 100);
    assert!(
        saved
            .iter()
            .all(|s| s.result.is_ok() && s.hashed && !s.already_warm)
    );
    assert_eq!(store.max_running.load(Ordering::SeqCst), 10);
    // 100 writes of 200 ms, 10 at a time: 2 s, not the 20 s of one at a time.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_holds_and_a_media_larger_than_it_runs_alone() {
    let (engine, bot, store) = setup();
    let mut inputs: Vec<_> = (0..20)
        .map(|i| SaveInput::bytes(i, MediaKind::Document, media(i, 10_000)))
        .collect();
    inputs.push(SaveInput::bytes(99, MediaKind::Document, media(99, 50_000)));
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .with_max_in_flight(100)
        .with_max_bytes(30_000)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    assert_eq!(saved.len(), 21);
    assert!(saved.iter().all(|s| s.result.is_ok()));
    assert_eq!(store.max_running.load(Ordering::SeqCst), 3);
    assert_eq!(store.max_bytes_running.load(Ordering::SeqCst), 50_000);
}

#[tokio::test(start_paused = true)]
async fn within_the_look_ahead_photos_and_small_media_start_first() {
    let (engine, bot, store) = setup();
    // Videos first in the input, then photos: the photos are stored first.
    let mut inputs = Vec::new();
    for i in 0..4 {
        inputs.push(SaveInput::bytes(
            i,
            MediaKind::Video,
            media(i, 3_000_000 + i as usize),
        ));
    }
    for i in 4..8 {
        inputs.push(SaveInput::bytes(
            i,
            MediaKind::Photo,
            media(i, 2_000 + i as usize),
        ));
    }
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .with_max_in_flight(1)
        .with_look_ahead(8)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    assert_eq!(saved.len(), 8);
    let order = store.started.lock().unwrap().clone();
    assert!(order[..4].iter().all(|&s| s < 10_000), "{order:?}");
    assert!(order[4..].iter().all(|&s| s > 1_000_000), "{order:?}");
    // Answered as completed: with one at a time, in the order started.
    let tags: Vec<u64> = saved.iter().map(|s| s.tag).collect();
    assert_eq!(tags[..4], [4, 5, 6, 7]);
}

#[tokio::test(start_paused = true)]
async fn a_look_ahead_of_one_keeps_the_input_order() {
    let (engine, bot, store) = setup();
    let inputs = vec![
        SaveInput::bytes(0, MediaKind::Video, media(0, 3_000_000)),
        SaveInput::bytes(1, MediaKind::Photo, media(1, 2_000)),
    ];
    let _: Vec<_> = BulkSaver::new(&engine, &bot)
        .with_max_in_flight(1)
        .with_look_ahead(1)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    assert_eq!(*store.started.lock().unwrap(), vec![3_000_000, 2_000]);
}

#[tokio::test(start_paused = true)]
async fn inputs_are_pulled_and_made_only_as_the_window_has_room() {
    let (engine, bot, _store) = setup();
    let pulled = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicU64::new(0));
    let inputs = {
        let (pulled, made) = (pulled.clone(), made.clone());
        futures::stream::iter(0..10_000u64).map(move |i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            let made = made.clone();
            SaveInput::deferred(i, MediaKind::Photo, 1000, async move {
                made.fetch_add(1, Ordering::SeqCst);
                Ok(media(i, 1000))
            })
        })
    };
    let mut saved = BulkSaver::new(&engine, &bot)
        .with_max_in_flight(4)
        .with_look_ahead(16)
        .save_all(inputs);
    for _ in 0..10 {
        saved.next().await.unwrap().result.unwrap();
    }
    // 10 answered, at most 4 running, 16 waiting in the window: nothing else was pulled.
    assert!(pulled.load(Ordering::SeqCst) <= 10 + 4 + 16, "{pulled:?}");
    assert!(made.load(Ordering::SeqCst) <= 10 + 4, "{made:?}");
}

#[tokio::test(start_paused = true)]
async fn one_bad_input_is_its_own_answer_and_the_others_are_saved() {
    let (engine, bot, _store) = setup();
    let inputs = vec![
        SaveInput::bytes("a", MediaKind::Photo, media(1, 1000)),
        SaveInput::bytes("empty", MediaKind::Photo, Bytes::new()),
        SaveInput::deferred("broken", MediaKind::Photo, 10, async {
            Err(Error::io(
                "reading it",
                std::io::Error::other("disk on fire"),
            ))
        }),
        SaveInput::bytes("b", MediaKind::Photo, media(2, 1000)),
    ];
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    let by = |tag: &str| saved.iter().find(|s| s.tag == tag).unwrap();
    assert!(by("a").result.is_ok() && by("b").result.is_ok());
    assert!(matches!(by("empty").result, Err(Error::EmptyMedia { .. })));
    let broken = by("broken").result.as_ref().unwrap_err().to_string();
    assert!(broken.contains("disk on fire"), "{broken}");
}

#[tokio::test(start_paused = true)]
async fn a_media_warm_before_is_answered_as_such_and_not_stored_again() {
    let (engine, bot, store) = setup();
    let running = engine.spawn();
    let key = engine
        .save(&bot, media(7, 1000), MediaKind::Photo)
        .await
        .unwrap();
    engine
        .wait_ready(&key, Duration::from_secs(10))
        .await
        .unwrap();
    let puts = store.started.lock().unwrap().len();
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .save_all(futures::stream::iter([SaveInput::bytes(
            0,
            MediaKind::Photo,
            media(7, 1000),
        )]))
        .collect()
        .await;
    assert!(saved[0].already_warm);
    assert_eq!(saved[0].result.as_ref().unwrap(), &key);
    assert_eq!(store.started.lock().unwrap().len(), puts);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_known_hash_is_trusted_and_the_file_read_only_when_the_store_lacks_it() {
    use super::SaveSource;
    let (engine, bot, store) = setup();
    let dir = tempfile::tempdir().unwrap();
    let (stored, missing) = (
        dir.path().join("stored.jpg"),
        dir.path().join("missing.jpg"),
    );
    let (a, b) = (media(1, 1000), media(2, 1000));
    std::fs::write(&stored, &a).unwrap();
    std::fs::write(&missing, &b).unwrap();
    // `stored` is in the store already (not warm): its file is never opened, so it may go.
    let key_a = engine
        .save(&bot, a.clone(), MediaKind::Photo)
        .await
        .unwrap();
    std::fs::remove_file(&stored).unwrap();
    let puts = store.started.lock().unwrap().len();
    let input = |tag, path: &std::path::Path, bytes: &Bytes| SaveInput {
        tag,
        kind: MediaKind::Photo,
        size: 1000,
        source: SaveSource::FileWithHash(path.to_path_buf(), crate::Sha256::of(bytes)),
    };
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .save_all(futures::stream::iter([
            input("stored", &stored, &a),
            input("missing", &missing, &b),
        ]))
        .collect()
        .await;
    let by = |tag: &str| saved.iter().find(|s| s.tag == tag).unwrap();
    assert_eq!(by("stored").result.as_ref().unwrap(), &key_a);
    assert!(!by("stored").hashed, "answered from the known hash");
    assert!(by("missing").result.is_ok());
    assert!(by("missing").hashed, "not in the store: read and saved");
    assert_eq!(store.started.lock().unwrap().len(), puts + 1);
}

/// An uploader that holds the first upload until a second one begins.
#[derive(Debug)]
struct HeldUploader {
    inner: MemoryUploader,
    began: AtomicUsize,
    first_began: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl crate::Uploader for HeldUploader {
    fn bot(&self) -> &BotId {
        self.inner.bot()
    }
    async fn upload(
        &self,
        request: crate::upload::UploadRequest,
    ) -> Result<crate::upload::Uploaded> {
        match self.began.fetch_add(1, Ordering::SeqCst) {
            0 => {
                self.first_began.notify_one();
                let _held = self.gate.acquire().await;
            }
            1 => self.gate.add_permits(1),
            _ => {}
        }
        self.inner.upload(request).await
    }
    fn needs_bytes(&self, kind: crate::MediaKind, size: u64, content_type: Option<&str>) -> bool {
        self.inner.needs_bytes(kind, size, content_type)
    }
    async fn rejected(&self, key: &crate::MediaKey, file_id: &crate::FileId) -> Result<()> {
        self.inner.rejected(key, file_id).await
    }
}

/// The race behind a flaky `tests/warm_dir.rs`: an engine resumes a job an interrupted run
/// left queued as soon as it starts, before `WarmDir::run` begins; that upload finishes only
/// after the run looked the media up, so the media is not "warm before". From a baseline
/// taken before the engine started, the report counts that upload: every media not warm
/// before the run was uploaded by it.
#[tokio::test]
async fn a_warm_dir_report_counts_the_uploads_resumed_before_it_from_its_baseline() {
    use super::WarmDir;
    let bot = BotId::new("bulk").unwrap();
    let uploader = Arc::new(HeldUploader {
        inner: MemoryUploader::new(bot.clone()),
        began: AtomicUsize::new(0),
        first_began: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let engine = PrewarmEngine::builder()
        .with_uploader(uploader.clone())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (media(1, 1000), media(2, 1000));
    std::fs::write(dir.path().join("a.jpg"), &a).unwrap();
    std::fs::write(dir.path().join("b.jpg"), &b).unwrap();
    // An earlier run saved `a` and stopped before warming it.
    engine.save(&bot, a, MediaKind::Photo).await.unwrap();

    let baseline = engine.metrics().await.unwrap();
    let running = engine.spawn();
    // `a`'s upload is on the wire, held until `b`'s begins: one at a time in path order,
    // `b` is saved only once `a` was looked up (not warm) and answered.
    uploader.first_began.notified().await;
    let report = WarmDir::new(dir.path())
        .with_baseline(baseline)
        .with_max_in_flight(1)
        .with_wait(Duration::from_secs(10))
        .run(&engine, &bot)
        .await
        .unwrap();
    running.shutdown().await.unwrap();

    assert_eq!((report.files, report.ready), (2, 2), "{report:?}");
    assert_eq!(report.skipped, 0, "`a` was not warm when the run looked");
    assert_eq!(report.uploads, 2, "{report:?}");
    assert!(report.uploads >= report.files - report.skipped);
}

#[tokio::test(start_paused = true)]
async fn each_media_is_hashed_once() {
    use crate::media::HASHED_HERE;
    let (engine, bot, _store) = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.jpg");
    std::fs::write(&path, media(99, 1000)).unwrap();
    let mut inputs: Vec<_> = (0..10)
        .map(|i| SaveInput::bytes(i, MediaKind::Photo, media(i, 1000)))
        .collect();
    inputs.push(SaveInput::file(10, MediaKind::Photo, &path, 1000));
    // A media warm already: hashed to tell, then nothing more.
    let warm = engine
        .save(&bot, media(11, 1000), MediaKind::Photo)
        .await
        .unwrap();
    engine
        .record_file_id(&warm, crate::FileId::new("warm"))
        .await
        .unwrap();
    inputs.push(SaveInput::bytes(11, MediaKind::Photo, media(11, 1000)));

    HASHED_HERE.set(0);
    let saved: Vec<_> = BulkSaver::new(&engine, &bot)
        .save_all(futures::stream::iter(inputs))
        .collect()
        .await;
    assert_eq!(saved.len(), 12);
    assert!(saved.iter().all(|s| s.result.is_ok() && s.hashed));
    assert_eq!(saved.iter().filter(|s| s.already_warm).count(), 1);
    assert_eq!(
        HASHED_HERE.get(),
        12 * 1000,
        "each media's bytes hashed once"
    );
}
