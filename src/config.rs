//! [`PrewarmEngine::from_env`]: an engine configured from the environment. The one place that
//! names concrete backends.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TELEGRAM_BOT_TOKEN` | the bot's token | required, unless `PREWARM_DEMO=1` |
//! | `PREWARM_DEMO` | `1`: demo mode (below) instead of Telegram | off |
//! | `TELEGRAM_API_BASE` | the Bot API's base URL (a local Bot API server's lifts the size limits) | `https://api.telegram.org` |
//! | `MEDIA_WARMUP_CHAT_IDS` | comma list of warm-up chat ids | required with a token |
//! | `R2_ENDPOINT` or `R2_ACCOUNT_ID`, `R2_BUCKET`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`, `R2_REGION`, `R2_PUBLIC_BASE_URL` | an R2 (or S3) bucket for the media | a local folder |
//! | `PREWARM_MEDIA_DIR` | the local folder for media when no R2 bucket is configured | `./prewarm-media`; in demo mode a folder under the system's temporary folder |
//! | `PREWARM_DB` | where the cache and the queue live: a file path (embedded SQLite), a `postgres://` URL, or `memory` (lost with the process); with PostgreSQL also the Telegram rate budget every process of the bot shares (`db::PostgresBudget`) | `./prewarm.db` (SQLite); unset with a `postgres://` `DATABASE_URL` and the `postgres` feature, that database; in demo mode, memory |
//! | `MEDIA_PREWARM_CONCURRENCY`, `MEDIA_PREWARM_INTERVAL_MS`, `MEDIA_PREWARM_RETRY_WEAK_ID` | see [`PrewarmEngineBuilder::from_env`] | |
//!
//! **Durable by default.** With no `PREWARM_DB`, queued jobs and file_ids are kept in the
//! SQLite file `./prewarm.db` (the default `sqlite` feature), so a restart loses neither.
//! `PREWARM_DB=memory` keeps them in memory, for tests and throw-away runs.
//!
//! **Demo mode, only when asked.** With `PREWARM_DEMO=1` (and the `testkit` feature), the
//! engine talks to the crate's fake Bot API ([`FakeBotApi`](crate::testkit::FakeBotApi)) on
//! loopback, with Telegram's real size and rate limits, and says so in a log line; nothing
//! leaves the machine. Its cache and queue stay in memory unless `PREWARM_DB` names a place:
//! the fake's file_ids die with it. [`PrewarmEngine::demo`] is the same from code. Without a
//! token and without `PREWARM_DEMO=1`, [`PrewarmEngine::from_env`] fails: a production
//! configuration that forgot its token must not look like it works.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::TieredCache;
use crate::engine::{PrewarmEngine, PrewarmEngineBuilder};
use crate::env::{self, Lookup};
use crate::error::{Error, Result};
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

    /// [`from_env`](Self::from_env) in demo mode, as with `PREWARM_DEMO=1` and whatever
    /// `TELEGRAM_BOT_TOKEN` says: the engine warms through the crate's fake Bot API on
    /// loopback. For examples and trials with no credentials.
    ///
    /// ```no_run
    /// # async fn demo() -> prewarm::Result<()> {
    /// let setup = prewarm::PrewarmEngine::demo().await?;
    /// assert!(setup.is_demo());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    #[cfg(feature = "testkit")]
    pub async fn demo() -> Result<Setup> {
        from_lookup(&|name: &str| match name {
            DEMO_VAR => Ok(Some("1".to_owned())),
            "TELEGRAM_BOT_TOKEN" => Ok(None),
            _ => env::process(name),
        })
        .await
    }
}

/// The variable that asks for demo mode.
const DEMO_VAR: &str = "PREWARM_DEMO";

