//! The `--bulk` scenario: N media (default 10,000) from save to ready through
//! [`BulkSaver::save_all`], a store whose writes take 150 to 800 ms and reads 200 to 800 ms,
//! and the fake Bot API with 30 private warm-up chats (a ceiling of 30 sends a second, of
//! which warms leave 25% to users by default), on an embedded SQLite cache and queue.
//!
//! ```text
//! cargo run --release --example loadtest -- --bulk [-n N] [--chats K] [--kill-at M] [--state DIR] [--small]
//!     [--max-bytes-mib B] [--user-share PCT]
//! ```
//!
//! Three processes: this one (the supervisor), the fake Bot API with the URL server (as in
//! the other scenarios), and the bot (`--bulk-worker`), whose peak RSS is the one reported,
//! beside the most bytes it held live (`peak_live_mb`, from a counting allocator): what RSS
//! holds above that is glibc's. The bot runs with `MALLOC_ARENA_MAX=2` and
//! `MALLOC_MMAP_THRESHOLD_=131072` unless they are set (`MALLOC_MMAP_THRESHOLD_=`, empty:
//! glibc's dynamic threshold; see `run_worker` for why).
//! `--max-bytes-mib B` sets `save_all`'s byte budget (default 64 MiB). `--user-share PCT` is
//! the share of the bot-wide rate warms leave to sends to users (`RateLimits::with_user_share`,
//! default the crate's 25%): the ceiling reported is what warms may use, 22.5/s by default,
//! 30/s with `--user-share 0` (a bot importing its library before it serves anyone).
//! With `--kill-at M` the supervisor SIGKILLs the bot once it has reported M media ready,
//! then starts it again over the same state: every media must end ready, what was
//! acknowledged ready before the kill must be warm at the restart, and the fake must have
//! produced one media message per media: nothing uploaded twice, not even the uploads in
//! flight at the kill, which Telegram completed and the bot never heard of (the restarted
//! bot finds them in their chats by forwarding; the forwards are counted apart).
//!
//! The input is the other scenarios' mix (80% photos of 30 KB to 2 MB, 15% videos of 2 to
//! 40 MB, 5% PDFs; about 24 GB for 10,000), or with `--small` photos of 30 to 300 KB (the
//! issue's own test), generated when a save starts. The store keeps no bytes: it records each
//! object in `DIR/objects.log` (so a restarted bot finds what the killed one stored) and
//! regenerates it when read.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use prewarm::bulk::{BulkSaver, Progress, SaveInput};
use prewarm::db::SqliteStore;
use prewarm::store::{GetResult, ObjectMeta, PutOutcome, PutPayload};
use prewarm::upload::RateLimits;
use prewarm::{Error, MediaStore, ObjectKey, PrewarmEngine, TelegramUploader, Uploader};
use serde_json::{Value, json};

use super::{
    LoadStore, Remote, Spec, TOKEN, alloc, chat_ids, generate, io_error, kind_code, kind_of,
    log_uniform, parse_opts, peak_rss_mb, round1, rss_mb, spec,
};

/// Each store read or write takes this long (the seed's measured R2 latencies).
const STORE_MS: (u64, u64) = (150, 800);

struct BulkOpts {
    n: u64,
    chats: usize,
    seed: u64,
    kill_at: Option<u64>,
    state: Option<PathBuf>,
    /// Photos of 30 to 300 KB only, instead of the other scenarios' mix.
    small: bool,
    /// `save_all`'s byte budget in MiB, when not its default.
    max_bytes_mib: Option<u64>,
    /// The share of the bot-wide rate warms leave to users, in percent (the crate's default
    /// 25 unless given).
    user_share: u32,
    /// Worker only: the fake's and the URL server's base URLs.
    api: String,
    urls: String,
}

