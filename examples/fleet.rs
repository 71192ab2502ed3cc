//! Fleet: B bots x K processes of each on one PostgreSQL, against the fake Bot API in a process
//! of its own, with Telegram's limits (30 messages a second per bot, 1 a second with bursts of
//! 3 per private chat). It measures coordination, not bytes: small photos, 8 private warm-up
//! chats per bot.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! cargo run --release --example fleet --features testkit,postgres -- 4:3 [--seconds S] [--only]
//!   B:K          bots and processes per bot of the first scenario (default 4:3)
//!   --seconds S  media per bot: S seconds of its chats' rate (default 25, so 200 media a bot)
//!   --only       run the B:K scenario alone
//! ```
//!
//! Scenarios, one after the other in one run, each on a fresh schema and a fresh fake:
//! 1. B bots x K processes;
//! 2. one bot, 1 process, and 3. the same bot, 3 processes, on the same 8 chats;
//! 4. one bot, 3 processes, one of them SIGKILLed a third of the way in;
//! 5. one bot, 3 processes each keeping its own in-process budget, as before the shared
//!    budget: the baseline.
//!
//! Each prints: media ready, aggregate throughput against what the chats allow (every chat
//! at its burst plus 1 a second over the run, from the fake's first request to its last
//! message), 429s, sends inside a ban, media uploaded twice; the kill scenario also how long
//! after the kill the throughput was back (a 1 s window at 90% of the 5 s before it) against
//! the engines' lease (5 s).
//!
//! Every process is this example started again: `FLEET_ROLE=fake` serves the fake and, when
//! asked on stdin, reports what it saw; `FLEET_ROLE=worker` runs one engine of one bot (its
//! cache and queue a `PostgresStore`, its uploader drawing from a `PostgresBudget`, both in
//! the scenario's schema) until the queue is empty. Workers start together: each says it is
//! ready, then waits for the word.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prewarm::db::{PostgresBudget, PostgresStore};
use prewarm::store::FsStore;
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::{
    BotId, FileIdCache, MediaKey, MediaKind, MemoryUploader, PrewarmEngine, PriorityQueue, Sha256,
    TelegramUploader,
};

const CHATS_PER_BOT: i64 = 8;
/// A private chat's burst at the fake, as Telegram's.
const CHAT_BURST: f64 = 3.0;
const LEASE: Duration = Duration::from_secs(5);
const CONCURRENCY: usize = 8;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn token(bot: usize) -> String {
    format!("{}:fleet-token-of-bot-{bot}-0123456789", 500_000 + bot)
}

fn bot_id(bot: usize) -> BotId {
    BotId::from_token(&token(bot)).expect("a valid token")
}

fn chats(bot: usize) -> Vec<i64> {
    let base = 10_000 * (bot as i64 + 1);
    (1..=CHATS_PER_BOT).map(|c| base + c).collect()
}

/// Photo `i` of `bot`: a JPEG's first bytes, then a body of its own.
fn photo(bot: usize, i: usize) -> Bytes {
    let mut b = b"\xff\xd8\xff\xe0".to_vec();
    b.extend(format!("fleet bot {bot} photo {i} {}", "p".repeat(64)).into_bytes());
    Bytes::from(b)
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    match std::env::var("FLEET_ROLE").as_deref() {
        Ok("fake") => fake().await,
        Ok("worker") => worker().await,
        _ => parent().await,
    }
}

/// The fake Bot API: prints its URL, then answers `report <media per bot>` on stdin with a
/// JSON line of what it saw, and exits when stdin closes.
async fn fake() -> Result<(), Error> {
    let bots: usize = env("FLEET_BOTS").parse()?;
    let mut builder = FakeBotApi::builder()
        .with_limits(FakeLimits::telegram())
        .with_latency(Latency::uniform(
            Duration::from_millis(20)..Duration::from_millis(80),
        ));
    for bot in 0..bots {
        builder = builder.with_bot(token(bot)).with_chats(chats(bot));
    }
    let fake = builder.start().await?;
    let (start, start_wall) = (tokio::time::Instant::now(), wall_ms());
    println!("url {}", fake.base_url());
    std::io::stdout().flush()?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    let media: usize = line
        .trim()
        .strip_prefix("report ")
        .ok_or("expected `report <media per bot>`")?
        .parse()?;
    let events = fake.events();
    let stats = fake.stats();
    let to_wall = |at: tokio::time::Instant| {
        start_wall + at.saturating_duration_since(start).as_millis() as u64
    };
    let first_ms = events.first().map_or(0, |e| to_wall(e.at));
    let sent_ms: Vec<u64> = events
        .iter()
        .filter(|e| e.status == 200 && e.method.starts_with("send"))
        .map(|e| to_wall(e.at))
        .collect();
    let mut twice = 0;
    for bot in 0..bots {
        for i in 0..media {
            if fake.uploads_of(&Sha256::of(&photo(bot, i))).succeeded > 1 {
                twice += 1;
            }
        }
    }
    let report = serde_json::json!({
        "first_ms": first_ms,
        "sent_ms": sent_ms,
        "too_many_requests": stats.too_many_requests,
        "violations": stats.violations,
        "twice": twice,
    });
    println!("{report}");
    std::io::stdout().flush()?;
    Ok(())
}

