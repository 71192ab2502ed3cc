//! Several processes of one bot on one PostgreSQL, against the crate's fake Bot API: together
//! they keep to the bot's limits (no 429, no send inside a ban), upload each media once, and
//! survive one of them being killed.
//!
//! Each process is this test binary again, running `fleet_child_entry`: an engine whose
//! cache and queue are a `PostgresStore` and whose Telegram uploader draws from a
//! `PostgresBudget`, both in the run's own schema. The parent saves the media first, then
//! starts the processes, which warm until the queue is empty.
#![cfg(all(feature = "postgres", feature = "testkit"))]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::conformance;
use prewarm::db::{PostgresBudget, PostgresStore};
use prewarm::store::FsStore;
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::upload::RateLimits;
use prewarm::{
    BotId, FileIdCache, MediaKey, MediaKind, MemoryUploader, PrewarmEngine, PriorityQueue,
    TelegramUploader,
};

const TOKEN: &str = "777000:fleet-test-token-0123456789";
const CHATS: [i64; 4] = [2001, 2002, 2003, 2004];
/// Engines' lease: a killed process's jobs come back this long after.
const LEASE: Duration = Duration::from_secs(2);
const CONCURRENCY: usize = 4;

async fn connect(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::builder(url)
        .with_schema(schema)
        .with_pool_size(4)
        .connect()
        .await
        .expect("connect the store")
}

async fn budget(url: &str, schema: &str) -> PostgresBudget {
    PostgresBudget::builder(url)
        .with_schema(schema)
        .with_pool_size(2)
        .connect()
        .await
        .expect("connect the budget")
}

#[tokio::test]
async fn postgres_budget_conforms() {
    let Some(url) = support::database_url("postgres_budget_conforms") else {
        return;
    };
    let schema = support::unique_schema("budget");
    // Two handles on one schema, as two processes hold.
    let (a, b) = (budget(&url, &schema).await, budget(&url, &schema).await);
    conformance::budget::run_all(&a, &b).await;
    support::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn a_bad_schema_name_is_a_config_error_naming_the_fix() {
    let err = PostgresBudget::builder("postgres://postgres@127.0.0.1:5432/test")
        .with_schema("Robert'); DROP TABLE")
        .connect()
        .await
        .expect_err("refused");
    assert!(matches!(err, prewarm::Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("lowercase ASCII"), "{err}");
}

/// The bytes of photo `i`: a JPEG's first bytes, then a body of its own.
fn photo(i: usize) -> Bytes {
    let mut b = b"\xff\xd8\xff\xe0".to_vec();
    b.extend(format!("fleet photo {i} {}", "p".repeat(32)).into_bytes());
    Bytes::from(b)
}

fn bot() -> BotId {
    BotId::from_token(TOKEN).expect("bot id")
}

/// Saves `n` photos into the run's store and queue, without warming them.
async fn save_all(url: &str, schema: &str, media: &Path, n: usize) -> Vec<MediaKey> {
    let store = connect(url, schema).await;
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(FsStore::open(media).await.expect("fs store")))
        .with_cache(Arc::new(store.clone()))
        .with_queue(Arc::new(store))
        .with_uploader(Arc::new(MemoryUploader::new(bot())))
        .build()
        .expect("engine");
    let mut keys = Vec::new();
    for i in 0..n {
        keys.push(
            engine
                .save(&bot(), photo(i), MediaKind::Photo)
                .await
                .expect("save"),
        );
    }
    keys
}

fn spawn(url: &str, schema: &str, api: &str, media: &Path) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--ignored",
            "--exact",
            "fleet_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLEET_CHILD", "1")
        .env("DATABASE_URL", url)
        .env("FLEET_SCHEMA", schema)
        .env("FLEET_API", api)
        .env("FLEET_MEDIA", media)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn a fleet process")
}