pub(crate) async fn from_lookup(get: Lookup<'_>) -> Result<Setup> {
    let engine = PrewarmEngineBuilder::from_lookup(get);
    let demo_asked = demo_asked(get)?;
    match (get("TELEGRAM_BOT_TOKEN")?, demo_asked) {
        // The uploader's settings are checked before the database is opened (and the default
        // file created); it is built below, once the journal it takes is open.
        (Some(_), false) => drop(TelegramUploaderBuilder::from_lookup(get).build()?),
        (None, true) => {}
        (Some(_), true) => {
            return Err(Error::Config {
                message: "TELEGRAM_BOT_TOKEN and PREWARM_DEMO=1 are both set: unset \
                          PREWARM_DEMO to warm through Telegram, or unset the token for demo mode"
                    .to_owned(),
            });
        }
        (None, false) => {
            return Err(Error::Config {
                message: "TELEGRAM_BOT_TOKEN is not set: set it to the token BotFather gave (and \
                          MEDIA_WARMUP_CHAT_IDS to the warm-up chats), or set PREWARM_DEMO=1 to \
                          run against the crate's fake Bot API on loopback (demo mode)"
                    .to_owned(),
            });
        }
    }
    let budget = rate_budget(get, demo_asked).await?;
    // The durable store before the uploader: the uploader journals its sends there.
    let durable = durable(get, demo_asked).await?;
    let journal = durable.as_ref().map(|d| d.journal.clone());
    let (telegram, demo) = if demo_asked {
        demo_uploader(get, budget, journal).await?
    } else {
        let builder = with_budget(TelegramUploaderBuilder::from_lookup(get), budget);
        (with_journal(builder, journal).build()?, None)
    };
    let bot = crate::upload::Uploader::bot(&telegram).clone();
    let mut engine = engine.with_uploader(Arc::new(telegram.clone()));
    engine = engine.with_store(store(get, demo.is_some()).await?);
    if let Some(Durable { cache, queue, .. }) = durable {
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

/// Whether `PREWARM_DEMO` asks for demo mode.
fn demo_asked(get: Lookup<'_>) -> Result<bool> {
    match get(DEMO_VAR)?.as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(Error::Config {
            message: format!("{DEMO_VAR}={other:?} is not 1 (demo mode) or 0 (Telegram)"),
        }),
    }
}

#[cfg(feature = "testkit")]
type Demo = Option<crate::testkit::FakeBotApi>;
#[cfg(not(feature = "testkit"))]
type Demo = Option<std::convert::Infallible>;

fn with_budget(
    builder: TelegramUploaderBuilder,
    budget: Option<Arc<dyn crate::upload::RateBudget>>,
) -> TelegramUploaderBuilder {
    match budget {
        Some(budget) => builder.with_rate_budget(budget),
        None => builder,
    }
}

fn with_journal(
    builder: TelegramUploaderBuilder,
    journal: Option<Arc<dyn crate::upload::UploadJournal>>,
) -> TelegramUploaderBuilder {
    match journal {
        Some(journal) => builder.with_journal(journal),
        None => builder,
    }
}

/// With a PostgreSQL `PREWARM_DB`, the rate budget there: the processes of a bot sharing a
/// database share its Telegram limits. Otherwise `None`: the uploader's own, in the process.
async fn rate_budget(
    get: Lookup<'_>,
    demo: bool,
) -> Result<Option<Arc<dyn crate::upload::RateBudget>>> {
    #[cfg(feature = "postgres")]
    if let Some(url) = db_target(get, demo)?.filter(|t| is_postgres(t)) {
        // The same schema as the queue's, so that deployments kept apart stay apart here too.
        let mut builder = crate::db::PostgresBudget::builder(url);
        if let Some(schema) = get("PREWARM_DB_SCHEMA")? {
            builder = builder.with_schema(schema);
        }
        let budget = builder.connect().await?;
        return Ok(Some(Arc::new(budget)));
    }
    let _ = (get, demo);
    Ok(None)
}

#[cfg(any(feature = "postgres", feature = "cli"))]
fn is_postgres(target: &str) -> bool {
    let target = target.trim();
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

async fn demo_uploader(
    get: Lookup<'_>,
    budget: Option<Arc<dyn crate::upload::RateBudget>>,
    journal: Option<Arc<dyn crate::upload::UploadJournal>>,
) -> Result<(TelegramUploader, Demo)> {
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
            "PREWARM_DEMO=1: demo mode, warming through the crate's fake Bot API on loopback \
             (nothing is sent to Telegram)"
        );
        let telegram = with_journal(with_budget(TelegramUploaderBuilder::new(), budget), journal)
            .with_token(DEMO_TOKEN)
            .with_api_base(fake.base_url())
            .with_warmup_chats(chats)
            .build()?;
        Ok((telegram, Some(fake)))
    }
    #[cfg(not(feature = "testkit"))]
    {
        let _ = (get, budget, journal);
        Err(Error::Config {
            message: "PREWARM_DEMO=1 needs the `testkit` feature (the fake Bot API): enable it in \
                      Cargo.toml, or set TELEGRAM_BOT_TOKEN to warm through Telegram"
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
        return Err(Error::Config {
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

/// The durable backend's parts the engine and the uploader take.
struct Durable {
    cache: Arc<dyn crate::cache::FileIdCache>,
    queue: Arc<dyn crate::queue::PriorityQueue>,
    journal: Arc<dyn crate::upload::UploadJournal>,
}

/// The embedded database file used when `PREWARM_DB` is unset.
const DEFAULT_DB: &str = "prewarm.db";

/// The durable cache, queue and journal `PREWARM_DB` names (`None`: in memory, where a
/// journal would survive nothing, so the uploader gets none).
async fn durable(get: Lookup<'_>, demo: bool) -> Result<Option<Durable>> {
    let Some(target) = db_target(get, demo)? else {
        return Ok(None);
    };
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    {
        let store = crate::db::open(&target).await?;
        let cache = TieredCache::new(store.cache, FRONT_CAPACITY)?;
        Ok(Some(Durable {
            cache: Arc::new(cache),
            queue: store.queue,
            journal: store.journal,
        }))
    }
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    {
        let _ = (target, FRONT_CAPACITY);
        unreachable!("db_target names no database without a database feature")
    }
}

/// The durable cache and queue the environment names, opened as [`PrewarmEngine::from_env`]
/// opens them, but only when `PREWARM_DB` (or a PostgreSQL `DATABASE_URL`) names one
/// (`None` otherwise, and for `PREWARM_DB=memory`): for the operator's commands.
#[cfg(feature = "cli")]
pub(crate) async fn open_durable(get: Lookup<'_>) -> Result<Option<crate::db::DurableStore>> {
    // An operator's command inspects the database it is told of: it does not create
    // `./prewarm.db` in whatever folder it runs in.
    let named = get("PREWARM_DB")?.is_some()
        || get("DATABASE_URL")?.is_some_and(|url| cfg!(feature = "postgres") && is_postgres(&url));
    if !named {
        return Ok(None);
    }
    match db_target(get, false)? {
        Some(target) => crate::db::open(&target).await.map(Some),
        None => Ok(None),
    }
}

/// Where the cache and the queue live: a database target for [`crate::db::open`], or `None`
/// for memory.
fn db_target(get: Lookup<'_>, demo: bool) -> Result<Option<String>> {
    let target = match get("PREWARM_DB")? {
        Some(t) if t.eq_ignore_ascii_case("memory") => return Ok(None),
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
            // The fake's file_ids die with it: nothing worth keeping.
            _ if demo => return Ok(None),
            _ if cfg!(feature = "sqlite") => DEFAULT_DB.to_owned(),
            _ => {
                return Err(Error::Config {
                    message: "PREWARM_DB is not set and prewarm was built without the `sqlite` \
                              feature, so it has no default database: set PREWARM_DB to a \
                              postgres:// URL, enable `sqlite` (a default feature), or set \
                              PREWARM_DB=memory to keep the queue and the file_ids in memory \
                              (lost on every restart)"
                        .to_owned(),
                });
            }
        },
    };
    if !cfg!(any(feature = "sqlite", feature = "postgres")) {
        return Err(Error::Config {
            message: "PREWARM_DB is set but prewarm was built without the `sqlite` or `postgres` \
                      feature: enable one in Cargo.toml, or set PREWARM_DB=memory"
                .to_owned(),
        });
    }
    Ok(Some(target))
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
            ("PREWARM_DB", "memory"),
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

    #[tokio::test]
    async fn no_token_is_an_error_naming_the_token_and_demo_mode() {
        let err = setup_err(&[("PREWARM_DB", "memory")]).await;
        for needle in ["TELEGRAM_BOT_TOKEN", "PREWARM_DEMO=1"] {
            assert!(err.contains(needle), "{needle} missing: {err}");
        }
        let err = setup_err(&[("PREWARM_DEMO", "0")]).await;
        assert!(err.contains("TELEGRAM_BOT_TOKEN"), "{err}");
        let err = setup_err(&[("PREWARM_DEMO", "maybe")]).await;
        assert!(err.contains("PREWARM_DEMO=\"maybe\""), "{err}");
        let err = setup_err(&with_token(&[("PREWARM_DEMO", "1")])).await;
        assert!(
            err.contains("both set") && !err.contains("secret-part-of-the-token"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_and_cache_are_durable_unless_memory_is_asked_for() {
        let target = |pairs: &[(&str, &str)], demo: bool| {
            db_target(&from_pairs(pairs), demo).expect("a target")
        };
        #[cfg(feature = "sqlite")]
        assert_eq!(target(&[], false).as_deref(), Some(DEFAULT_DB));
        assert_eq!(target(&[("PREWARM_DB", "memory")], false), None);
        assert_eq!(target(&[("PREWARM_DB", "MEMORY")], false), None);
        assert_eq!(
            target(&[("PREWARM_DB", "/var/lib/bot/p.db")], false).as_deref(),
            Some("/var/lib/bot/p.db")
        );
        // The host's own database is not taken unless it is PostgreSQL.
        #[cfg(feature = "sqlite")]
        assert_eq!(
            target(&[("DATABASE_URL", "mysql://db/app")], false).as_deref(),
            Some(DEFAULT_DB)
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            target(&[("DATABASE_URL", "postgres://db/app")], false).as_deref(),
            Some("postgres://db/app")
        );
        // Demo mode keeps the fake's file_ids in memory unless told otherwise.
        assert_eq!(target(&[], true), None);
        assert_eq!(
            target(&[("PREWARM_DB", "demo.db")], true).as_deref(),
            Some("demo.db")
        );
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_database_file_keeps_jobs_across_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join(DEFAULT_DB);
        let db = db.to_str().expect("utf-8");
        let pairs = with_token(&[("PREWARM_DB", db)]);
        let setup = from_lookup(&from_pairs(&pairs)).await.expect("setup");
        let key = setup
            .engine
            .save(
                &setup.bot,
                bytes::Bytes::from_static(b"%PDF-1.4 kept"),
                crate::MediaKind::Document,
            )
            .await
            .expect("save");
        drop(setup);
        let again = from_lookup(&from_pairs(&pairs)).await.expect("setup again");
        let depth = again.engine.metrics().await.expect("metrics").queue;
        assert_eq!(depth.queued, 1, "the queued job of {key} was lost");
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_database_without_write_ahead_logging_is_refused() {
        // SQLite leaves an in-memory database in its own journal mode, silently.
        let err = crate::db::SqliteStore::open(":memory:")
            .await
            .expect_err("no WAL, no store");
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("write-ahead logging"), "{err}");
    }

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn demo_mode_only_when_asked() {
        let dir = tempfile::tempdir().expect("dir");
        let media = dir.path().to_str().expect("utf-8").to_owned();
        let setup = from_lookup(&from_pairs(&[
            ("PREWARM_MEDIA_DIR", &media),
            ("PREWARM_DEMO", "1"),
        ]))
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
