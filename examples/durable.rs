//! Warms media on a durable queue and cache that survive a restart: run it twice, and the
//! second run finds every file_id already cached and uploads nothing.
//!
//! `PREWARM_DB` picks the database: a file path (SQLite, the default here: `prewarm-example.db`
//! in the system's temporary folder) or a `postgres://` URL. An in-process LRU sits in front of
//! the durable cache, so lookups after the first do no I/O.
//!
//! ```text
//! cargo run --example durable --features sqlite
//! PREWARM_DB=postgres://postgres@127.0.0.1:5432/test cargo run --example durable --features sqlite,postgres
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::cache::TieredCache;
use prewarm::store::FsStore;
use prewarm::{BotId, MediaKind, MemoryUploader, PrewarmEngine};

#[tokio::main]
async fn main() -> prewarm::Result<()> {
    let target = std::env::var("PREWARM_DB").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("prewarm-example.db")
            .display()
            .to_string()
    });
    let db = prewarm::db::open(&target).await?;
    println!("durable store: {:?}", db.queue);
    let cache = TieredCache::new(db.cache, 10_000)?.with_ttl(Duration::from_secs(60));

    let bot = BotId::new("durable_example_bot")?;
    let uploader = MemoryUploader::new(bot.clone())
        .with_latency(Duration::from_millis(100)..Duration::from_millis(300));
    let media_dir = std::env::temp_dir().join("prewarm-example-media");
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(FsStore::open(&media_dir).await?))
        .with_cache(Arc::new(cache))
        .with_queue(db.queue)
        .with_uploader(Arc::new(uploader.clone()))
        .with_concurrency(8)
        .build()?;
    let running = engine.spawn();

    let started = Instant::now();
    let mut keys = Vec::new();
    for i in 0..40u32 {
        let bytes = Bytes::from(format!("example photo {i} {}", "#".repeat(1_000)));
        keys.push(engine.save(&bot, bytes, MediaKind::Photo).await?);
    }
    for key in &keys {
        engine.wait_ready(key, Duration::from_secs(60)).await?;
    }
    println!(
        "{} media ready in {} ms; {} uploaded by this run (0 on a second run: the file_ids \
         survived in the database)",
        keys.len(),
        started.elapsed().as_millis(),
        uploader.stats().succeeded
    );
    let t = Instant::now();
    let hit = engine.lookup(&keys[0]);
    println!("lookup without I/O: {hit:?} in {:?}", t.elapsed());
    running.shutdown().await?;
    Ok(())
}
