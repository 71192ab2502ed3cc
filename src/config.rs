//! [`PrewarmEngine::from_env`]: an engine configured from the environment. The one place that
//! names concrete backends.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TELEGRAM_BOT_TOKEN` | the bot's token; unset: demo mode (below) | |
//! | `TELEGRAM_API_BASE` | the Bot API's base URL (a local Bot API server's lifts the size limits) | `https://api.telegram.org` |
//! | `MEDIA_WARMUP_CHAT_IDS` | comma list of warm-up chat ids | required with a token |
//! | `R2_ENDPOINT` or `R2_ACCOUNT_ID`, `R2_BUCKET`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`, `R2_REGION`, `R2_PUBLIC_BASE_URL` | an R2 (or S3) bucket for the media | a local folder |
//! | `PREWARM_MEDIA_DIR` | the local folder for media when no R2 bucket is configured | `./prewarm-media`; in demo mode a folder under the system's temporary folder |
//! | `PREWARM_DB` | a file path (embedded SQLite) or a `postgres://` URL, for the cache and the queue; unset, a `postgres://` `DATABASE_URL` is used when the `postgres` feature is on | in memory |
//! | `PREWARM_DB_SCHEMA` | the PostgreSQL schema of the tables (several deployments on one database) | `prewarm` |
//! | `MEDIA_PREWARM_CONCURRENCY`, `MEDIA_PREWARM_INTERVAL_MS`, `MEDIA_PREWARM_RETRY_WEAK_ID` | see [`PrewarmEngineBuilder::from_env`] | |
//!
//! **Demo mode.** With `TELEGRAM_BOT_TOKEN` unset (and the `testkit` feature on), the engine
//! talks to the crate's fake Bot API ([`FakeBotApi`](crate::testkit::FakeBotApi)) on
//! loopback, with Telegram's real size and rate limits, and says so in a log line. Nothing
//! leaves the machine.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::TieredCache;
use crate::engine::{PrewarmEngine, PrewarmEngineBuilder};
use crate::env::{self, Lookup};
use crate::error::Result;
use crate::media::BotId;
use crate::store::{FsStore, MediaStore};
use crate::upload::{TelegramUploader, TelegramUploaderBuilder};

/// File_ids kept in process in front of a durable cache.
const FRONT_CAPACITY: usize = 100_000;
/// The token of the demo bot on the fake Bot API.
const DEMO_TOKEN: &str = "100000001:demo-token-for-the-fake-bot-api";
/// The demo's warm-up chats: eight private chats, about 8 warms a second at Telegram's limits.
const DEMO_CHATS: [i64; 8] = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008];

/// An engine configured from the environment, with the parts bot code needs beside it.
#[derive(Debug)]
pub struct Setup {
    /// The engine, built and not yet started.
    pub engine: PrewarmEngine,
    /// The bot the engine warms media for.
    pub bot: BotId,
    /// The Telegram uploader, for sending by file_id ([`crate::send_cached`]).
    pub telegram: TelegramUploader,
    /// In demo mode, the fake Bot API standing in for Telegram (kept running while this lives).
    #[cfg(feature = "testkit")]
    pub demo: Option<crate::testkit::FakeBotApi>,
}

impl Setup {
    /// Whether the engine talks to the fake Bot API rather than Telegram.
    pub fn is_demo(&self) -> bool {
        #[cfg(feature = "testkit")]
        return self.demo.is_some();
        #[cfg(not(feature = "testkit"))]
        false
    }
}

impl PrewarmEngine {
    /// Builds an engine from the environment: the store, cache, queue and uploader named by the
    /// variables in [`config`](crate::config), and the engine's own settings. It starts
    /// nothing: call [`PrewarmEngine::spawn`] on [`Setup::engine`].
    ///
    /// ```no_run
    /// # async fn demo() -> prewarm::Result<()> {
    /// let setup = prewarm::PrewarmEngine::from_env().await?;
    /// let running = setup.engine.spawn();
    /// # running.shutdown().await }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the variable that is missing or malformed and the form it
    /// expects, or the feature a variable needs that this build lacks; the backends' errors
    /// when they cannot open (the database, the media folder).
    pub async fn from_env() -> Result<Setup> {
        from_lookup(&env::process).await
    }
}

pub(crate) async fn from_lookup(get: Lookup<'_>) -> Result<Setup> {
    let engine = PrewarmEngineBuilder::from_lookup(get);
    let (telegram, demo) = match get("TELEGRAM_BOT_TOKEN")? {
        Some(_) => (TelegramUploaderBuilder::from_lookup(get).build()?, None),
        None => demo_uploader(get).await?,
    };
    let bot = crate::upload::Uploader::bot(&telegram).clone();
    let mut engine = engine.with_uploader(Arc::new(telegram.clone()));
    engine = engine.with_store(store(get, demo.is_some()).await?);
    if let Some((cache, queue)) = durable(get).await? {
        engine = engine.with_cache(cache).with_queue(queue);
    }
    let engine = engine.build()?;
    Ok(Setup {
        engine,
        bot,
        telegram,
        #[cfg(feature = "testkit")]
        demo,
    })
}