/// One engine of bot `FLEET_BOT`: says `ready`, waits for a line on stdin, warms until the
/// queue is empty.
async fn worker() -> Result<(), Error> {
    let bot: usize = env("FLEET_BOT").parse()?;
    let (url, schema) = (env("DATABASE_URL"), env("FLEET_SCHEMA"));
    // Few connections (a dozen processes share one server's 100): the limiter asks its
    // budget one request at a time, so one connection serves it.
    let store = PostgresStore::builder(&url)
        .with_schema(&schema)
        .with_pool_size(3)
        .connect()
        .await?;
    let budget = PostgresBudget::builder(&url)
        .with_schema(&schema)
        .with_pool_size(1)
        .connect()
        .await?;
    let mut telegram = TelegramUploader::builder()
        .with_token(token(bot))
        .with_api_base(env("FLEET_API"))
        .with_warmup_chats(chats(bot));
    if std::env::var("FLEET_LOCAL_BUDGET").is_err() {
        telegram = telegram.with_rate_budget(Arc::new(budget));
    }
    let telegram = telegram.build()?;
    let queue: Arc<dyn PriorityQueue> = Arc::new(store.clone());
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(FsStore::open(env("FLEET_MEDIA")).await?))
        .with_cache(Arc::new(store))
        .with_queue(queue.clone())
        .with_uploader(Arc::new(telegram))
        .with_concurrency(CONCURRENCY)
        .with_lease(LEASE)
        .with_poll_interval(Duration::from_millis(200))
        .build()?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go)).await??;
    let running = engine.spawn();
    while queue.depth().await?.pending() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await?;
    Ok(())
}

struct Scenario {
    name: String,
    bots: usize,
    procs: usize,
    kill: bool,
    /// Each process keeps its own budget (the baseline).
    local: bool,
}

/// What one scenario measured.
#[derive(Debug)]
struct Measured {
    media: usize,
    ready: usize,
    sent: usize,
    span_s: f64,
    allowed: f64,
    too_many_requests: u64,
    violations: u64,
    twice: u64,
    recovery_s: Option<f64>,
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.sent as f64 / self.allowed
    }

    fn rate(&self) -> f64 {
        self.sent as f64 / self.span_s
    }
}

fn spawn_self(envs: &[(&str, String)]) -> Result<Child, Error> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Ok(cmd.spawn()?)
}

fn read_line(child: &mut Child) -> Result<String, Error> {
    let out = child.stdout.as_mut().ok_or("no stdout")?;
    // One byte at a time: the child's later lines stay in the pipe for the next read.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match std::io::Read::read(out, &mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8(line)?)
}

fn say(stdin: &mut Option<ChildStdin>, line: &str) -> Result<(), Error> {
    let stdin = stdin.as_mut().ok_or("no stdin")?;
    writeln!(stdin, "{line}")?;
    stdin.flush()?;
    Ok(())
}

