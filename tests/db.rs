//! The durable backends (SQLite, PostgreSQL) against the conformance suites, and their
//! durability: crash recovery under SIGKILL, many instances sharing one database.
//!
//! PostgreSQL tests read `DATABASE_URL`; each uses its own schema so they run in parallel.
//! Unset, they fail when `CI=true` and skip with a notice elsewhere.

mod support;

use std::sync::Arc;

use prewarm::PriorityQueue;
use prewarm::conformance;
use prewarm::db::SqliteStore;

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