#[cfg(feature = "testkit")]
type Demo = Option<crate::testkit::FakeBotApi>;
#[cfg(not(feature = "testkit"))]
type Demo = Option<std::convert::Infallible>;

async fn demo_uploader(get: Lookup<'_>) -> Result<(TelegramUploader, Demo)> {
    #[cfg(feature = "testkit")]
    {
        use crate::testkit::{FakeBotApi, FakeLimits, Latency};
        use std::time::Duration;
        let chats: Vec<i64> = match get("MEDIA_WARMUP_CHAT_IDS")? {
            Some(_) => TelegramUploaderBuilder::from_lookup(get)
                .with_token(DEMO_TOKEN)
                .build()?
                .warmup_chats()
                .to_vec(),
            None => DEMO_CHATS.to_vec(),
        };
        let fake = FakeBotApi::builder()
            .with_bot(DEMO_TOKEN)
            .with_chats(chats.iter().copied())
            .with_limits(FakeLimits::telegram())
            .with_latency(Latency::uniform(
                Duration::from_millis(40)..Duration::from_millis(160),
            ))
            .start()
            .await?;
        tracing::warn!(
            api = %fake.base_url(),
            "TELEGRAM_BOT_TOKEN is not set: demo mode, warming through the crate's fake Bot API \
             on loopback (nothing is sent to Telegram)"
        );
        let telegram = TelegramUploaderBuilder::new()
            .with_token(DEMO_TOKEN)
            .with_api_base(fake.base_url())
            .with_warmup_chats(chats)
            .build()?;
        Ok((telegram, Some(fake)))
    }
    #[cfg(not(feature = "testkit"))]
    {
        let _ = get;
        Err(crate::error::Error::Config {
            message: "TELEGRAM_BOT_TOKEN is not set: set it to the token BotFather gave (and \
                      MEDIA_WARMUP_CHAT_IDS), or enable the `testkit` feature for demo mode"
                .to_owned(),
        })
    }
}

async fn store(get: Lookup<'_>, demo: bool) -> Result<Arc<dyn MediaStore>> {
    let r2_named = ["R2_ENDPOINT", "R2_ACCOUNT_ID", "R2_BUCKET"]
        .into_iter()
        .find_map(|name| get(name).transpose().map(|v| v.map(|_| name)))
        .transpose()?;
    if let Some(name) = r2_named {
        #[cfg(feature = "r2")]
        {
            let _ = name;
            let store = crate::store::R2StoreBuilder::from_lookup(get)?.build()?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "r2"))]
        return Err(crate::error::Error::Config {
            message: format!(
                "{name} is set but prewarm was built without the `r2` feature: enable it in \
                 Cargo.toml, or unset the R2_* variables to keep media in a local folder"
            ),
        });
    }
    let dir = match get("PREWARM_MEDIA_DIR")? {
        Some(dir) => PathBuf::from(dir),
        None if demo => std::env::temp_dir().join("prewarm-demo").join("media"),
        None => PathBuf::from("prewarm-media"),
    };
    Ok(Arc::new(FsStore::open(&dir).await?))
}

type Durable = (
    Arc<dyn crate::cache::FileIdCache>,
    Arc<dyn crate::queue::PriorityQueue>,
);

async fn durable(get: Lookup<'_>) -> Result<Option<Durable>> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    {
        let Some(store) = open_durable(get).await? else {
            return Ok(None);
        };
        let cache = TieredCache::new(store.cache, FRONT_CAPACITY)?;
        Ok(Some((Arc::new(cache), store.queue)))
    }
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    match database_target(get)? {
        None => Ok(None),
        Some(_) => Err(crate::error::Error::Config {
            message: "PREWARM_DB is set but prewarm was built without the `sqlite` or `postgres` \
                      feature: enable one in Cargo.toml, or unset PREWARM_DB to keep the queue \
                      in memory"
                .to_owned(),
        }),
    }
}

/// The durable cache and queue the environment names (`PREWARM_DB`, else a PostgreSQL
/// `DATABASE_URL`; `PREWARM_DB_SCHEMA`), opened; `None` when it names none.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn open_durable(get: Lookup<'_>) -> Result<Option<crate::db::DurableStore>> {
    let Some(target) = database_target(get)? else {
        return Ok(None);
    };
    let schema = get("PREWARM_DB_SCHEMA")?;
    crate::db::open_in(&target, schema.as_deref())
        .await
        .map(Some)
}

