//! # prewarm
//!
//! Upload each media to Telegram once, keep the `file_id` Telegram answers, and send by
//! file_id from then on: instantly, durably, within Telegram's rate limits.
//!
//! A bot keeps its media in object storage (Cloudflare R2, any S3 service, or a local
//! folder). [`PrewarmEngine`] stores each media content-addressed, queues a *warm*: an upload to
//! a private warm-up chat that yields the file_id, and caches the file_id by
//! [`MediaKey`] (bot, SHA-256, kind). The bot then asks the engine what to send: the file_id
//! when the media is warm, its bytes otherwise. There is no "media not ready" error.
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use prewarm::{BotId, MediaKind, MemoryUploader, PrewarmEngine, Sendable};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> prewarm::Result<()> {
//! let bot = BotId::new("demo")?;
//! // A stand-in uploader; a real bot plugs in its Telegram uploader here.
//! let engine = PrewarmEngine::builder()
//!     .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
//!     .build()?;
//! let running = engine.spawn();
//!
//! let key = engine.save(&bot, Bytes::from_static(b"GIF89a..."), MediaKind::Animation).await?;
//! match engine.sendable(&key, Duration::from_secs(2)).await? {
//!     Sendable::FileId(id) => println!("send by file_id {id}"),
//!     Sendable::Upload(source) => println!("upload the bytes: {source:?}"),
//! }
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## In a bot
//!
//! `PrewarmEngine::from_env` picks the parts from the environment (see the `config` module): the
//! Telegram uploader, R2 or a local folder, SQLite (`./prewarm.db` by default) or PostgreSQL.
//! Without `TELEGRAM_BOT_TOKEN` it is an error; `PREWARM_DEMO=1` (or `PrewarmEngine::demo`)
//! runs against the crate's fake Bot API instead.
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use prewarm::{send_cached, MediaKind, PrewarmEngine};
//!
//! # async fn demo(jpeg: Bytes, chat_id: i64) -> prewarm::Result<()> {
//! let setup = PrewarmEngine::from_env().await?;
//! let running = setup.engine.spawn();
//! let key = setup.engine.save(&setup.bot, jpeg, MediaKind::Photo).await?;
//! // Later, in a handler: by file_id when warm, by upload otherwise; a file_id Telegram
//! // rejects is re-warmed and the send tried once more.
//! let sent = send_cached(&setup.engine, &setup.telegram, chat_id, &key, Duration::from_millis(300)).await?;
//! # let _ = sent;
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## The parts
//!
//! The engine composes four traits, each with in-memory defaults:
//!
//! | trait | what it does | implementations |
//! |---|---|---|
//! | [`MediaStore`] | keeps the bytes | [`store::MemoryStore`], [`store::FsStore`] |
//! | [`FileIdCache`] | (bot, sha256, kind) to file_id | [`LruFileIdCache`], [`cache::TieredCache`], `db::SqliteStore`, `db::PostgresStore` |
//! | [`PriorityQueue`] | the warm jobs, with leases and retries | [`MemoryQueue`], `db::SqliteStore`, `db::PostgresStore` |
//! | [`Uploader`] | turns a media into a file_id | `TelegramUploader` (feature `telegram`), [`MemoryUploader`] (a stand-in) |
//!
//! With the `telegram` feature, `send_cached` delivers a media to a chat cache first: by
//! file_id when warm, by its bytes otherwise, re-warming a file_id Telegram rejects.
//!
//! ## Features
//!
//! Default features: `r2`, `telegram`, `sqlite`, `testkit` (the fake Bot API, which demo mode
//! needs). A bot that wants no test server in its build:
//! `prewarm = { version = "0.1", default-features = false, features = ["r2", "telegram", "sqlite"] }`.
//!
//! | feature | what it adds |
//! |---|---|
//! | `conformance` | the `conformance` module: the behaviour suites every implementation of the traits must pass, for your own backends |
//! | `sqlite` | `db::SqliteStore`: a durable cache and queue in one embedded SQLite file (bundled) |
//! | `postgres` | `db::PostgresStore`: a durable cache and queue on PostgreSQL, shared by many instances |
//! | `r2` | `store::R2Store`: Cloudflare R2 or any S3-compatible service, with a hand-written SigV4 signer (reqwest, rustls) |
//! | `teloxide` | `teloxide::input_file`: a media as teloxide's `InputFile` (the file_id when warm, the bytes otherwise), and `teloxide::record_sent` |
//! | `cli` | the `prewarm` operator command (`cargo install --path . --features cli`) and the `cli` module behind it: status, dead jobs, requeue, a Prometheus endpoint |
//! | `telegram` | `config` and `PrewarmEngine::from_env`; `TelegramUploader` (the Bot API over reqwest with rustls: every media kind, by URL or streamed upload, rate limits per bot and chat, a warm-up chat pool) and `send_cached` |
//! | `testkit` | `testkit::FakeBotApi`: a fake Bot API on loopback, faithful to the real one's limits, errors and 429s, with fault injection, for your bot's tests (implies `telegram`) |
#![forbid(unsafe_code)]
#![deny(missing_docs, rust_2018_idioms, rustdoc::broken_intra_doc_links)]
#![warn(missing_debug_implementations, unreachable_pub)]

pub mod bulk;
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "telegram")]
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod db;
mod engine;
mod env;
mod error;
mod media;
pub mod queue;
#[cfg(feature = "telegram")]
mod send;
pub mod store;
#[cfg(feature = "teloxide")]
pub mod teloxide;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod upload;

pub use cache::{FileIdCache, LruFileIdCache};
#[cfg(feature = "telegram")]
pub use config::Setup;
pub use engine::metrics::{self, MetricsSnapshot, Percentiles};
pub use engine::{EngineTask, PrewarmEngine, PrewarmEngineBuilder, Sendable};
pub use error::{Error, Result};
pub use media::{
    BotId, FileId, Job, MediaKey, MediaKind, ObjectKey, Sha256, Sha256Hasher, SizeLimits, Timestamp,
};
pub use queue::{MemoryQueue, PriorityPolicy, PriorityQueue};
#[cfg(feature = "telegram")]
pub use send::send_cached;
pub use store::{MediaStore, MediaStoreExt};
pub use upload::{MemoryUploader, Uploader};
#[cfg(feature = "telegram")]
pub use upload::{TelegramUploader, TelegramUploaderBuilder};

#[cfg(feature = "postgres")]
pub use db::PostgresStore;
#[cfg(feature = "sqlite")]
pub use db::SqliteStore;

/// The engine and the error cross threads and tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<PrewarmEngine>();
    assert_send_sync::<Error>();
    assert_send_sync::<Sendable>();
};
