//! The durable backends (SQLite, PostgreSQL) against the conformance suites, and their
//! behaviour under concurrency. The crash tests (SIGKILL, many instances sharing one
//! database) are in `tests/crash.rs`.
//!
//! PostgreSQL tests read `DATABASE_URL`; each uses its own schema so they run in parallel.
//! Unset, they fail when `CI=true` and skip with a notice elsewhere.

mod support;

use std::sync::Arc;
use std::time::Duration;

use prewarm::cache::TieredCache;
use prewarm::conformance;
use prewarm::db::SqliteStore;
use prewarm::queue::QueueDepth;
use prewarm::upload::{Delivered, JournalEntry, UploadJournal};
use prewarm::{BotId, MediaKey, MediaKind, PriorityQueue, Sha256};

use support::child::{bot, media_bytes};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journal_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("journal.db"))
        .await
        .expect("open");
    conformance::journal::run_all(&store).await;
}

/// The crash case: a send journaled by a store that is then dropped (its process gone) is
/// there, as written, for the store that opens the file next; so is a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journal_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.db");
    let (pending, delivered) = (journal_entry(1), journal_entry(2));
    let store = SqliteStore::open(&path).await.expect("open");
    store.begin(&pending).await.expect("begin");
    store.begin(&delivered).await.expect("begin");
    store
        .deliver(&delivered.media, &journal_delivery())
        .await
        .expect("deliver");
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        reopened.entry(&pending.media).await.expect("entry"),
        Some(pending.clone()),
        "a begun send outlives its store"
    );
    assert_eq!(
        reopened.pending(&pending.media.bot).await.expect("pending"),
        vec![pending]
    );
    assert_eq!(
        reopened.entry(&delivered.media).await.expect("entry"),
        Some(JournalEntry {
            delivered: Some(journal_delivery()),
            ..delivered
        }),
        "a delivery outlives its store"
    );
}

fn journal_entry(i: usize) -> JournalEntry {
    JournalEntry {
        media: MediaKey::new(
            BotId::new("journal_reopen").expect("bot id"),
            Sha256::of(&media_bytes(i)),
            MediaKind::Video,
        ),
        chat: -1_001_234_567_890,
        after: Some(41),
        started_at: prewarm::Timestamp(1_700_000_000_000),
        delivered: None,
    }
}

