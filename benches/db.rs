//! Durable backends (issue 5): queue throughput, cache lookup latency, dispatch delay.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --features sqlite,postgres --bench db
//! ```
//! Without `DATABASE_URL` the PostgreSQL cases are skipped with a notice. Besides criterion's
//! groups, the run prints lookup and dispatch-delay percentiles (p50/p99) measured call by
//! call, which criterion's means do not show.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use futures::future::join_all;
use prewarm::cache::TieredCache;
use prewarm::db::{PostgresStore, SqliteStore};
use prewarm::{
    BotId, FileId, FileIdCache, Job, MediaKey, MediaKind, MemoryQueue, PriorityQueue, Sha256,
    Timestamp,
};
use tokio::runtime::Runtime;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn fresh_key() -> MediaKey {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    MediaKey::new(
        BotId::new("bench").unwrap(),
        Sha256::of(&n.to_le_bytes()),
        MediaKind::Photo,
    )
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pg_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("NOTICE: DATABASE_URL is not set: skipping the PostgreSQL cases");
    }
    url
}

async fn pg_store(url: &str, schema: &str) -> PostgresStore {
    pg_store_with(url, schema, true).await
}

async fn pg_store_with(url: &str, schema: &str, synchronous_commit: bool) -> PostgresStore {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    drop(client);
    let _ = conn.await;
    PostgresStore::builder(url)
        .with_schema(schema)
        .with_pool_size(16)
        .with_synchronous_commit(synchronous_commit)
        .connect()
        .await
        .unwrap()
}

/// Pushes `batch` new jobs at once, claims them in one call, completes each: the path a job
/// takes through the queue. Pushes and completes run concurrently, as an engine's saves and
/// workers do.
async fn cycle(q: &dyn PriorityQueue, batch: usize) {
    let now = Timestamp::now();
    join_all((0..batch).map(|_| q.push(Job::new(fresh_key(), 50_000, now), now))).await;
    let mut claimed = Vec::with_capacity(batch);
    while claimed.len() < batch {
        let claim = q
            .claim(
                "bench",
                &[BotId::new("bench").unwrap()],
                batch - claimed.len(),
                Duration::from_secs(60),
                now,
            )
            .await
            .unwrap();
        assert!(!claim.jobs.is_empty(), "pushed jobs are claimable");
        claimed.extend(claim.jobs);
    }
    for r in join_all(claimed.iter().map(|c| q.complete(&c.lease))).await {
        r.unwrap();
    }
}

fn queue_throughput(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::open(dir.path().join("bench.db")))
        .unwrap();
    let pg = pg_url().map(|url| {
        (
            rt.block_on(pg_store(&url, "bench_queue")),
            rt.block_on(pg_store_with(&url, "bench_queue_async", false)),
        )
    });
    let memory = MemoryQueue::new();

    let mut group = c.benchmark_group("db_queue_jobs");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for batch in [1usize, 32] {
        group.throughput(Throughput::Elements(batch as u64));
        let mut queues: Vec<(&str, Arc<dyn PriorityQueue>)> = vec![
            ("memory", Arc::new(memory.clone())),
            ("sqlite", Arc::new(sqlite.clone())),
        ];
        if let Some((pg, pg_async)) = &pg {
            queues.push(("postgres", Arc::new(pg.clone())));
            queues.push(("postgres_async_commit", Arc::new(pg_async.clone())));
        }
        for (name, q) in queues {
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
                b.to_async(&rt).iter(|| {
                    let q = q.clone();
                    async move { cycle(&*q, batch).await }
                });
            });
        }
    }
    group.finish();
}

fn cache_lookup(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::open(dir.path().join("cache.db")))
        .unwrap();
    let pg = pg_url().map(|url| rt.block_on(pg_store(&url, "bench_cache")));
    // 10,000 cached file_ids in each durable cache.
    let keys: Vec<MediaKey> = (0..10_000).map(|_| fresh_key()).collect();
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            let id = FileId::new(format!("AgACAgQAAxk{i}"));
            sqlite.put(k, &id).await.unwrap();
            if let Some(pg) = &pg {
                pg.put(k, &id).await.unwrap();
            }
        }
    });
    let tiered = TieredCache::new(Arc::new(sqlite.clone()), 20_000).unwrap();
    rt.block_on(async {
        for k in &keys {
            tiered.get(k).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("db_cache_lookup");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    group.bench_function("lru_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(tiered.get_local(&keys[i]).unwrap());
        });
    });
    let mut caches: Vec<(&str, Arc<dyn FileIdCache>)> = vec![("sqlite_miss", Arc::new(sqlite))];
    if let Some(pg) = &pg {
        caches.push(("postgres_miss", Arc::new(pg.clone())));
    }
    for (name, cache) in &caches {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % keys.len();
                let (cache, key) = (cache.clone(), keys[i].clone());
                async move { black_box(cache.get(&key).await.unwrap().unwrap()) }
            });
        });
    }
    group.finish();

    // Percentiles, call by call.
    let pct = |mut v: Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let mut lru = Vec::with_capacity(keys.len());
    for k in &keys {
        let t = Instant::now();
        black_box(tiered.get_local(k).unwrap());
        lru.push(t.elapsed());
    }
    let (p50, p99) = pct(lru);
    println!("lookup lru_hit: p50 {p50:?} p99 {p99:?}");
    for (name, cache) in &caches {
        let samples = rt.block_on(async {
            let mut v = Vec::with_capacity(5_000);
            for k in keys.iter().take(5_000) {
                let t = Instant::now();
                black_box(cache.get(k).await.unwrap().unwrap());
                v.push(t.elapsed());
            }
            v
        });
        let (p50, p99) = pct(samples);
        println!("lookup {name}: p50 {p50:?} p99 {p99:?}");
    }
}

/// Push on one instance, claim on another woken by LISTEN/NOTIFY: the delay from the push's
/// start to the claim's answer.
fn dispatch_delay(c: &mut Criterion) {
    let Some(url) = pg_url() else { return };
    let rt = runtime();
    let (pusher, claimer) = rt.block_on(async {
        let a = pg_store(&url, "bench_dispatch").await;
        let b = PostgresStore::builder(&url)
            .with_schema("bench_dispatch")
            .with_poll_interval(Duration::from_secs(30)) // so the fallback cannot help
            .connect()
            .await
            .unwrap();
        (a, b)
    });
    let notify = claimer.notifier().expect("postgres notifies");
    let once = || {
        let (pusher, claimer, notify) = (pusher.clone(), claimer.clone(), notify.clone());
        async move {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = Timestamp::now();
            let start = Instant::now();
            pusher
                .push(Job::new(fresh_key(), 1_000, now), now)
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), woken)
                .await
                .expect("the notification arrives");
            let claim = claimer
                .claim(
                    "bench",
                    &[BotId::new("bench").unwrap()],
                    1,
                    Duration::from_secs(60),
                    now,
                )
                .await
                .unwrap();
            let delay = start.elapsed();
            assert_eq!(claim.jobs.len(), 1);
            claimer.complete(&claim.jobs[0].lease).await.unwrap();
            delay
        }
    };
    let mut group = c.benchmark_group("db_dispatch");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("postgres_notify_push_to_claim", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += once().await;
            }
            total
        });
    });
    group.finish();
    let mut samples = rt.block_on(async {
        let mut v = Vec::with_capacity(1_000);
        for _ in 0..1_000 {
            v.push(once().await);
        }
        v
    });
    samples.sort();
    println!(
        "dispatch push->claim via LISTEN/NOTIFY: p50 {:?} p99 {:?} max {:?}",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, queue_throughput, cache_lookup, dispatch_delay);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
