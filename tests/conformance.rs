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

/// A memory store with URLs, for the uploader's URL behaviour: the stand-in fetches nothing.
#[derive(Debug, Default)]
struct UrlStore(MemoryStore);

#[async_trait::async_trait]
impl prewarm::MediaStore for UrlStore {
    async fn put(
        &self,
        key: &prewarm::ObjectKey,
        payload: prewarm::store::PutPayload,
    ) -> prewarm::Result<prewarm::store::PutOutcome> {
        self.0.put(key, payload).await
    }
    async fn get(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::GetResult> {
        self.0.get(key).await
    }
    async fn head(&self, key: &prewarm::ObjectKey) -> prewarm::Result<prewarm::store::ObjectMeta> {
        self.0.head(key).await
    }
    async fn delete(&self, key: &prewarm::ObjectKey) -> prewarm::Result<()> {
        self.0.delete(key).await
    }
    async fn url(
        &self,
        key: &prewarm::ObjectKey,
        _expires_in: std::time::Duration,
        _content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        Ok(Some(format!("https://store.example/{key}")))
    }
}

#[tokio::test]
async fn memory_uploader_with_urls_reads_nothing_it_takes_by_url() {
    let uploader = MemoryUploader::new(BotId::new("conformance").expect("bot"))
        .with_urls(|_kind, size, content_type| size <= 5_000 && content_type == Some("image/jpeg"));
    let jpeg = |len: usize| {
        let mut v = b"\xff\xd8\xff\xe0".to_vec();
        v.extend((0..len - 4).map(|_| fastrand::u8(..)));
        bytes::Bytes::from(v)
    };
    let media = [
        (prewarm::MediaKind::Photo, jpeg(2_000)),
        (prewarm::MediaKind::Photo, jpeg(9_000)),
        (
            prewarm::MediaKind::Document,
            bytes::Bytes::from(vec![1u8; 100]),
        ),
    ];
    conformance::upload::what_needs_no_bytes_is_not_read(
        &uploader,
        std::sync::Arc::new(UrlStore::default()),
        &media,
    )
    .await;
    let stats = uploader.stats();
    assert_eq!((stats.by_url, stats.uploads), (1, 3), "{stats:?}");
}

#[tokio::test]
async fn memory_budget_conforms() {
    let budget = MemoryBudget::new();
    conformance::budget::run_all(&budget, &budget.clone()).await;
}

#[tokio::test]
async fn memory_journal_conforms() {
    conformance::journal::run_all(&prewarm::upload::MemoryJournal::new()).await;
}