fn journal_delivery() -> Delivered {
    Delivered {
        message_id: 42,
        file_id: prewarm::FileId::new("file_42"),
    }
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

#[cfg(feature = "postgres")]
mod pg {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prewarm::PriorityQueue;
    use prewarm::conformance;
    use prewarm::db::PostgresStore;
    use prewarm::upload::{JournalEntry, UploadJournal};

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_journal_conforms() {
        let Some(url) = database_url("postgres_journal_conforms") else {
            return;
        };
        let schema = unique_schema("journal");
        let store = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        conformance::journal::run_all(&store).await;
        drop(store);
        drop_schema(&url, &schema).await;
    }

    /// The crash case: a send journaled by one store (one process) is there, as written,
    /// for another store on the same schema once the first is gone; so is a delivery.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_journal_is_seen_by_another_store() {
        let Some(url) = database_url("postgres_journal_is_seen_by_another_store") else {
            return;
        };
        let schema = unique_schema("journal2");
        let connect = || {
            PostgresStore::builder(&url)
                .with_schema(&schema)
                .with_pool_size(2)
                .connect()
        };
        let (pending, delivered) = (crate::journal_entry(1), crate::journal_entry(2));
        let first = connect().await.expect("connect");
        first.begin(&pending).await.expect("begin");
        first.begin(&delivered).await.expect("begin");
        first
            .deliver(&delivered.media, &crate::journal_delivery())
            .await
            .expect("deliver");
        drop(first);

        let second = connect().await.expect("connect again");
        assert_eq!(
            second.entry(&pending.media).await.expect("entry"),
            Some(pending.clone()),
            "a begun send outlives its store"
        );
        assert_eq!(
            second.pending(&pending.media.bot).await.expect("pending"),
            vec![pending]
        );
        assert_eq!(
            second.entry(&delivered.media).await.expect("entry"),
            Some(JournalEntry {
                delivered: Some(crate::journal_delivery()),
                ..delivered
            }),
            "a delivery outlives its store"
        );
        drop(second);
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
                        // The suite drives time itself.
                        .with_clock(prewarm::db::QueueClock::Caller)
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
    use prewarm::queue::{JobState, PushOutcome};
    use prewarm::{BotId, Job, MediaKey, MediaKind, PriorityQueue, Sha256, Timestamp};

    use crate::support::{database_url, drop_schema, unique_schema};

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
            .with_depth_ttl(std::time::Duration::ZERO)
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

/// The PostgreSQL queue at scale and in operation: the database's clock, query plans.
#[cfg(feature = "postgres")]
mod pg_queue {
    use std::time::Duration;

    use prewarm::db::PostgresStore;
    use prewarm::{BotId, Job, MediaKey, MediaKind, PriorityQueue, Sha256, Timestamp};

    use crate::support::pg_fill::fill_queue;
    use crate::support::{database_url, drop_schema, unique_schema};

    /// Every statement of a claim is an index scan on a large queue: aged and fresh backlogs
    /// of two bots, a few demanded jobs, delayed and claimed ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_claim_plans_use_the_indexes() {
        let Some(url) = database_url("postgres_claim_plans_use_the_indexes") else {
            return;
        };
        let schema = unique_schema("plans");
        let q = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        fill_queue(&url, &schema, "aged", 40_000, true).await;
        fill_queue(&url, &schema, "fresh", 40_000, false).await;
        let bots = [
            BotId::new("aged").expect("bot"),
            BotId::new("fresh").expect("bot"),
        ];
        let plans = q.explain_claim(&bots, 16).await.expect("explain");
        let all = plans.join("\n---\n");
        assert!(
            !all.contains("Seq Scan on media_cache"),
            "a claim scans the table:\n{all}"
        );
        for (i, index) in [
            (0, "ix_media_cache_delayed"),
            (0, "ix_media_cache_leases"),
            (1, "ix_media_cache_demanded"),
            (1, "ix_media_cache_aged"),
            (2, "ix_media_cache_fresh"),
            (3, "media_cache_pkey"),
        ] {
            assert!(
                plans[i].contains(index),
                "statement {i} does not use {index}:\n{}",
                plans[i]
            );
        }
        drop(q);
        drop_schema(&url, &schema).await;
    }

    /// `depth()` is counted at most once per TTL: a store with a long TTL answers its last
    /// count, one with none counts again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_depth_is_counted_once_per_ttl() {
        let Some(url) = database_url("postgres_depth_is_counted_once_per_ttl") else {
            return;
        };
        let schema = unique_schema("depth");
        let open = |ttl| {
            PostgresStore::builder(&url)
                .with_schema(&schema)
                .with_depth_ttl(ttl)
                .connect()
        };
        let cached = open(Duration::from_secs(3600)).await.expect("connect");
        let exact = open(Duration::ZERO).await.expect("connect");
        let bot = BotId::new("depth").expect("bot");
        assert_eq!(cached.depth().await.expect("depth").queued, 0);
        let now = Timestamp::now();
        cached
            .push(Job::new(key(&bot, 1, MediaKind::Photo), 10, now), now)
            .await
            .expect("push");
        assert_eq!(
            cached.depth().await.expect("depth").queued,
            0,
            "within the TTL, the last count is answered"
        );
        assert_eq!(
            exact.depth().await.expect("depth").queued,
            1,
            "no TTL: counted"
        );
        drop((cached, exact));
        drop_schema(&url, &schema).await;
    }

    async fn admin(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }

    /// The pid of the connection listening on `schema`'s channel, once there is one.
    async fn listener_pid(admin: &tokio_postgres::Client, schema: &str, not: Option<i32>) -> i32 {
        for _ in 0..200 {
            let rows = admin
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> $2",
                    &[&format!("LISTEN prewarm_{schema}"), &not.unwrap_or(0)],
                )
                .await
                .expect("pg_stat_activity");
            if let Some(r) = rows.first() {
                return r.get(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no connection listens for {schema} after 10 s");
    }

    /// The LISTEN connection killed by the server: the store reconnects and other
    /// instances' pushes wake it again, with no poll fallback to hide a lost listener.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_wakeups_resume_after_the_listener_is_killed() {
        let Some(url) = database_url("postgres_wakeups_resume_after_the_listener_is_killed") else {
            return;
        };
        let schema = unique_schema("listen");
        let open = || {
            PostgresStore::builder(&url)
                .with_schema(&schema)
                .with_poll_interval(Duration::from_secs(3600))
                .connect()
        };
        let listening = open().await.expect("connect");
        let pusher = open().await.expect("connect");
        let notify = listening.notifier().expect("a notifier");
        let admin = admin(&url).await;
        let bot = BotId::new("listen").expect("bot");
        let woken_by_push = |i: u64| {
            let (notify, pusher, bot) = (notify.clone(), pusher.clone(), bot.clone());
            async move {
                let woken = notify.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let now = Timestamp::now();
                pusher
                    .push(Job::new(key(&bot, i, MediaKind::Photo), 10, now), now)
                    .await
                    .expect("push");
                tokio::time::timeout(Duration::from_secs(5), woken)
                    .await
                    .is_ok()
            }
        };
        // Both stores listen on the channel: kill the one that is not the pusher's by
        // killing every listener, then wait for the reconnections.
        let first = listener_pid(&admin, &schema, None).await;
        assert!(woken_by_push(1).await, "a push wakes the other instance");
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
                &[&format!("LISTEN prewarm_{schema}")],
            )
            .await
            .expect("terminate")
            .get(0);
        assert!(killed >= 1, "the listeners were found and killed");
        let _ = listener_pid(&admin, &schema, Some(first)).await;
        // Each store has one listener: wait until there are two again.
        for _ in 0..200 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = $1",
                    &[&format!("LISTEN prewarm_{schema}")],
                )
                .await
                .expect("count")
                .get(0);
            if n >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            woken_by_push(2).await,
            "after the listener was killed, pushes wake the instance again"
        );
        drop((listening, pusher));
        drop_schema(&url, &schema).await;
    }

    /// Several instances starting at once on a new schema: all connect, and each migration is
    /// applied once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_migrations_run_by_several_instances_at_once() {
        let Some(url) = database_url("postgres_migrations_run_by_several_instances_at_once") else {
            return;
        };
        let schema = unique_schema("migrate");
        let stores = futures::future::join_all((0..6).map(|_| {
            PostgresStore::builder(&url)
                .with_schema(&schema)
                .with_pool_size(2)
                .connect()
        }))
        .await;
        for s in &stores {
            assert!(s.is_ok(), "every instance connects: {s:?}");
        }
        let admin = admin(&url).await;
        let versions: Vec<i32> = admin
            .query(
                &format!("SELECT version FROM {schema}.schema_migrations ORDER BY version"),
                &[],
            )
            .await
            .expect("schema_migrations")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, [1, 2, 3, 4], "each migration once, all of them");
        drop(stores);
        drop_schema(&url, &schema).await;
    }

    fn key(bot: &BotId, i: u64, kind: MediaKind) -> MediaKey {
        MediaKey::new(bot.clone(), Sha256::of(&i.to_le_bytes()), kind)
    }

    /// Hosts whose clocks are an hour off agree on leases and aging: both follow the
    /// database's clock, whatever `now` they pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_leases_and_aging_follow_the_database_clock() {
        let Some(url) = database_url("postgres_leases_and_aging_follow_the_database_clock") else {
            return;
        };
        let schema = unique_schema("clock");
        let q = PostgresStore::builder(&url)
            .with_schema(&schema)
            .connect()
            .await
            .expect("connect");
        let bot = BotId::new("clock").expect("bot");
        let lease = Duration::from_secs(30);
        let hour = Duration::from_secs(3600);
        let real = Timestamp::now();
        let fast = real.plus(hour);
        // A host an hour slow queues a video it believes two hours old, and a photo.
        let slow = Timestamp(real.0 - 3_600_000);
        q.push(
            Job::new(
                key(&bot, 1, MediaKind::Video),
                40_000_000,
                Timestamp(slow.0 - 7_200_000),
            ),
            slow,
        )
        .await
        .expect("push");
        q.push(Job::new(key(&bot, 2, MediaKind::Photo), 1_000, slow), slow)
            .await
            .expect("push");
        // A host an hour fast claims: neither job has aged by the database's clock, so the
        // photo ranks first.
        let c = q
            .claim("fast", std::slice::from_ref(&bot), 1, lease, fast)
            .await
            .expect("claim");
        let held = c.jobs.into_iter().next().expect("a job");
        assert_eq!(
            held.job.key.kind,
            MediaKind::Photo,
            "aging counts by the database's clock, not the pusher's"
        );
        let expires = held.lease.expires_at.as_millis();
        let want = real.plus(lease).as_millis();
        assert!(
            expires.abs_diff(want) < 10_000,
            "the lease runs {lease:?} from the database's now ({want}), not the fast host's: {expires}"
        );
        // Another host two hours fast sees the lease still running.
        let c = q
            .claim(
                "faster",
                std::slice::from_ref(&bot),
                10,
                lease,
                fast.plus(hour),
            )
            .await
            .expect("claim");
        assert!(
            c.jobs.iter().all(|c| c.job.key != held.job.key),
            "a lease is not reclaimed by a host whose clock runs ahead"
        );
        q.complete(&held.lease).await.expect("complete");
        drop(q);
        drop_schema(&url, &schema).await;
    }
}

/// PostgreSQL stamps jobs with the database's clock (`QueueClock::Database`, the default),
/// so `summary` reads ages on that clock too: a caller whose clock runs an hour ahead does
/// not see an hour-old job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_summary_ages_jobs_on_the_database_clock() {
    let Some(url) = support::database_url("postgres_summary_ages_jobs_on_the_database_clock")
    else {
        return;
    };
    let schema = support::unique_schema("sumclock");
    let store = prewarm::PostgresStore::builder(&url)
        .with_schema(&schema)
        .connect()
        .await
        .expect("connect");
    let ahead = prewarm::Timestamp(prewarm::Timestamp::now().as_millis() + 3_600_000);
    let key = MediaKey::new(bot(), Sha256::of(b"summary clock"), MediaKind::Photo);
    store
        .push(prewarm::Job::new(key, 1_000, ahead), ahead)
        .await
        .expect("push");
    let summary = store.summary(ahead).await.expect("summary");
    let age = summary[0].oldest_age().expect("a pending job");
    drop(store);
    support::drop_schema(&url, &schema).await;
    assert!(
        age < Duration::from_secs(60),
        "the job was queued just now by the database's clock: {age:?}"
    );
}
