//! Warms the same batch of media through `PrewarmEngine` + `TelegramUploader` + the fake Bot
//! API with 1, 3 and 6 warm-up chats, side by side, and prints the throughput of each and its
//! ratio to one chat. Telegram's group limit (20 messages a minute per chat) is kept, scaled
//! ten times faster (20 per 6 s) so that the run takes seconds; each upload takes 50-150 ms.
//! The figures are bound by the rate limits, not the CPU: a debug build measures the same.
//!
//! ```text
//! cargo run --example telegram_pool --features testkit
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prewarm::testkit::{FakeBotApi, FakeLimits, FakeRate, Latency};
use prewarm::upload::{Rate, RateLimits};
use prewarm::{MediaKind, PrewarmEngine, TelegramUploader, Uploader};

const TOKEN: &str = "123456:example-token-not-a-secret";
const MEDIA: u64 = 30;

#[tokio::main]
async fn main() -> prewarm::Result<()> {
    let group = Rate::new(20, Duration::from_secs(6));
    let mut baseline = None;
    println!("{MEDIA} media, groups at 20 per 6 s, uploads 50-150 ms");
    for chats in [1usize, 3, 6] {
        let ids: Vec<i64> = (1..=chats as i64).map(|n| -1_000_000 - n).collect();
        let fake = FakeBotApi::builder()
            .with_bot(TOKEN)
            .with_chats(ids.iter().copied())
            .with_limits(
                FakeLimits::telegram()
                    .with_group_chat(FakeRate::new(20, Duration::from_secs(6)).with_burst(3)),
            )
            .with_latency(Latency::uniform(
                Duration::from_millis(50)..Duration::from_millis(150),
            ))
            .start()
            .await?;
        let telegram = TelegramUploader::builder()
            .with_token(TOKEN)
            .with_api_base(fake.base_url())
            .with_warmup_chats(ids.iter().copied())
            .with_rate_limits(RateLimits::default().with_group_chat(group))
            .build()?;
        let bot = telegram.bot().clone();
        let engine = PrewarmEngine::builder()
            .with_uploader(Arc::new(telegram))
            .with_concurrency(16)
            .build()?;
        let mut keys = Vec::new();
        for n in 0..MEDIA {
            let mut bytes = b"\xff\xd8\xff\xe0".to_vec();
            bytes.extend_from_slice(&(chats as u64 * 1000 + n).to_le_bytes());
            bytes.resize(20_000, 0x5a);
            keys.push(
                engine
                    .save(&bot, Bytes::from(bytes), MediaKind::Photo)
                    .await?,
            );
        }
        let start = Instant::now();
        let running = engine.spawn();
        for key in &keys {
            engine.wait_ready(key, Duration::from_secs(120)).await?;
        }
        let elapsed = start.elapsed();
        running.shutdown().await?;
        let stats = fake.stats();
        let rate = MEDIA as f64 / elapsed.as_secs_f64();
        let ratio = rate / *baseline.get_or_insert(rate);
        println!(
            "{chats} chat(s): {MEDIA} warmed in {:.2} s = {rate:.2} warms/s, x{ratio:.2} vs 1 chat; \
             429s {}, violations {}",
            elapsed.as_secs_f64(),
            stats.too_many_requests,
            stats.violations
        );
        fake.shutdown().await;
    }
    Ok(())
}