/// The database the environment names for the cache and the queue, if any.
pub(crate) fn database_target(get: Lookup<'_>) -> Result<Option<String>> {
    Ok(Some(match get("PREWARM_DB")? {
        Some(t) => t,
        // `DATABASE_URL` is often the host application's own database: taken only when it is a
        // PostgreSQL URL and this build can use it.
        None => match get("DATABASE_URL")? {
            Some(url)
                if cfg!(feature = "postgres")
                    && (url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                url
            }
            _ => return Ok(None),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::from_pairs;
    use crate::error::Error;

    async fn setup_err(pairs: &[(&str, &str)]) -> String {
        match from_lookup(&from_pairs(pairs)).await {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(e) => {
                assert!(matches!(e, Error::Config { .. }), "{e:?}");
                e.to_string()
            }
        }
    }

    fn with_token<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![
            ("TELEGRAM_BOT_TOKEN", "123456:secret-part-of-the-token"),
            ("MEDIA_WARMUP_CHAT_IDS", "-1001"),
            ("PREWARM_MEDIA_DIR", "target/prewarm-config-test-media"),
        ];
        pairs.extend_from_slice(extra);
        pairs
    }

    #[tokio::test]
    async fn each_malformed_variable_is_named_with_its_expected_form() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "MEDIA_PREWARM_CONCURRENCY",
                "lots",
                "MEDIA_PREWARM_CONCURRENCY",
            ),
            ("MEDIA_PREWARM_CONCURRENCY", "0", "concurrency is 0"),
            (
                "MEDIA_PREWARM_INTERVAL_MS",
                "1s",
                "MEDIA_PREWARM_INTERVAL_MS",
            ),
            (
                "MEDIA_PREWARM_RETRY_WEAK_ID",
                "-1",
                "MEDIA_PREWARM_RETRY_WEAK_ID",
            ),
            (
                "MEDIA_WARMUP_CHAT_IDS",
                "-1001,chat",
                "MEDIA_WARMUP_CHAT_IDS",
            ),
            ("TELEGRAM_BOT_TOKEN", "no-colon", "TELEGRAM_BOT_TOKEN"),
            ("TELEGRAM_API_BASE", "api.telegram.org", "TELEGRAM_API_BASE"),
        ];
        for (name, value, needle) in cases {
            let err = setup_err(&with_token(&[(name, value)])).await;
            assert!(err.contains(needle), "{name}={value:?}: {err}");
            assert!(
                !err.contains("secret-part-of-the-token"),
                "the token leaked: {err}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_without_warmup_chats_is_refused() {
        let err = setup_err(&[("TELEGRAM_BOT_TOKEN", "123456:secret-part-of-the-token")]).await;
        assert!(err.contains("MEDIA_WARMUP_CHAT_IDS"), "{err}");
    }

    #[cfg(feature = "r2")]
    #[tokio::test]
    async fn an_incomplete_r2_configuration_names_what_is_missing() {
        let err = setup_err(&with_token(&[("R2_BUCKET", "media")])).await;
        assert!(
            err.contains("R2_ACCOUNT_ID") || err.contains("R2_ENDPOINT"),
            "{err}"
        );
        let err = setup_err(&with_token(&[
            ("R2_ENDPOINT", "http://127.0.0.1:9"),
            ("R2_BUCKET", "media"),
            ("R2_ACCESS_KEY_ID", "AKID"),
        ]))
        .await;
        assert!(err.contains("R2_SECRET_ACCESS_KEY"), "{err}");
    }

    #[tokio::test]
    async fn a_well_formed_environment_builds() {
        let setup = from_lookup(&from_pairs(&with_token(&[(
            "MEDIA_PREWARM_CONCURRENCY",
            "3",
        )])))
        .await
        .expect("setup");
        assert_eq!(setup.bot.as_str(), "123456");
        assert!(!setup.is_demo());
        let debug = format!("{setup:?}");
        assert!(
            !debug.contains("secret-part-of-the-token"),
            "the token leaked: {debug}"
        );
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn without_a_token_it_runs_in_demo_mode() {
        let dir = tempfile::tempdir().expect("dir");
        let media = dir.path().to_str().expect("utf-8").to_owned();
        let setup = from_lookup(&from_pairs(&[("PREWARM_MEDIA_DIR", &media)]))
            .await
            .expect("demo setup");
        assert!(setup.is_demo());
        let running = setup.engine.spawn();
        let key = setup
            .engine
            .save(
                &setup.bot,
                bytes::Bytes::from_static(b"%PDF-1.4 demo"),
                crate::MediaKind::Document,
            )
            .await
            .expect("save");
        let id = setup
            .engine
            .wait_ready(&key, std::time::Duration::from_secs(20))
            .await
            .expect("warm through the fake");
        let fake = setup.demo.as_ref().expect("the fake");
        assert!(
            fake.file(id.as_str()).is_some(),
            "the file_id is the fake's"
        );
        running.shutdown().await.expect("shutdown");
    }
}
