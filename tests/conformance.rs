//! Every in-crate backend against the conformance suites.

use std::sync::Arc;

use prewarm::conformance;
use prewarm::store::{FsStore, MemoryStore};
use prewarm::upload::MemoryBudget;
use prewarm::{BotId, LruFileIdCache, MemoryQueue, MemoryUploader, PriorityQueue};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::store::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn fs_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsStore::open(dir.path()).await.expect("open");
    conformance::store::run_all(&store).await;
}

#[tokio::test]
async fn lru_cache_conforms() {
    conformance::cache::run_all(&LruFileIdCache::new(1_000).expect("cache")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_queue_conforms() {
    conformance::queue::run_all(|| async {
        Arc::new(MemoryQueue::new()) as Arc<dyn PriorityQueue>
    })
    .await;
}

#[tokio::test]
async fn memory_uploader_conforms() {
    conformance::upload::run_all(&MemoryUploader::new(
        BotId::new("conformance").expect("bot"),
    ))
    .await;
}

#[tokio::test]
async fn memory_budget_conforms() {
    let budget = MemoryBudget::new();
    conformance::budget::run_all(&budget, &budget.clone()).await;
}