/// Waits for every child to exit by itself, up to `limit`.
fn wait_all(children: &mut [Child], limit: Duration) {
    let start = Instant::now();
    loop {
        let done = children
            .iter_mut()
            .all(|c| c.try_wait().expect("try_wait").is_some());
        if done {
            return;
        }
        if start.elapsed() > limit {
            for c in children.iter_mut() {
                let _ = c.kill();
            }
            panic!("the fleet did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One process of the fleet: warms until the queue is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the fleet tests as a child process"]
async fn fleet_child_entry() {
    if std::env::var("FLEET_CHILD").is_err() {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let (url, schema) = (env("DATABASE_URL"), env("FLEET_SCHEMA"));
    let store = connect(&url, &schema).await;
    let telegram = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(env("FLEET_API"))
        .with_warmup_chats(CHATS)
        .with_rate_limits(RateLimits::default())
        .with_rate_budget(Arc::new(budget(&url, &schema).await))
        .build()
        .expect("uploader");
    let queue: Arc<dyn PriorityQueue> = Arc::new(store.clone());
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(
            FsStore::open(env("FLEET_MEDIA")).await.expect("fs"),
        ))
        .with_cache(Arc::new(store))
        .with_queue(queue.clone())
        .with_uploader(Arc::new(telegram))
        .with_concurrency(CONCURRENCY)
        .with_lease(LEASE)
        .with_poll_interval(Duration::from_millis(200))
        .build()
        .expect("engine");
    let running = engine.spawn();
    while queue.depth().await.expect("depth").pending() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await.expect("shutdown");
}

struct Outcome {
    ready: usize,
    extra_uploads: u32,
    too_many_requests: u64,
    violations: u64,
}

/// Every media's file_id from the shared cache, checked against the fake; and what the fake
/// counted.
async fn outcome(url: &str, schema: &str, fake: &FakeBotApi, keys: &[MediaKey]) -> Outcome {
    let cache = connect(url, schema).await;
    let mut ready = 0;
    let mut extra_uploads = 0;
    for key in keys {
        if let Some(id) = FileIdCache::get(&cache, key).await.expect("cache get") {
            let file = fake.file(id.as_str()).expect("a file_id the fake issued");
            assert_eq!(file.sha256, key.sha256, "the file_id is this media's");
            ready += 1;
        }
        let uploads = fake.uploads_of(&key.sha256);
        assert!(uploads.succeeded >= 1, "{key} was uploaded: {uploads:?}");
        extra_uploads += uploads.succeeded - 1;
    }
    let stats = fake.stats();
    Outcome {
        ready,
        extra_uploads,
        too_many_requests: stats.too_many_requests,
        violations: stats.violations,
    }
}

async fn fake() -> FakeBotApi {
    FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(CHATS)
        .with_limits(FakeLimits::telegram())
        .with_latency(Latency::uniform(
            Duration::from_millis(5)..Duration::from_millis(30),
        ))
        .start()
        .await
        .expect("fake")
}

/// A run of three processes on a fresh schema, `kill` first SIGKILLing one of them once 8
/// media are warm; answers what the fake saw once the others finished.
async fn run_three(test: &str, kill: bool) -> Option<Outcome> {
    let url = support::database_url(test)?;
    let schema = support::unique_schema("fleet");
    let media = tempfile::tempdir().expect("dir");
    let fake = fake().await;
    let keys = save_all(&url, &schema, media.path(), 36).await;
    let mut children: Vec<Child> = (0..3)
        .map(|_| spawn(&url, &schema, &fake.base_url(), media.path()))
        .collect();
    if kill {
        // Mid-run: some media warmed, most not.
        let start = Instant::now();
        while fake.stats().messages < 8 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the fleet started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        children[0].kill().expect("SIGKILL");
        let _ = children[0].wait();
    }
    wait_all(&mut children, Duration::from_secs(45));
    let out = outcome(&url, &schema, &fake, &keys).await;
    assert_eq!(out.ready, keys.len(), "every media is ready");
    fake.shutdown().await;
    support::drop_schema(&url, &schema).await;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_of_one_bot_keep_to_its_limits_together() {
    let Some(out) = run_three("three_processes_of_one_bot", false).await else {
        return;
    };
    assert_eq!(out.violations, 0, "no send inside a ban");
    assert_eq!(
        out.too_many_requests, 0,
        "the three kept to the bot's and the chats' limits in sum"
    );
    assert_eq!(out.extra_uploads, 0, "no media uploaded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_run_hands_its_work_back() {
    let Some(out) = run_three("a_process_killed_mid_run", true).await else {
        return;
    };
    assert_eq!(out.violations, 0, "no send inside a ban");
    // An upload the killed process had on the wire is done again once its lease ends.
    assert!(
        out.extra_uploads <= CONCURRENCY as u32,
        "{} media uploaded twice: more than the killed process had in flight",
        out.extra_uploads
    );
}
