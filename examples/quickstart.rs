//! Saves a handful of generated media, warms them, and shows the cache-first send path.
//!
//! Runs with no credentials and no services: a local-directory store in a temporary folder,
//! the in-memory cache and queue, and the in-process stand-in uploader (Telegram's latency,
//! without Telegram).
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::store::FsStore;
use prewarm::{BotId, MediaKind, MemoryUploader, PrewarmEngine, Sendable};

#[tokio::main]
async fn main() -> prewarm::Result<()> {
    let folder = tempfile::tempdir().map_err(|e| prewarm::Error::Io {
        context: "creating a temporary folder".into(),
        source: e,
    })?;
    let bot = BotId::new("quickstart_bot")?;
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(FsStore::open(folder.path()).await?))
        .with_uploader(Arc::new(
            MemoryUploader::new(bot.clone())
                .with_latency(Duration::from_millis(300)..Duration::from_millis(900)),
        ))
        .with_concurrency(4)
        .build()?;
    let running = engine.spawn();
    println!("store: {}", folder.path().display());

    let started = Instant::now();
    let media = [
        (MediaKind::Photo, 40_000),
        (MediaKind::Photo, 250_000),
        (MediaKind::Photo, 1_200_000),
        (MediaKind::Animation, 600_000),
        (MediaKind::Video, 3_000_000),
        (MediaKind::Document, 90_000),
    ];
    let mut keys = Vec::new();
    for (i, (kind, size)) in media.into_iter().enumerate() {
        let bytes = generated(i as u64, size);
        let key = engine.save(&bot, bytes, kind).await?;
        println!("saved  {kind:<9} {size:>9} bytes  {}", key.sha256);
        keys.push(key);
    }

    // The bot asks what to send for the video at once: not warm yet, so it gets the bytes
    // (and would upload them itself) rather than a "not ready" error.
    match engine.sendable(&keys[4], Duration::ZERO).await? {
        Sendable::FileId(id) => println!("video already warm: {id}"),
        Sendable::Upload(source) => println!("video not warm yet: send the bytes ({source:?})"),
    }

    for key in &keys {
        let file_id = engine.wait_ready(key, Duration::from_secs(30)).await?;
        println!(
            "ready  {:<9} after {:>5} ms  file_id {file_id}",
            key.kind,
            started.elapsed().as_millis()
        );
    }

    // The hot path from now on: a lookup with no I/O.
    let hit = engine.lookup(&keys[0]).expect("warm");
    println!("cache-first lookup: {hit}");
    match engine.sendable(&keys[4], Duration::ZERO).await? {
        Sendable::FileId(id) => println!("video now sent by file_id {id}"),
        Sendable::Upload(_) => println!("video still not warm"),
    }
    // Saving the same bytes again stores and uploads nothing.
    let again = engine
        .save(&bot, generated(0, 40_000), MediaKind::Photo)
        .await?;
    assert_eq!(again, keys[0]);

    println!("{:#?}", engine.metrics().await?);
    running.shutdown().await
}

/// Deterministic filler bytes, different for every `seed`.
fn generated(seed: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}
