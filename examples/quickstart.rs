//! Saves a handful of generated media, warms them, and shows the cache-first send path.
//!
//! Runs with no credentials and no services: without `TELEGRAM_BOT_TOKEN` it asks for demo
//! mode itself ([`PrewarmEngine::demo`]), where the real `TelegramUploader` talks to the
//! crate's fake Bot API on loopback (with Telegram's size and rate limits), media go to a
//! temporary folder, and the cache and queue live in memory. Set `TELEGRAM_BOT_TOKEN` and
//! `MEDIA_WARMUP_CHAT_IDS` to warm for real ([`PrewarmEngine::from_env`], with the cache and
//! queue in `./prewarm.db`).
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::{MediaKind, PrewarmEngine, Sendable};

#[tokio::main]
async fn main() -> prewarm::Result<()> {
    // Demo mode is never a fallback inside the crate (a production bot that lost its token must
    // fail, not warm against a fake): this example chooses it, in the open.
    let setup = if std::env::var_os("TELEGRAM_BOT_TOKEN").is_some() {
        PrewarmEngine::from_env().await?
    } else {
        PrewarmEngine::demo().await?
    };
    if setup.is_demo() {
        println!("demo mode: warming through the fake Bot API on loopback");
    }
    let (engine, bot) = (setup.engine.clone(), setup.bot.clone());
    let running = engine.spawn();

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
    if let Some(hit) = engine.lookup(&keys[0]) {
        println!("cache-first lookup: {hit}");
    }
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
