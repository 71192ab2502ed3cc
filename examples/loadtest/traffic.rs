//! The traffic scenario (`--traffic`): what a bot's users feel on the send path.
//!
//! ```text
//! cargo run --release --example loadtest --features testkit -- --traffic [--duration S] [--seed N]
//! ```
//!
//! A library of `LIBRARY` photos is saved and warm before the window opens (not timed). For
//! `--duration` seconds (default 60) new photos are saved at `NEW_PER_SECOND`, and sends go
//! out at `SENDS_PER_SECOND`, each to a user of its own (a private chat that gets one message),
//! to a media drawn with Zipf popularity (s = 1; a new media takes a random rank), except
//! `FRESH_SHARE` of them, which go to a media saved in the last `FRESH` (a bot that saves and
//! sends at once).
//!
//! Ours sends with `send_cached` through `TelegramUploader` and an engine over memory
//! backends. The seed's design, after it, on the same fake, library and pace: an in-memory
//! cache of file_ids, a FIFO drained by a 2,000 ms tick one job at a time (an R2 download of
//! 200-800 ms, then the upload to one warm-up chat), and a send that answers `MEDIA_NOT_READY`
//! (a failed send) when the file_id is not cached yet, queueing the media.
//!
//! The fake Bot API runs in this process on a runtime of its own (one thread), with
//! Telegram's limits: uploads take 500-2,000 ms, a send by file_id `FILE_ID_MS`. The crate's
//! share of a send's latency is the measured time minus what the fake took over that very
//! request (each user gets one send, so the fake's log names it by chat): its arrival to its
//! answer, the sleep's timer overshoot and the fake's parsing included.
//!
//! One JSON line per design: `sends`, `share_by_file_id` (the fake's count of sends by
//! file_id over all sends), `share_by_upload` (the other successful sends), `errors` (with their kinds),
//! `old_sends` and `old_by_file_id_share` (sends to media saved over `OLD` earlier that found
//! the file_id cached when they started), `latency_ms` over all successful sends,
//! `file_id_latency_ms` over those that found the file_id cached, `crate_share_ms` (each of
//! those minus the fake's time for its request: the HTTP exchange on loopback included),
//! `over_fixed_latency_ms` (the same sends minus the nominal `FILE_ID_MS`),
//! `save_to_first_file_id_send_ms` over new media, `save_to_ready_ms` (ours: save to file_id
//! cached), `uploads_per_new_media` (the fake's uploads of each new media's bytes, counted
//! once every new media's warm has finished). Then a line with the goals: 99% of old sends
//! by file_id, every send successful, and what the crate adds at p50 and p99, both as
//! `crate_share_ms` and as `added_over_plain_client_ms` (ours by file_id minus the seed's
//! bare reqwest call to the same fake, percentile by percentile: the crate without the HTTP
//! stack both pay).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::{BotId, MediaKey, MediaKind, PrewarmEngine, TelegramUploader, send_cached};
use serde_json::{Value, json};

use super::{pct, round1};

const TOKEN: &str = "223344:traffic-token-not-a-secret";
const LIBRARY: usize = 300;
const NEW_PER_SECOND: f64 = 0.5;
const SENDS_PER_SECOND: f64 = 15.0;
const FRESH_SHARE: f64 = 0.02;
const FRESH: Duration = Duration::from_secs(2);
const OLD: Duration = Duration::from_secs(10);
const WARMUP_CHATS: i64 = 16;
const USERS: i64 = 10_000;
const FILE_ID_MS: u64 = 40;
const UPLOAD_MS: (u64, u64) = (500, 2000);
const DOWNLOAD_MS: (u64, u64) = (200, 800);
/// How long `send_cached` waits for a warm in flight before uploading itself.
const WAIT: Duration = Duration::from_millis(2500);
const SEED_TICK: Duration = Duration::from_millis(2000);

fn warmup_chats() -> Vec<i64> {
    (1..=WARMUP_CHATS).map(|n| 5_000_000 + n).collect()
}

/// Users of each design: private chats, one message each.
fn user(design: i64, n: u64) -> i64 {
    10_000_000 * (design + 1) + (n as i64 % USERS)
}