fn parse(args: &[String]) -> Result<BulkOpts, String> {
    let mut o = BulkOpts {
        n: 10_000,
        chats: 30,
        seed: 7,
        kill_at: None,
        state: None,
        small: false,
        max_bytes_mib: None,
        user_share: prewarm::upload::RateLimits::default().user_share(),
        api: String::new(),
        urls: String::new(),
    };
    let mut it = args.iter().skip(1);
    let num = |v: Option<&String>, name: &str| -> Result<u64, String> {
        v.and_then(|s| s.parse::<u64>().ok())
            .filter(|x| *x > 0)
            .ok_or_else(|| format!("{name} needs a positive whole number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-n" => o.n = num(it.next(), "-n")?,
            "--chats" => o.chats = num(it.next(), "--chats")? as usize,
            "--seed" => o.seed = num(it.next(), "--seed")?,
            "--kill-at" => o.kill_at = Some(num(it.next(), "--kill-at")?),
            "--state" => o.state = it.next().map(PathBuf::from),
            "--small" => o.small = true,
            "--max-bytes-mib" => o.max_bytes_mib = Some(num(it.next(), "--max-bytes-mib")?),
            "--user-share" => {
                o.user_share = it
                    .next()
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|p| *p < 100)
                    .ok_or("--user-share needs a percentage from 0 to 99")?
            }
            "--api" => o.api = it.next().cloned().unwrap_or_default(),
            "--urls" => o.urls = it.next().cloned().unwrap_or_default(),
            other => return Err(format!("--bulk: unknown option {other}")),
        }
    }
    Ok(o)
}

/// `--bulk` and `--bulk-worker`: the scenario's entry point, from `main`.
pub(crate) fn main(args: &[String]) {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    };
    let worker = args[0] == "--bulk-worker";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = if worker {
        rt.block_on(work(&o))
    } else {
        supervise(&o)
    };
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor

fn supervise(o: &BulkOpts) -> prewarm::Result<Value> {
    let remote_opts = parse_opts(&[
        "--chats".to_owned(),
        o.chats.to_string(),
        "--seed".to_owned(),
        o.seed.to_string(),
    ])
    .map_err(|message| Error::Config { message })?;
    let mut remote = Remote::start(&remote_opts);
    let scratch = tempfile_dir()?;
    let state = o.state.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&state).map_err(|e| io_error("creating the state folder", e))?;
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut acknowledged = None;
    let first = run_worker(o, &remote, &state, o.kill_at)?;
    if let Some(ready) = first.killed_after {
        acknowledged = Some(ready);
        runs.push(first.summary);
        let second = run_worker(o, &remote, &state, None)?;
        runs.push(second.summary);
    } else {
        runs.push(first.summary);
    }
    let elapsed = started.elapsed();
    let fake = remote.stats();
    remote.stop();
    if o.state.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let last = runs.last().cloned().unwrap_or(Value::Null);
    let ready = last["ready"].as_u64().unwrap_or(0);
    let count = |field: &str| fake[field].as_u64().unwrap_or(0);
    let messages = count("messages");
    // Each media's warm-up send makes one message; so does each forward that looked for a
    // send cut short by the kill (its copy deleted), and each text that marked a chat's
    // place. What is left above one a media is a media uploaded twice.
    let media_messages = messages.saturating_sub(count("forwards") + count("texts"));
    // What warms may use: the bot-wide 30/s less the share left to users, and a send a
    // second per chat.
    let ceiling = (30.0 * f64::from(100 - o.user_share) / 100.0).min(o.chats as f64);
    let per_second = ready as f64 / elapsed.as_secs_f64();
    Ok(json!({
        "run": "bulk",
        "media": o.n,
        "chats": o.chats,
        "ready": ready,
        "failed": last["failed"],
        "elapsed_s": round1(elapsed.as_secs_f64()),
        "per_second": round1(per_second),
        "ceiling_per_second": ceiling,
        "user_share_percent": o.user_share,
        "share_of_ceiling": (per_second / ceiling * 1000.0).round() / 1000.0,
        "killed_after_ready": acknowledged,
        "ready_at_restart": runs.get(1).map(|r| r["skipped"].clone()),
        "telegram_messages": messages,
        "telegram_forwards": fake["forwards"],
        "telegram_texts": fake["texts"],
        "telegram_uploads": fake["uploads"],
        "uploaded_twice": media_messages.saturating_sub(o.n),
        "429s": fake["too_many_requests"],
        "retry_after_violations": fake["violations"],
        "peak_rss_mb": runs.iter().filter_map(|r| r["peak_rss_mb"].as_f64()).fold(0.0, f64::max),
        "peak_live_mb": runs.iter().filter_map(|r| r["peak_live_mb"].as_f64()).fold(0.0, f64::max),
        "runs": runs,
    }))
}

