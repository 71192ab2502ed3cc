//! The durable backends (SQLite, PostgreSQL) against the conformance suites, and their
//! durability: crash recovery under SIGKILL, many instances sharing one database.
//!
//! PostgreSQL tests read `DATABASE_URL`; each uses its own schema so they run in parallel.
//! Unset, they fail when `CI=true` and skip with a notice elsewhere.

mod support;

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prewarm::cache::TieredCache;
use prewarm::conformance;
use prewarm::db::SqliteStore;
use prewarm::queue::QueueDepth;
use prewarm::{MediaKey, MediaKind, PriorityQueue, Sha256};

use support::child::{bot, media_bytes, open_db};
use support::{read_log, spawn_child};

/// The child process of the crash and many-instance tests (it re-runs this binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash and many-instance tests, started by them"]
async fn child_process_entry() {
    assert!(
        std::env::var("PREWARM_CHILD").is_ok(),
        "started by the crash tests with PREWARM_CHILD set, not by hand"
    );
    support::child::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiered_cache_over_sqlite_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("cache.db"))
        .await
        .expect("open");
    let tiered = TieredCache::new(Arc::new(store), 1_000).expect("tiered");
    conformance::cache::run_all(&tiered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_cache_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("cache.db"))
        .await
        .expect("open");
    conformance::cache::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_queue_conforms() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::queue::run_all(|| {
        let path = dir.path().join(format!("q{}.db", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(path).await.expect("open")) as Arc<dyn PriorityQueue> }
    })
    .await;
}

/// Another process holding the file's write lock past the busy timeout: calls fail with a
/// retryable error and change nothing, and work again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_writer_is_a_retryable_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locked.db");
    let store = SqliteStore::builder(&path)
        .with_busy_timeout(Duration::from_millis(50))
        .open()
        .await
        .expect("open");
    let other = rusqlite::Connection::open(&path).expect("second connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let now = prewarm::Timestamp::now();
    let job = prewarm::Job::new(key_of(1), 10, now);
    let err = store.push(job.clone(), now).await.expect_err("locked");
    assert!(err.is_retryable(), "{err}");
    other.execute_batch("ROLLBACK").expect("release");
    assert_eq!(store.depth().await.expect("depth"), QueueDepth::default());
    assert_eq!(
        store.push(job, now).await.expect("push"),
        prewarm::queue::PushOutcome::Queued
    );
}