/// A JPEG-looking photo of 20 to 200 KB, unique to `(seed, id)`.
fn photo(seed: u64, id: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let len = rng.usize(20_000..200_000);
    let mut v = b"\xFF\xD8\xFF\xE0JFIF\0".to_vec();
    v.extend_from_slice(&id.to_le_bytes());
    v.extend((v.len()..len).map(|_| rng.u8(..)));
    Bytes::from(v)
}

/// Zipf popularity (s = 1) over the first `n` ranks of a growing list.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(cap: usize) -> Self {
        let mut sum = 0.0;
        let cdf = (1..=cap)
            .map(|k| {
                sum += 1.0 / k as f64;
                sum
            })
            .collect();
        Self { cdf }
    }

    fn rank(&self, rng: &mut fastrand::Rng, n: usize) -> usize {
        let n = n.min(self.cdf.len()).max(1);
        let u = rng.f64() * self.cdf[n - 1];
        self.cdf[..n].partition_point(|c| *c < u).min(n - 1)
    }
}

/// The media of a run, by popularity.
struct World {
    saved_at: Vec<Instant>,
    /// Indices into `saved_at`, most popular first.
    by_rank: Vec<usize>,
    first_file_id_send: Vec<Option<Duration>>,
    zipf: Zipf,
    rng: fastrand::Rng,
}