struct WorkerRun {
    summary: Value,
    /// Media reported ready when the worker was killed.
    killed_after: Option<u64>,
}

/// Runs one bot process to its end, or SIGKILLs it once it reports `kill_at` media ready.
fn run_worker(
    o: &BulkOpts,
    remote: &Remote,
    state: &Path,
    kill_at: Option<u64>,
) -> prewarm::Result<WorkerRun> {
    let exe = std::env::current_exe().map_err(|e| io_error("finding the example", e))?;
    let mut bot = Command::new(exe);
    // Set and empty: glibc's own dynamic threshold.
    match std::env::var("MALLOC_MMAP_THRESHOLD_") {
        Ok(v) if v.is_empty() => bot.env_remove("MALLOC_MMAP_THRESHOLD_"),
        Ok(v) => bot.env("MALLOC_MMAP_THRESHOLD_", v),
        Err(_) => bot.env("MALLOC_MMAP_THRESHOLD_", "131072"),
    };
    let mut child = bot
        .args(["--bulk-worker", "-n", &o.n.to_string()])
        .args([
            "--chats",
            &o.chats.to_string(),
            "--seed",
            &o.seed.to_string(),
        ])
        .args(["--api", &remote.api, "--urls", &remote.urls])
        .args(o.small.then_some("--small"))
        .args(["--user-share", &o.user_share.to_string()])
        .args(
            o.max_bytes_mib
                .map(|m| ["--max-bytes-mib".to_owned(), m.to_string()])
                .into_iter()
                .flatten(),
        )
        .arg("--state")
        .arg(state)
        // glibc gives each thread that allocates its own 64 MiB heap and keeps what is freed
        // there: media made or read on many blocking threads left 750 MB resident for a
        // fraction of that live. Two arenas, as is usual for servers on glibc. And glibc
        // raises its mmap threshold to the size of each large block freed (up to 32 MiB), so
        // that media buffers soon come from the arenas, which keep them when freed: 245 MB
        // resident for 129 MB live at most. A fixed threshold (glibc's initial 128 KiB) gives
        // each media buffer back when it is freed: 137 MB for 127 MB live. Set a variable
        // beforehand to measure another value, `MALLOC_MMAP_THRESHOLD_=` (empty) for glibc's
        // dynamic threshold (BENCHMARKS.md has both). The threshold is set above.
        .env(
            "MALLOC_ARENA_MAX",
            std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".to_owned()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| io_error("starting the bot process", e))?;
    let stdout = child.stdout.take().expect("piped");
    let mut summary = Value::Null;
    // The bot's peaks so far, from its `MEM` lines: all a killed bot leaves.
    let mut memory = (0.0, 0.0);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| io_error("reading the bot's output", e))?;
        if let Some(ready) = line.strip_prefix("READY ") {
            let ready: u64 = ready.trim().parse().unwrap_or(0);
            if kill_at.is_some_and(|k| ready >= k) {
                child.kill().map_err(|e| io_error("killing the bot", e))?;
                let _ = child.wait();
                return Ok(WorkerRun {
                    summary: json!({
                        "killed": true,
                        "ready_acknowledged": ready,
                        "peak_rss_mb": memory.0,
                        "peak_live_mb": memory.1,
                    }),
                    killed_after: Some(ready),
                });
            }
        } else if let Some(mem) = line.strip_prefix("MEM ") {
            let mut it = mem
                .split_whitespace()
                .map(|v| v.parse::<f64>().unwrap_or(0.0));
            memory = (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0));
        } else if line.starts_with('{') {
            summary = serde_json::from_str(&line).unwrap_or(Value::Null);
        }
    }
    let status = child
        .wait()
        .map_err(|e| io_error("waiting for the bot", e))?;
    if !status.success() {
        return Err(Error::Unavailable {
            message: format!("the bot process failed: {status}"),
        });
    }
    Ok(WorkerRun {
        summary,
        killed_after: None,
    })
}