async fn run(url: &str, s: &Scenario, media: usize) -> Result<Measured, Error> {
    let schema = format!("fleet_{}_{:08x}", std::process::id(), fastrand::u32(..));
    let dir = tempfile::tempdir()?;
    let mut fake = spawn_self(&[
        ("FLEET_ROLE", "fake".into()),
        ("FLEET_BOTS", s.bots.to_string()),
    ])?;
    let api = read_line(&mut fake)?
        .strip_prefix("url ")
        .ok_or("the fake did not say its URL")?
        .to_owned();

    // The backlog, saved before any worker starts.
    let store = PostgresStore::builder(url)
        .with_schema(&schema)
        .connect()
        .await?;
    let mut saver = PrewarmEngine::builder()
        .with_store(Arc::new(FsStore::open(dir.path()).await?))
        .with_cache(Arc::new(store.clone()))
        .with_queue(Arc::new(store.clone()));
    for bot in 0..s.bots {
        saver = saver.with_uploader(Arc::new(MemoryUploader::new(bot_id(bot))));
    }
    let saver = saver.build()?;
    let mut keys: Vec<MediaKey> = Vec::new();
    for i in 0..media {
        for bot in 0..s.bots {
            keys.push(
                saver
                    .save(&bot_id(bot), photo(bot, i), MediaKind::Photo)
                    .await?,
            );
        }
    }

    let mut workers = Vec::new();
    for bot in 0..s.bots {
        for _ in 0..s.procs {
            workers.push(spawn_self(&[
                ("FLEET_ROLE", "worker".into()),
                ("FLEET_BOT", bot.to_string()),
                ("FLEET_SCHEMA", schema.clone()),
                ("FLEET_API", api.clone()),
                ("FLEET_MEDIA", dir.path().display().to_string()),
                ("DATABASE_URL", url.to_owned()),
                (
                    if s.local {
                        "FLEET_LOCAL_BUDGET"
                    } else {
                        "FLEET_SHARED_BUDGET"
                    },
                    "1".into(),
                ),
            ])?);
        }
    }
    for w in &mut workers {
        if read_line(w)? != "ready" {
            return Err("a worker did not start".into());
        }
    }
    for w in &mut workers {
        say(&mut w.stdin, "go")?;
    }
    let mut killed_at = None;
    if s.kill {
        let total = keys.len() as u64;
        while PriorityQueue::depth(&store).await?.pending() > total * 2 / 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        workers[0].kill()?;
        killed_at = Some(wall_ms());
        workers[0].wait()?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for w in &mut workers {
        while w.try_wait()?.is_none() {
            if Instant::now() > deadline {
                return Err("the fleet did not finish in 10 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut ready = 0;
    for key in &keys {
        if FileIdCache::get(&store, key).await?.is_some() {
            ready += 1;
        }
    }
    say(&mut fake.stdin, &format!("report {media}"))?;
    let report: serde_json::Value = serde_json::from_str(&read_line(&mut fake)?)?;
    drop(fake.stdin.take());
    fake.wait()?;
    drop_schema(url, &schema).await?;

    let num = |k: &str| report[k].as_u64().unwrap_or(0);
    let sent_ms: Vec<u64> = report["sent_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    let first = num("first_ms");
    let last = sent_ms.iter().copied().max().unwrap_or(first);
    let span_s = (last.saturating_sub(first) as f64 / 1000.0).max(0.001);
    let chats = (s.bots as f64) * CHATS_PER_BOT as f64;
    Ok(Measured {
        media: keys.len(),
        ready,
        sent: sent_ms.len(),
        span_s,
        allowed: chats * (CHAT_BURST + span_s),
        too_many_requests: num("too_many_requests"),
        violations: num("violations"),
        twice: num("twice"),
        recovery_s: killed_at.map(|k| recovery(&sent_ms, k)),
    })
}

/// Seconds after `kill` until a 1 s window holds 90% of the sends a second of the 5 s before.
fn recovery(sent_ms: &[u64], kill: u64) -> f64 {
    let count = |from: u64, to: u64| sent_ms.iter().filter(|&&t| t >= from && t < to).count();
    let before = count(kill.saturating_sub(5_000), kill) as f64 / 5.0;
    let last = sent_ms.iter().copied().max().unwrap_or(kill);
    let mut t = kill;
    while t + 1_000 <= last {
        if count(t, t + 1_000) as f64 >= 0.9 * before {
            return (t - kill) as f64 / 1000.0;
        }
        t += 100;
    }
    f64::INFINITY
}

async fn drop_schema(url: &str, schema: &str) -> Result<(), Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

async fn parent() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut shape = (4, 3);
    let mut seconds = 25usize;
    let mut only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().ok_or("--seconds takes a number")?.parse()?,
            "--only" => only = true,
            bk => {
                let (b, k) = bk
                    .split_once(':')
                    .ok_or("expected BOTS:PROCESSES, e.g. 4:3")?;
                shape = (b.parse()?, k.parse()?);
            }
        }
    }
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")?;
    let media = seconds * CHATS_PER_BOT as usize;
    let mut scenarios = vec![Scenario {
        name: format!("{} bots x {} processes", shape.0, shape.1),
        bots: shape.0,
        procs: shape.1,
        kill: false,
        local: false,
    }];
    if !only {
        for (name, procs, kill, local) in [
            ("1 bot x 1 process", 1, false, false),
            ("1 bot x 3 processes", 3, false, false),
            ("1 bot x 3 processes, one SIGKILLed", 3, true, false),
            (
                "baseline: 1 bot x 3 processes, a budget each",
                3,
                false,
                true,
            ),
        ] {
            scenarios.push(Scenario {
                name: name.to_owned(),
                bots: 1,
                procs,
                kill,
                local,
            });
        }
    }
    println!(
        "{media} photos a bot, {CHATS_PER_BOT} private warm-up chats a bot (1/s, bursts of 3), \
         30/s per bot; lease {LEASE:?}\n"
    );
    println!(
        "| scenario | media ready | sends/s | of what the chats allow | 429s | sends inside a ban | uploaded twice | back after the kill |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in &scenarios {
        let m = run(&url, s, media).await?;
        println!(
            "| {} | {}/{} | {:.2} | {:.1}% | {} | {} | {} | {} |",
            s.name,
            m.ready,
            m.media,
            m.rate(),
            100.0 * m.ratio(),
            m.too_many_requests,
            m.violations,
            m.twice,
            m.recovery_s.map_or("-".to_owned(), |r| format!(
                "{r:.1} s (lease {} s)",
                LEASE.as_secs()
            )),
        );
    }
    Ok(())
}
