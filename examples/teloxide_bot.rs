//! A teloxide bot that answers every message with a warm photo: the file_id when prewarm has
//! it, an upload otherwise (whose file_id is then kept, so the next answer is instant).
//!
//! ```text
//! TELEGRAM_BOT_TOKEN=123456:ABC... MEDIA_WARMUP_CHAT_IDS=-1001234567890 \
//!     cargo run --example teloxide_bot --features teloxide -- path/to/photo.jpg
//! ```
//!
//! The engine is [`PrewarmEngine::from_env`]'s (file_ids and jobs kept across restarts in
//! `./prewarm.db`, or where `PREWARM_DB` says; `R2_*` to keep media in R2). CI compiles this example; it is not run against
//! Telegram.

use std::time::Duration;

use bytes::Bytes;
use prewarm::{MediaKey, MediaKind, PrewarmEngine};
use teloxide::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: teloxide_bot PHOTO.jpg")?;
    let token = std::env::var("TELEGRAM_BOT_TOKEN")
        .map_err(|_| "TELEGRAM_BOT_TOKEN is not set: this example talks to Telegram")?;

    let setup = PrewarmEngine::from_env().await?;
    let running = setup.engine.spawn();
    let photo = Bytes::from(tokio::fs::read(&path).await?);
    // Stored and warmed in the background: by the first message it is usually warm already.
    let key = setup
        .engine
        .save(&setup.bot, photo, MediaKind::Photo)
        .await?;
    let engine = setup.engine.clone();

    let bot = Bot::new(token);
    teloxide::repl(bot, move |bot: Bot, msg: Message| {
        let engine = engine.clone();
        let key = key.clone();
        async move {
            if let Err(e) = reply_with_photo(&bot, &msg, &engine, &key).await {
                log_error(&*e);
            }
            respond(())
        }
    })
    .await;
    running.shutdown().await?;
    Ok(())
}

async fn reply_with_photo(
    bot: &Bot,
    msg: &Message,
    engine: &PrewarmEngine,
    key: &MediaKey,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Waits up to 300 ms for a warm in flight, then falls back to uploading the bytes.
    let photo = prewarm::teloxide::input_file(engine, key, Duration::from_millis(300)).await?;
    let sent = bot.send_photo(msg.chat.id, photo).await?;
    prewarm::teloxide::record_sent(engine, key, &sent).await?;
    Ok(())
}

fn log_error(e: &(dyn std::error::Error + Send + Sync)) {
    eprintln!("could not answer: {e}");
}