fn tempfile_dir() -> prewarm::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "prewarm-loadtest-bulk-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| io_error("creating a scratch folder", e))?;
    Ok(dir)
}

// ---------------------------------------------------------------------------------------------
// The bot process

async fn work(o: &BulkOpts) -> prewarm::Result<Value> {
    let state = o.state.clone().ok_or(Error::Config {
        message: "--bulk-worker needs --state".to_owned(),
    })?;
    let store = Arc::new(SlowStore::open(
        o.seed,
        o.urls.clone(),
        &state.join("objects.log"),
    )?);
    let db = SqliteStore::open(state.join("db.sqlite")).await?;
    let chats = {
        let mut ids = chat_ids(
            &parse_opts(&["--chats".to_owned(), o.chats.to_string()])
                .map_err(|message| Error::Config { message })?,
        );
        ids.truncate(o.chats);
        ids
    };
    let telegram = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(o.api.clone())
        .with_warmup_chats(chats.iter().copied())
        .with_rate_limits(
            RateLimits::default()
                .with_in_flight_per_chat(2)
                .with_user_share(o.user_share),
        )
        .with_journal(Arc::new(db.clone()))
        .build()?;
    let bot = telegram.bot().clone();
    let engine = PrewarmEngine::builder()
        .with_store(store.clone())
        .with_cache(Arc::new(db.clone()))
        .with_queue(Arc::new(db))
        .with_uploader(Arc::new(telegram))
        .with_concurrency(2 * chats.len())
        .build()?;
    let running = engine.spawn();
    let started = Instant::now();
    let progress = Progress::new();
    progress.set_total(o.n);
    let (seed, small) = (o.seed, o.small);
    let inputs = futures::stream::iter(0..o.n).map(move |i| {
        let s = if small {
            small_photo(seed, i)
        } else {
            spec(seed, i)
        };
        SaveInput::deferred(i, s.kind, s.size, async move {
            if s.size > 1_000_000 {
                tokio::task::spawn_blocking(move || generate(seed, s))
                    .await
                    .map_err(|e| io_error("generating a media", std::io::Error::other(e)))
            } else {
                Ok(generate(seed, s))
            }
        })
    });
    let mut saver = BulkSaver::new(&engine, &bot).with_progress(progress.clone());
    if let Some(mib) = o.max_bytes_mib {
        saver = saver.with_max_bytes(mib * 1024 * 1024);
    }
    let mut saves = saver.save_all(inputs);
    let reporter = tokio::spawn({
        let progress = progress.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let s = progress.snapshot();
                println!("READY {}", s.ready);
                println!(
                    "MEM {} {}",
                    round1(peak_rss_mb()),
                    round1(alloc::peak_live_mb())
                );
                std::io::stdout().flush().ok();
                if std::env::var_os("LOADTEST_DEBUG").is_some() {
                    eprintln!(
                        "{s}; live {:.1} MB, RSS {:.1} MB",
                        alloc::live_mb(),
                        rss_mb()
                    );
                }
            }
        }
    });
    let mut waiters = tokio::task::JoinSet::new();
    let mut save_errors = 0u64;
    while let Some(done) = saves.next().await {
        match done.result {
            Ok(_) if done.already_warm => {}
            Ok(key) => {
                let (engine, progress) = (engine.clone(), progress.clone());
                waiters.spawn(async move {
                    match engine.wait_ready(&key, Duration::from_secs(3600)).await {
                        Ok(_) => progress.record_ready(),
                        Err(e) => {
                            eprintln!("{key}: {e}");
                            progress.record_failed();
                        }
                    }
                });
            }
            Err(e) => {
                save_errors += 1;
                eprintln!("save {}: {e}", done.tag);
            }
        }
    }
    let saves_done = started.elapsed();
    while waiters.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    reporter.abort();
    let snap = progress.snapshot();
    println!("READY {}", snap.ready);
    let metrics = engine.metrics().await?;
    running.shutdown().await?;
    Ok(json!({
        "ready": snap.ready,
        "failed": snap.failed,
        "save_errors": save_errors,
        "skipped": snap.skipped,
        "saved": snap.saved,
        "elapsed_s": round1(elapsed.as_secs_f64()),
        "saves_done_s": round1(saves_done.as_secs_f64()),
        "uploads": metrics.uploads,
        "store_writes": store.writes.load(Ordering::Relaxed),
        "store_reads": store.reads.load(Ordering::Relaxed),
        "peak_rss_mb": round1(peak_rss_mb()),
        "peak_live_mb": round1(alloc::peak_live_mb()),
    }))
}

