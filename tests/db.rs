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