#[tokio::test]
async fn open_picks_the_backend_and_names_bad_targets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("picked.db");
    let db = prewarm::db::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("a file path opens SQLite");
    assert!(format!("{:?}", db.queue).contains("SqliteStore"));
    assert!(path.exists());
    let err = prewarm::db::open("  ").await.expect_err("empty");
    assert!(matches!(err, prewarm::Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("PREWARM_DB"), "{err}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_config_errors_name_the_fix_and_hide_the_password() {
    use prewarm::db::PostgresStore;
    let secret = "hunter2-very-secret";
    let builder = PostgresStore::builder(format!("postgres://u:{secret}@127.0.0.1:1/db?bogus=x"));
    assert!(
        !format!("{builder:?}").contains(secret),
        "Debug hides the URL"
    );
    let err = builder.connect().await.expect_err("malformed URL");
    let text = err.to_string();
    assert!(matches!(err, prewarm::Error::Config { .. }), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(
        text.contains("postgres://user"),
        "names the expected form: {text}"
    );

    let err = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/test")
        .with_schema("Bad-Name")
        .connect()
        .await
        .expect_err("bad schema");
    assert!(err.to_string().contains("lowercase"), "{err}");

    // Unreachable: a retryable backend error, without the password.
    let err = PostgresStore::builder(format!("postgres://u:{secret}@127.0.0.1:1/db"))
        .connect()
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains(secret), "{err}");
}

fn key_of(i: usize) -> MediaKey {
    MediaKey::new(bot(), Sha256::of(&media_bytes(i)), MediaKind::Photo)
}

fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits until the child has logged `more` uploads past `from` (it is mid-run), then a random
/// while longer, then SIGKILLs it.
fn kill_mid_run(child: &mut Child, log: &Path, from: usize, more: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(log) < from + more {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the child exited before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the child logged no upload in 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the child finished before it was killed: make its run longer"
    );
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
}

fn wait_success(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not finish in 180 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CRASH_MEDIA: usize = 300;

/// Warms 300 media in a child process on `db`, SIGKILLs it mid-run three times, restarts it,
/// and checks that nothing was lost.
async fn crash_and_recover(db: &str, dir: &Path) {
    let log = dir.join("uploads.log");
    let envs = |run: &str| {
        vec![
            ("CHILD_DB", db.to_owned()),
            ("CHILD_STORE", dir.join("media").display().to_string()),
            ("CHILD_LOG", log.display().to_string()),
            ("CHILD_RUN", run.to_owned()),
            ("CHILD_N", CRASH_MEDIA.to_string()),
            ("CHILD_CONCURRENCY", "4".to_owned()),
        ]
    };
    for round in 0..3 {
        let before = log_lines(&log);
        let mut child = spawn_child(&envs(&format!("killed{round}")));
        kill_mid_run(&mut child, &log, before, 10);
    }
    let before_final = log_lines(&log);
    assert!(
        before_final < CRASH_MEDIA,
        "the killed runs uploaded everything ({before_final}): the kills came too late"
    );
    eprintln!("{db}: {before_final} uploads logged by the three killed runs");
    let mut child = spawn_child(&envs("final"));
    wait_success(&mut child, "the restarted child");

    let (cache, queue) = open_db(db).await;
    assert_eq!(
        queue.depth().await.expect("depth"),
        QueueDepth::default(),
        "no job is left queued, delayed, claimed or dead"
    );
    let uploads = read_log(&log);
    for i in 0..CRASH_MEDIA {
        let key = key_of(i);
        let cached = cache
            .get(&key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("media {i} was lost: not ready"));
        let ids = uploads
            .get(&key.sha256.to_hex())
            .unwrap_or_else(|| panic!("media {i} is ready but was never uploaded"));
        assert_eq!(
            cached.as_str(),
            ids.last().expect("one upload at least"),
            "media {i}: the cached file_id is not the one from its last successful upload"
        );
        assert!(
            queue.get(&key).await.expect("get job").is_none(),
            "media {i} kept a job"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("prewarm.db").display());
    crash_and_recover(&db, dir.path()).await;
}

#[cfg(feature = "postgres")]
mod pg {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prewarm::PriorityQueue;
    use prewarm::conformance;
    use prewarm::db::PostgresStore;

    use crate::support::{database_url, drop_schema, unique_schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_cache_conforms() {
        let Some(url) = database_url("postgres_cache_conforms") else {
            return;
        };
        let schema = unique_schema("cache");
        let store = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        conformance::cache::run_all(&store).await;
        drop(store);
        drop_schema(&url, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn tiered_cache_over_postgres_conforms() {
        let Some(url) = database_url("tiered_cache_over_postgres_conforms") else {
            return;
        };
        let schema = unique_schema("cache");
        let store = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        let tiered = prewarm::cache::TieredCache::new(Arc::new(store), 1_000).expect("tiered");
        conformance::cache::run_all(&tiered).await;
        drop(tiered);
        drop_schema(&url, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_queue_conforms() {
        let Some(url) = database_url("postgres_queue_conforms") else {
            return;
        };
        let base = unique_schema("queue");
        let n = Arc::new(AtomicUsize::new(0));
        conformance::queue::run_all(|| {
            let schema = format!("{base}_{}", n.fetch_add(1, Ordering::Relaxed));
            let url = url.clone();
            async move {
                Arc::new(
                    PostgresStore::builder(&url)
                        .with_schema(schema)
                        .with_pool_size(8)
                        .connect()
                        .await
                        .expect("connect"),
                ) as Arc<dyn PriorityQueue>
            }
        })
        .await;
        for i in 0..n.load(Ordering::Relaxed) {
            drop_schema(&url, &format!("{base}_{i}")).await;
        }
    }
}

#[cfg(feature = "postgres")]
mod pg_durability {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use prewarm::db::PostgresStore;
    use prewarm::queue::QueueDepth;
    use prewarm::queue::{JobState, PushOutcome};
    use prewarm::{BotId, Job, MediaKey, MediaKind, PriorityQueue, Sha256, Timestamp};

    use super::{crash_and_recover, key_of, kill_mid_run, log_lines, wait_success};
    use crate::support::child::open_db;
    use crate::support::{database_url, drop_schema, read_log, spawn_child, unique_schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_survives_sigkill() {
        let Some(url) = database_url("postgres_survives_sigkill") else {
            return;
        };
        let schema = unique_schema("crash");
        let dir = tempfile::tempdir().expect("temp dir");
        crash_and_recover(&format!("pg:{schema}"), dir.path()).await;
        drop_schema(&url, &schema).await;
    }

    /// Three engines in three processes share one schema and warm 1,000 media; one is
    /// SIGKILLed mid-run. Everything gets ready; only an upload the killed instance made and
    /// could not record is ever repeated.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_instances_share_postgres_and_survive_one_kill() {
        const N: usize = 1_000;
        const CONCURRENCY: usize = 8;
        let Some(url) = database_url("three_instances_share_postgres") else {
            return;
        };
        let schema = unique_schema("many");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("pg:{schema}");
        // Migrate once up front so the children start on an existing schema (they would also
        // cope without: the advisory lock orders their migrations).
        drop(open_db(&db).await);
        // Each instance has its own media folder (an FsStore belongs to one process; instances
        // on many machines would share R2), filled before any starts: another instance may
        // claim a media's job before this one has saved it.
        for i in 0..3 {
            let store = prewarm::store::FsStore::open(dir.path().join(format!("media{i}")))
                .await
                .expect("fs store");
            for m in 0..N {
                prewarm::MediaStoreExt::put_bytes(&store, crate::media_bytes(m))
                    .await
                    .expect("prefill");
            }
        }
        let barrier = dir.path().join("go");
        let logs: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("uploads{i}.log")))
            .collect();
        let mut children: Vec<_> = (0..3)
            .map(|i| {
                spawn_child(&[
                    ("CHILD_DB", db.clone()),
                    // A folder each: an FsStore belongs to one process (instances on many
                    // machines would share R2 instead).
                    (
                        "CHILD_STORE",
                        dir.path().join(format!("media{i}")).display().to_string(),
                    ),
                    ("CHILD_LOG", logs[i].display().to_string()),
                    ("CHILD_RUN", format!("instance{i}")),
                    ("CHILD_N", N.to_string()),
                    ("CHILD_CONCURRENCY", CONCURRENCY.to_string()),
                    ("CHILD_BARRIER", barrier.display().to_string()),
                ])
            })
            .collect();
        // All three start warming at once, so the work is shared and the kill lands mid-run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while (0..3).any(|i| !dir.path().join(format!("go.instance{i}")).exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the instances did not get ready"
            );
            for c in &mut children {
                assert!(
                    c.try_wait().expect("try_wait").is_none(),
                    "an instance died early"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&barrier, b"go").expect("go");
        kill_mid_run(&mut children[0], &logs[0], 0, 20);
        wait_success(&mut children[1], "instance 1");
        wait_success(&mut children[2], "instance 2");

        let (cache, queue) = open_db(&db).await;
        assert_eq!(
            queue.depth().await.expect("depth"),
            QueueDepth::default(),
            "dead: {:?}",
            queue.dead(5).await
        );
        let per_log: Vec<_> = logs.iter().map(|l| read_log(l)).collect();
        assert!(log_lines(&logs[0]) >= 20, "the killed instance did work");
        assert!(
            log_lines(&logs[1]) > 0 && log_lines(&logs[2]) > 0,
            "the work was shared"
        );
        let mut repeated = 0;
        for i in 0..N {
            let key = key_of(i);
            let sha = key.sha256.to_hex();
            let cached = cache
                .get(&key)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("media {i} was lost"));
            let count = |l: &HashMap<String, Vec<String>>| l.get(&sha).map_or(0, Vec::len);
            let (killed, survivors) = (count(&per_log[0]), count(&per_log[1]) + count(&per_log[2]));
            assert!(
                killed + survivors >= 1,
                "media {i} is ready but was never uploaded"
            );
            assert!(
                survivors <= 1,
                "media {i} was uploaded {survivors} times by live instances"
            );
            assert!(
                killed <= 1,
                "media {i} was uploaded twice by the killed instance"
            );
            if killed + survivors > 1 {
                repeated += 1;
            }
            let all: Vec<&String> = per_log
                .iter()
                .filter_map(|l| l.get(&sha))
                .flatten()
                .collect();
            assert!(
                all.iter().any(|id| id.as_str() == cached.as_str()),
                "media {i}: the cached file_id {cached} was never uploaded"
            );
            if survivors == 1 {
                let live = per_log[1]
                    .get(&sha)
                    .or(per_log[2].get(&sha))
                    .expect("logged");
                assert_eq!(
                    cached.as_str(),
                    live[0],
                    "media {i}: the last upload's id is cached"
                );
            }
        }
        eprintln!(
            "uploads logged: killed {}, survivors {} + {}; {repeated} media uploaded twice",
            log_lines(&logs[0]),
            log_lines(&logs[1]),
            log_lines(&logs[2])
        );
        // Only uploads in flight in the killed instance (at most its concurrency) repeat.
        assert!(
            repeated <= CONCURRENCY,
            "{repeated} media were uploaded twice; at most {CONCURRENCY} were in flight when \
             the instance was killed"
        );
        drop(queue);
        drop(cache);
        drop_schema(&url, &schema).await;
    }

    /// Pushes arriving together (batched into one statement by the store) keep the contract:
    /// one job per media, the first push queues or revives, later ones merge their demand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_pushes_merge_and_revive_like_sequential_ones() {
        let Some(url) = database_url("concurrent_pushes_merge_and_revive") else {
            return;
        };
        let schema = unique_schema("pushes");
        let q = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        let bot = BotId::new("pushes").expect("bot");
        let key =
            |i: u32| MediaKey::new(bot.clone(), Sha256::of(&i.to_le_bytes()), MediaKind::Photo);
        let now = Timestamp::now();
        let lease = std::time::Duration::from_secs(60);
        // Ten dead jobs.
        for i in 0..10 {
            q.push(Job::new(key(i), 10, now), now).await.expect("push");
        }
        for c in q
            .claim("w", std::slice::from_ref(&bot), 10, lease, now)
            .await
            .expect("claim")
            .jobs
        {
            q.fail(&c.lease, "boom").await.expect("fail");
        }
        assert_eq!(q.depth().await.expect("depth").dead, 10);
        // Dead keys twice, 100 new keys once, 50 new keys twice (the second demanded).
        let mut pushes = Vec::new();
        for i in 0..10 {
            pushes.push((i, false));
            pushes.push((i, true));
        }
        for i in 10..110 {
            pushes.push((i, false));
        }
        for i in 110..160 {
            pushes.push((i, false));
            pushes.push((i, true));
        }
        let outcomes = futures::future::join_all(pushes.iter().map(|&(i, demand)| {
            let q = q.clone();
            let mut job = Job::new(key(i), 10, now);
            job.demand = demand;
            async move { (i, q.push(job, now).await.expect("push")) }
        }))
        .await;
        let mut by_key: HashMap<u32, Vec<PushOutcome>> = HashMap::new();
        for (i, o) in outcomes {
            by_key.entry(i).or_default().push(o);
        }
        for (i, mut got) in by_key {
            got.sort_by_key(|o| format!("{o:?}"));
            let want = match i {
                0..10 => vec![PushOutcome::Merged, PushOutcome::Revived],
                10..110 => vec![PushOutcome::Queued],
                _ => vec![PushOutcome::Merged, PushOutcome::Queued],
            };
            assert_eq!(got, want, "media {i}");
            let info = q.get(&key(i)).await.expect("get").expect("a job");
            assert_eq!(info.state, JobState::Queued, "media {i}");
            if i >= 110 {
                assert!(
                    info.job.demand,
                    "media {i}: the merged push's demand is kept"
                );
            }
        }
        let depth = q.depth().await.expect("depth");
        assert_eq!((depth.queued, depth.dead), (160, 0));
        drop(q);
        drop_schema(&url, &schema).await;
    }

    /// Sixteen claimers over four pools (as four instances would) never receive one job twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_over_many_pools_never_share_a_job() {
        const JOBS: usize = 2_000;
        let Some(url) = database_url("concurrent_claimers_over_many_pools") else {
            return;
        };
        let schema = unique_schema("stress");
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(
                PostgresStore::builder(&url)
                    .with_schema(&schema)
                    .with_pool_size(4)
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        let bot = BotId::new("stress").expect("bot");
        let now = Timestamp::now();
        let mut keys = HashSet::new();
        for i in 0..JOBS {
            let key = MediaKey::new(bot.clone(), Sha256::of(&i.to_le_bytes()), MediaKind::Photo);
            keys.insert(key.clone());
            stores[i % 4]
                .push(Job::new(key, 100 + i as u64, now), now)
                .await
                .expect("push");
        }
        let tasks = (0..16).map(|w| {
            let q: Arc<dyn PriorityQueue> = Arc::new(stores[w % 4].clone());
            let bot = bot.clone();
            tokio::spawn(async move {
                let owner = format!("claimer-{w}");
                let mut got = Vec::new();
                loop {
                    let max = fastrand::usize(1..=32);
                    let claim = q
                        .claim(
                            &owner,
                            std::slice::from_ref(&bot),
                            max,
                            std::time::Duration::from_secs(60),
                            now,
                        )
                        .await
                        .expect("claim");
                    assert!(claim.jobs.len() <= max, "claimed more than asked");
                    if claim.jobs.is_empty() {
                        break;
                    }
                    for c in claim.jobs {
                        q.complete(&c.lease).await.expect("complete own job");
                        got.push(c.job.key);
                    }
                }
                got
            })
        });
        let mut seen = HashSet::new();
        for handle in futures::future::join_all(tasks).await {
            for key in handle.expect("claimer") {
                assert!(seen.insert(key), "a job was handed to two claimers");
            }
        }
        assert_eq!(seen, keys, "every job was claimed exactly once");
        drop(stores);
        drop_schema(&url, &schema).await;
    }
}