/// `--small`: a photo of 30 to 300 KB, log-uniform.
fn small_photo(seed: u64, id: u64) -> Spec {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id);
    Spec {
        id,
        kind: prewarm::MediaKind::Photo,
        size: log_uniform(&mut rng, 30_000, 300_000),
    }
}

/// A store far away: writes and HEADs take 150 to 800 ms here, reads 200 to 800 ms (the
/// other scenarios' `LoadStore`, which this wraps: it keeps no bytes and regenerates an
/// object when read). Each object created is appended to a log before the write is
/// acknowledged, so that a restarted bot finds what a killed one stored.
#[derive(Debug)]
struct SlowStore {
    inner: LoadStore,
    // A std lock: one short write, never held across an `.await`.
    log: Mutex<std::fs::File>,
    writes: AtomicU64,
    reads: AtomicU64,
}

impl SlowStore {
    fn open(seed: u64, url_base: String, log: &Path) -> prewarm::Result<Self> {
        let inner = LoadStore::new(seed, Some(url_base));
        if let Ok(text) = std::fs::read_to_string(log) {
            for line in text.lines() {
                let mut w = line.split_whitespace();
                let parsed = (|| {
                    let key = ObjectKey::new(w.next()?).ok()?;
                    let id = w.next()?.parse().ok()?;
                    let size = w.next()?.parse().ok()?;
                    let kind = kind_of(w.next()?.parse().ok()?);
                    Some((key, Spec { id, kind, size }))
                })();
                // A line cut short by the kill is an unacknowledged write: skipped.
                if let Some((key, s)) = parsed {
                    inner.insert(key, s);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io_error("opening the store's log", e))?;
        Ok(Self {
            inner,
            log: Mutex::new(file),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }
}

async fn far_away() {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(
        STORE_MS.0..=STORE_MS.1,
    )))
    .await;
}

#[async_trait]
impl MediaStore for SlowStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> prewarm::Result<PutOutcome> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        far_away().await;
        let outcome = self.inner.put(key, payload).await?;
        if outcome == PutOutcome::Created {
            let s = self.inner.spec(key)?;
            writeln!(
                self.log.lock().unwrap(),
                "{key} {} {} {}",
                s.id,
                s.size,
                kind_code(s.kind)
            )
            .map_err(|e| io_error("writing the store's log", e))?;
        }
        Ok(outcome)
    }

    async fn get(&self, key: &ObjectKey) -> prewarm::Result<GetResult> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn head(&self, key: &ObjectKey) -> prewarm::Result<ObjectMeta> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        far_away().await;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> prewarm::Result<()> {
        far_away().await;
        self.inner.delete(key).await
    }

    async fn url(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        // Presigning is local: no round trip.
        self.inner.url(key, expires_in, content_type).await
    }
}