impl World {
    fn new(seed: u64, library: usize, cap: usize, now: Instant) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut by_rank: Vec<usize> = (0..library).collect();
        rng.shuffle(&mut by_rank);
        Self {
            saved_at: vec![now - OLD * 100; library],
            by_rank,
            first_file_id_send: vec![None; library],
            zipf: Zipf::new(cap),
            rng,
        }
    }

    fn add(&mut self, at: Instant) -> usize {
        let id = self.saved_at.len();
        self.saved_at.push(at);
        self.first_file_id_send.push(None);
        let rank = self.rng.usize(..=self.by_rank.len());
        self.by_rank.insert(rank, id);
        id
    }

    /// The media of the next send, and its age.
    fn pick(&mut self, now: Instant) -> (usize, Duration) {
        let newest = self.saved_at.len() - 1;
        let idx = if self.rng.f64() < FRESH_SHARE && now - self.saved_at[newest] < FRESH {
            newest
        } else {
            self.by_rank[self.zipf.rank(&mut self.rng, self.by_rank.len())]
        };
        (idx, now - self.saved_at[idx])
    }

    /// A send by file_id of `idx` started at `t`.
    fn sent_by_file_id(&mut self, idx: usize, t: Instant) {
        let since = t - self.saved_at[idx];
        self.first_file_id_send[idx].get_or_insert(since);
    }

    /// From save to the first send by file_id, of each new media sent so, sorted.
    fn firsts(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.first_file_id_send[LIBRARY..]
            .iter()
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

#[derive(Debug, Default)]
struct Sends {
    latency: Vec<Duration>,
    /// Latency of the sends that found the file_id cached when they started.
    file_id_latency: Vec<Duration>,
    /// The same sends with the user chat each went to (one send per user), to subtract the
    /// fake's own time for that very request.
    file_id_sends: Vec<(i64, Duration)>,
    errors: HashMap<String, u64>,
    old: u64,
    old_cached: u64,
    sent: u64,
}

impl Sends {
    fn record(&mut self, chat: i64, age: Duration, cached: bool, result: Result<Duration, String>) {
        if age > OLD {
            self.old += 1;
            self.old_cached += u64::from(cached && result.is_ok());
        }
        match result {
            Ok(lat) => {
                self.sent += 1;
                self.latency.push(lat);
                if cached {
                    self.file_id_latency.push(lat);
                    self.file_id_sends.push((chat, lat));
                }
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }
}

fn ms_of(sorted: &[Duration]) -> Value {
    json!({
        "p50": round3(pct(sorted, 0.50)),
        "p95": round3(pct(sorted, 0.95)),
        "p99": round3(pct(sorted, 0.99)),
    })
}

/// The fake on a runtime of its own, so that its work is not scheduled among the client's.
struct FakeThread {
    fake: Option<FakeBotApi>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeThread {
    fn start() -> prewarm::Result<FakeThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the fake's runtime");
            rt.block_on(async move {
                let ms = Duration::from_millis;
                let mut chats = warmup_chats();
                for design in 0..2 {
                    chats.extend((0..USERS as u64).map(|n| user(design, n)));
                }
                let fake = FakeBotApi::builder()
                    .with_bot(TOKEN)
                    .with_chats(chats)
                    .with_limits(FakeLimits::telegram())
                    .with_latency(Latency::uniform(ms(UPLOAD_MS.0)..ms(UPLOAD_MS.1)))
                    .with_file_id_latency(Latency::fixed(ms(FILE_ID_MS)))
                    .start()
                    .await;
                let _ = tx.send(fake);
                let _ = stopped.await;
            });
        });
        let fake = rx.recv().expect("the fake's thread answers")?;
        Ok(FakeThread {
            fake: Some(fake),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn fake(&self) -> &FakeBotApi {
        self.fake.as_ref().expect("running")
    }
}

impl Drop for FakeThread {
    fn drop(&mut self) {
        drop(self.fake.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Both designs, one after the other, on one fake; one JSON line each, then the goals.
pub(crate) async fn run(duration: f64, seed: u64) -> prewarm::Result<Vec<Value>> {
    let window = Duration::from_secs_f64(duration);
    let fake = FakeThread::start()?;
    let telegram = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.fake().base_url())
        .with_warmup_chats(warmup_chats())
        .build()?;
    let bot = prewarm::Uploader::bot(&telegram).clone();
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(telegram.clone()))
        .with_concurrency(2 * WARMUP_CHATS as usize)
        .build()?;
    let running = engine.spawn();

    // The library, saved and warm before the window (not timed), shared by both designs.
    let mut library = Vec::with_capacity(LIBRARY);
    for id in 0..LIBRARY as u64 {
        library.push(engine.save(&bot, photo(seed, id), MediaKind::Photo).await?);
    }
    for key in &library {
        engine.wait_ready(key, Duration::from_secs(300)).await?;
    }
    let library_ids: Vec<String> = library
        .iter()
        .map(|k| engine.lookup(k).map(|id| id.as_str().to_owned()))
        .collect::<Option<_>>()
        .expect("the library is warm");

    let ours = run_ours(&engine, &telegram, &bot, &fake, library, window, seed).await?;
    running.shutdown().await?;
    let base = run_seed(&fake, library_ids, window, seed).await?;
    let goals = json!({
        "run": "traffic-goals",
        "old_by_file_id_share_at_least_0.99": ours["old_by_file_id_share"].as_f64().unwrap_or(0.0) >= 0.99,
        "every_send_succeeded": ours["errors"] == 0,
        "crate_share_p50_at_most_1ms": ours["crate_share_ms"]["p50"].as_f64().unwrap_or(f64::MAX) <= 1.0,
        "crate_share_p99_at_most_5ms": ours["crate_share_ms"]["p99"].as_f64().unwrap_or(f64::MAX) <= 5.0,
        "seed_errors": base["errors"],
        // Percentile by percentile: ours by file_id minus the seed's plain reqwest call to the
        // same fake (its HTTP round trip without the crate).
        "added_over_plain_client_ms": {
            "p50": round3(f(&ours, "p50") - f(&base, "p50")),
            "p99": round3(f(&ours, "p99") - f(&base, "p99")),
        },
    });
    Ok(vec![ours, base, goals])
}

fn f(run: &Value, p: &str) -> f64 {
    run["file_id_latency_ms"][p].as_f64().unwrap_or(0.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn run_ours(
    engine: &PrewarmEngine,
    telegram: &TelegramUploader,
    bot: &BotId,
    fake: &FakeThread,
    library: Vec<MediaKey>,
    window: Duration,
    seed: u64,
) -> prewarm::Result<Value> {
    let cap = LIBRARY + (NEW_PER_SECOND * window.as_secs_f64()) as usize + 16;
    let start = Instant::now();
    let world = Arc::new(Mutex::new(World::new(seed, LIBRARY, cap, start)));
    let keys = Arc::new(Mutex::new(library));
    let sends = Arc::new(Mutex::new(Sends::default()));
    let ready: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let before = fake.fake().stats();
    let metrics_before = engine.metrics().await?;

    // New media at a steady pace.
    let saver = {
        let (engine, bot, world, keys, ready) = (
            engine.clone(),
            bot.clone(),
            world.clone(),
            keys.clone(),
            ready.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / NEW_PER_SECOND));
            let mut id = LIBRARY as u64;
            let mut waiters = tokio::task::JoinSet::new();
            while start.elapsed() < window {
                tick.tick().await;
                let at = Instant::now();
                let key = engine.save(&bot, photo(seed, id), MediaKind::Photo).await?;
                keys.lock().unwrap().push(key.clone());
                world.lock().unwrap().add(at);
                let (engine, ready) = (engine.clone(), ready.clone());
                waiters.spawn(async move {
                    // Drained after the window too, so that every new media's uploads count.
                    if engine
                        .wait_ready(&key, Duration::from_secs(30))
                        .await
                        .is_ok()
                    {
                        ready.lock().unwrap().push(at.elapsed());
                    }
                });
                id += 1;
            }
            while waiters.join_next().await.is_some() {}
            Ok::<(), prewarm::Error>(())
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / SENDS_PER_SECOND));
    let mut n = 0u64;
    while start.elapsed() < window {
        tick.tick().await;
        let now = Instant::now();
        let (idx, age) = world.lock().unwrap().pick(now);
        let key = keys.lock().unwrap()[idx].clone();
        let chat = user(0, n);
        n += 1;
        let (engine, telegram, sends, world) = (
            engine.clone(),
            telegram.clone(),
            sends.clone(),
            world.clone(),
        );
        tasks.spawn(async move {
            let cached = engine.lookup(&key).is_some();
            let t = Instant::now();
            let result = send_cached(&engine, &telegram, chat, &key, WAIT).await;
            let lat = t.elapsed();
            if cached && result.is_ok() {
                world.lock().unwrap().sent_by_file_id(idx, t);
            }
            let result = result.map(|_| lat).map_err(|e| kind_of(&e));
            sends.lock().unwrap().record(chat, age, cached, result);
        });
    }
    while tasks.join_next().await.is_some() {}
    saver.await.expect("the saver")?;
    let after = fake.fake().stats();
    let metrics = engine.metrics().await?;
    let mut ready = ready.lock().unwrap().clone();
    ready.sort_unstable();
    let keys = keys.lock().unwrap().clone();
    let new_keys = &keys[LIBRARY..];
    let uploads: u64 = new_keys
        .iter()
        .map(|k| u64::from(fake.fake().uploads_of(&k.sha256).uploads))
        .sum();
    let w = world.lock().unwrap();
    let firsts = w.firsts();
    let mut s = std::mem::take(&mut *sends.lock().unwrap());
    let by_file_id = after.sent_by_file_id - before.sent_by_file_id;
    Ok(report(
        "traffic-ours",
        window,
        &mut s,
        by_file_id,
        new_keys.len(),
        uploads,
        &firsts,
        fake.fake(),
        json!({
            "save_to_ready_ms": ms_of(&ready),
            "new_media_warmed": ready.len(),
            "warm_uploads": metrics.uploads - metrics_before.uploads,
            // The engine's own send-path figures (what the dashboard's panel reads), beside
            // the example's measurement of the same sends.
            "engine_send_latency_ms": {
                "count": metrics.send_latency.count,
                "p50": round3(metrics.send_latency.p50.as_secs_f64() * 1e3),
                "p95": round3(metrics.send_latency.p95.as_secs_f64() * 1e3),
                "p99": round3(metrics.send_latency.p99.as_secs_f64() * 1e3),
            },
            "engine_sent_by_file_id": metrics.sent_by_file_id - metrics_before.sent_by_file_id,
            "engine_sent_by_upload": metrics.sent_by_upload - metrics_before.sent_by_upload,
            "engine_send_failures": metrics.send_failures - metrics_before.send_failures,
            "429s": after.too_many_requests - before.too_many_requests,
            "retry_after_violations": after.violations - before.violations,
        }),
    ))
}

fn kind_of(e: &prewarm::Error) -> String {
    let text = e.to_string();
    text.split([':', '('])
        .next()
        .unwrap_or("error")
        .trim()
        .to_owned()
}

#[allow(clippy::too_many_arguments)]
fn report(
    run: &str,
    window: Duration,
    s: &mut Sends,
    by_file_id: u64,
    new_media: usize,
    uploads: u64,
    firsts: &[Duration],
    fake: &FakeBotApi,
    extra: Value,
) -> Value {
    s.latency.sort_unstable();
    s.file_id_latency.sort_unstable();
    // What the fake took over each user's request(s), from arrival to answer.
    let mut took: HashMap<i64, Duration> = HashMap::new();
    for e in fake.events() {
        if let Some(chat) = e.chat {
            *took.entry(chat).or_default() += e.took;
        }
    }
    let mut crate_share: Vec<Duration> = s
        .file_id_sends
        .iter()
        .map(|(chat, d)| d.saturating_sub(took.get(chat).copied().unwrap_or_default()))
        .collect();
    crate_share.sort_unstable();
    let over_fixed: Vec<Duration> = s
        .file_id_latency
        .iter()
        .map(|d| d.saturating_sub(Duration::from_millis(FILE_ID_MS)))
        .collect();
    let errors: u64 = s.errors.values().sum();
    let sends = s.sent + errors;
    // Shares of every send, failed ones included.
    let share = |n: u64| {
        if sends == 0 {
            0.0
        } else {
            (n as f64 / sends as f64 * 10_000.0).round() / 10_000.0
        }
    };
    let mut out = json!({
        "run": run,
        "window_s": window.as_secs_f64(),
        "library": LIBRARY,
        "new_media": new_media,
        "sends": sends,
        "share_by_file_id": share(by_file_id.min(s.sent)),
        "share_by_upload": share(s.sent.saturating_sub(by_file_id)),
        "errors": errors,
        "error_kinds": s.errors,
        "old_sends": s.old,
        "old_by_file_id_share": if s.old == 0 { 0.0 } else { (s.old_cached as f64 / s.old as f64 * 10_000.0).round() / 10_000.0 },
        "latency_ms": ms_of(&s.latency),
        "file_id_latency_ms": ms_of(&s.file_id_latency),
        "crate_share_ms": ms_of(&crate_share),
        "over_fixed_latency_ms": ms_of(&over_fixed),
        "save_to_first_file_id_send_ms": {
            "media": firsts.len(),
            "p50": round1(pct(firsts, 0.50)),
            "p95": round1(pct(firsts, 0.95)),
        },
        "uploads_per_new_media": if new_media == 0 { 0.0 } else { round1(uploads as f64 / new_media as f64 * 100.0) / 100.0 },
    });
    if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
        out.extend(extra.clone());
    }
    out
}

/// The seed's design: see the module docs.
async fn run_seed(
    fake: &FakeThread,
    library_ids: Vec<String>,
    window: Duration,
    seed: u64,
) -> prewarm::Result<Value> {
    let cap = LIBRARY + (NEW_PER_SECOND * window.as_secs_f64()) as usize + 16;
    let start = Instant::now();
    let world = Arc::new(Mutex::new(World::new(seed, LIBRARY, cap, start)));
    let cache: Arc<Mutex<HashMap<usize, String>>> =
        Arc::new(Mutex::new(library_ids.into_iter().enumerate().collect()));
    let media: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let queue: Arc<Mutex<(VecDeque<usize>, HashSet<usize>)>> = Arc::default();
    let sends = Arc::new(Mutex::new(Sends::default()));
    let uploads = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::new();
    let api = format!("{}/bot{TOKEN}", fake.fake().base_url());
    let before = fake.fake().stats();
    let enqueue = |queue: &Mutex<(VecDeque<usize>, HashSet<usize>)>, idx: usize| {
        let mut q = queue.lock().unwrap();
        if q.1.insert(idx) {
            q.0.push_back(idx);
        }
    };

    // The `setInterval` worker: one job a tick, never two at once.
    let worker = {
        let (cache, media, queue, client, api, uploads) = (
            cache.clone(),
            media.clone(),
            queue.clone(),
            client.clone(),
            api.clone(),
            uploads.clone(),
        );
        tokio::spawn(async move {
            let chat = warmup_chats()[0];
            let mut tick = tokio::time::interval(SEED_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let busy = Arc::new(AtomicU64::new(0));
            while start.elapsed() < window {
                tick.tick().await;
                if busy.load(Ordering::SeqCst) > 0 {
                    continue;
                }
                let Some(idx) = queue.lock().unwrap().0.pop_front() else {
                    continue;
                };
                busy.store(1, Ordering::SeqCst);
                let bytes = media.lock().unwrap()[idx - LIBRARY].clone();
                let (cache, queue, client, api, uploads, busy) = (
                    cache.clone(),
                    queue.clone(),
                    client.clone(),
                    api.clone(),
                    uploads.clone(),
                    busy.clone(),
                );
                tokio::spawn(async move {
                    // `downloadMedia(r2_key)`, then `sendPhoto(token, warmupChatId, buffer)`.
                    let (lo, hi) = DOWNLOAD_MS;
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(lo..hi))).await;
                    uploads.fetch_add(1, Ordering::Relaxed);
                    match seed_upload(&client, &api, chat, bytes).await {
                        Some(id) => {
                            cache.lock().unwrap().insert(idx, id);
                            queue.lock().unwrap().1.remove(&idx);
                        }
                        None => queue.lock().unwrap().0.push_back(idx),
                    }
                    busy.store(0, Ordering::SeqCst);
                });
            }
        })
    };
    let saver = {
        let (world, media, queue) = (world.clone(), media.clone(), queue.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / NEW_PER_SECOND));
            let mut id = LIBRARY as u64;
            while start.elapsed() < window {
                tick.tick().await;
                media.lock().unwrap().push(photo(seed, id));
                let idx = world.lock().unwrap().add(Instant::now());
                enqueue(&queue, idx);
                id += 1;
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / SENDS_PER_SECOND));
    let mut n = 0u64;
    while start.elapsed() < window {
        tick.tick().await;
        let now = Instant::now();
        let (idx, age) = world.lock().unwrap().pick(now);
        let chat = user(1, n);
        n += 1;
        let file_id = cache.lock().unwrap().get(&idx).cloned();
        let Some(file_id) = file_id else {
            // `getCachedFileId` missed: the user gets MEDIA_NOT_READY; the media is queued.
            enqueue(&queue, idx);
            sends
                .lock()
                .unwrap()
                .record(chat, age, false, Err("MEDIA_NOT_READY".to_owned()));
            continue;
        };
        let (client, api, sends, world) =
            (client.clone(), api.clone(), sends.clone(), world.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = seed_send_file_id(&client, &api, chat, &file_id).await;
            let lat = t.elapsed();
            if ok {
                world.lock().unwrap().sent_by_file_id(idx, t);
            }
            let result = if ok {
                Ok(lat)
            } else {
                Err("sendPhoto failed".to_owned())
            };
            sends.lock().unwrap().record(chat, age, true, result);
        });
    }
    while tasks.join_next().await.is_some() {}
    saver.await.expect("the saver");
    worker.await.expect("the worker");
    let after = fake.fake().stats();
    let new_media = media.lock().unwrap().len();
    let w = world.lock().unwrap();
    let firsts = w.firsts();
    let warmed = cache.lock().unwrap().len() - LIBRARY;
    let mut s = std::mem::take(&mut *sends.lock().unwrap());
    let by_file_id = after.sent_by_file_id - before.sent_by_file_id;
    Ok(report(
        "traffic-seed",
        window,
        &mut s,
        by_file_id,
        new_media,
        uploads.load(Ordering::Relaxed),
        &firsts,
        fake.fake(),
        json!({
            "new_media_warmed": warmed,
            "still_queued": queue.lock().unwrap().0.len(),
            "429s": after.too_many_requests - before.too_many_requests,
        }),
    ))
}

/// `bot.sendPhoto(warmupChatId, buffer)`; answers the largest size's file_id.
async fn seed_upload(
    client: &reqwest::Client,
    api: &str,
    chat: i64,
    bytes: Bytes,
) -> Option<String> {
    let part = reqwest::multipart::Part::stream_with_length(bytes.clone(), bytes.len() as u64)
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .ok()?;
    let form = reqwest::multipart::Form::new()
        .text("chat_id", chat.to_string())
        .part("photo", part);
    let reply: Value = client
        .post(format!("{api}/sendPhoto"))
        .multipart(form)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    reply["result"]["photo"].as_array()?.last()?["file_id"]
        .as_str()
        .map(str::to_owned)
}

/// `bot.sendPhoto(chatId, file_id)`.
async fn seed_send_file_id(client: &reqwest::Client, api: &str, chat: i64, file_id: &str) -> bool {
    let reply = client
        .post(format!("{api}/sendPhoto"))
        .form(&[("chat_id", chat.to_string()), ("photo", file_id.to_owned())])
        .send()
        .await;
    match reply {
        Ok(r) => r
            .json::<Value>()
            .await
            .is_ok_and(|v| v["ok"] == Value::Bool(true)),
        Err(_) => false,
    }
}
