//! [`PostgresBudget`]: the rate budget of bots in PostgreSQL, shared by every process of a bot;
//! its design and cost are on the type.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::builder::validate_schema;
use super::pg_err;
use crate::error::{Error, Result};
use crate::media::BotId;
use crate::upload::{BudgetRequest, Grant, Rate, RateBudget};

/// The table and the functions, `{schema}` spliced in. Scope 0 is the bot, 1 the warms'
/// share, 2 a chat; times are microseconds since the epoch on the database's clock.
const SETUP: &str = r#"
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.rate_budget (
    bot TEXT NOT NULL,
    scope SMALLINT NOT NULL,
    chat BIGINT NOT NULL,
    tat_us BIGINT NOT NULL,
    paused_until_us BIGINT NOT NULL DEFAULT 0,
    slowdown DOUBLE PRECISION NOT NULL DEFAULT 1,
    PRIMARY KEY (bot, scope, chat)
);
CREATE OR REPLACE FUNCTION {schema}.rate_budget_take(
    p_bot TEXT, p_cost INTEGER, p_charge_chat BOOLEAN,
    p_bot_interval BIGINT, p_bot_tolerance BIGINT,
    p_share_interval BIGINT, p_share_tolerance BIGINT,
    p_chats BIGINT[], p_intervals BIGINT[], p_tolerances BIGINT[],
    OUT granted BIGINT, OUT wait_us BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_now BIGINT;
    v_bot {schema}.rate_budget;
    v_gate BIGINT;
    v_share_tat BIGINT;
    v_best INTEGER;
    v_ready BIGINT;
BEGIN
    -- The bot's row serializes every take and pause of the bot: no lost update, no deadlock.
    INSERT INTO {schema}.rate_budget (bot, scope, chat, tat_us) VALUES (p_bot, 0, 0, 0)
        ON CONFLICT DO NOTHING;
    SELECT * INTO v_bot FROM {schema}.rate_budget
        WHERE bot = p_bot AND scope = 0 AND chat = 0 FOR UPDATE;
    -- Read after the lock: a wait for it does not age the clock the decision uses.
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    v_gate := greatest(v_bot.tat_us - p_bot_tolerance, v_bot.paused_until_us);
    IF p_share_interval IS NOT NULL THEN
        SELECT r.tat_us INTO v_share_tat FROM {schema}.rate_budget r
            WHERE r.bot = p_bot AND r.scope = 1 AND r.chat = 0;
        v_gate := greatest(v_gate, coalesce(v_share_tat, 0) - p_share_tolerance);
    END IF;
    SELECT c.ord,
           greatest(coalesce(r.paused_until_us, 0),
                    CASE WHEN p_charge_chat THEN coalesce(r.tat_us, 0) - c.tol ELSE 0 END)
        INTO v_best, v_ready
        FROM unnest(p_chats, p_tolerances) WITH ORDINALITY AS c(chat, tol, ord)
        LEFT JOIN {schema}.rate_budget r ON r.bot = p_bot AND r.scope = 2 AND r.chat = c.chat
        ORDER BY 2, 1 LIMIT 1;
    IF v_best IS NULL THEN
        granted := NULL; wait_us := 1000000; RETURN;
    END IF;
    v_ready := greatest(v_ready, v_gate);
    IF v_ready > v_now THEN
        granted := NULL; wait_us := v_ready - v_now; RETURN;
    END IF;
    UPDATE {schema}.rate_budget
        SET tat_us = greatest(tat_us, v_now) + (p_bot_interval * slowdown * p_cost)::BIGINT,
            slowdown = greatest(1.0, slowdown * power(0.99, p_cost))
        WHERE bot = p_bot AND scope = 0 AND chat = 0;
    IF p_share_interval IS NOT NULL THEN
        INSERT INTO {schema}.rate_budget AS t (bot, scope, chat, tat_us)
            VALUES (p_bot, 1, 0, v_now + p_share_interval * p_cost)
            ON CONFLICT (bot, scope, chat) DO UPDATE
            SET tat_us = greatest(t.tat_us, v_now) + (p_share_interval * t.slowdown * p_cost)::BIGINT;
    END IF;
    IF p_charge_chat THEN
        INSERT INTO {schema}.rate_budget AS t (bot, scope, chat, tat_us)
            VALUES (p_bot, 2, p_chats[v_best], v_now + p_intervals[v_best] * p_cost)
            ON CONFLICT (bot, scope, chat) DO UPDATE
            SET tat_us = greatest(t.tat_us, v_now)
                         + (p_intervals[v_best] * t.slowdown * p_cost)::BIGINT,
                slowdown = greatest(1.0, t.slowdown * power(0.99, p_cost));
    END IF;
    granted := p_chats[v_best]; wait_us := 0;
END
$fn$;
CREATE OR REPLACE FUNCTION {schema}.rate_budget_pause(p_bot TEXT, p_chat BIGINT, p_retry_us BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_now BIGINT;
BEGIN
    INSERT INTO {schema}.rate_budget (bot, scope, chat, tat_us) VALUES (p_bot, 0, 0, 0)
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {schema}.rate_budget WHERE bot = p_bot AND scope = 0 AND chat = 0 FOR UPDATE;
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    UPDATE {schema}.rate_budget
        SET paused_until_us = greatest(paused_until_us, v_now + p_retry_us),
            slowdown = least(slowdown * 2, 16)
        WHERE bot = p_bot AND scope = 0 AND chat = 0;
    INSERT INTO {schema}.rate_budget AS t (bot, scope, chat, tat_us, paused_until_us, slowdown)
        VALUES (p_bot, 2, p_chat, 0, v_now + p_retry_us, 2)
        ON CONFLICT (bot, scope, chat) DO UPDATE
        SET paused_until_us = greatest(t.paused_until_us, EXCLUDED.paused_until_us),
            slowdown = least(t.slowdown * 2, 16);
END
$fn$;
"#;

/// Idle chat rows are swept once every this many takes of a handle.
const SWEEP_EVERY: u64 = 10_000;

/// Builds a [`PostgresBudget`].
#[must_use]
#[derive(Clone)]
pub struct PostgresBudgetBuilder {
    url: String,
    schema: String,
    pool_size: usize,
}

impl fmt::Debug for PostgresBudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresBudgetBuilder")
            .field("url", &"******")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresBudgetBuilder {
    /// The schema holding the table (default `prewarm`, as the store's): lowercase ASCII
    /// letters, digits and `_`, not starting with a digit, at most 50 characters. Every
    /// process of a bot must name the same one.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections held at once (default 4; at least 1). A process asks one request at
    /// a time per uploader, so a few suffice.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Connects and creates the table and functions where missing.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or schema name or a pool size of 0;
    /// [`Error::Backend`] when the database cannot be reached.
    pub async fn connect(self) -> Result<PostgresBudget> {
        let config = tokio_postgres::Config::from_str(&self.url).map_err(|e| Error::Config {
            message: format!(
                "the PostgreSQL URL of the rate budget is malformed ({e}): expected \
                 postgres://user[:password]@host[:port]/database"
            ),
        })?;
        validate_schema(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::Config {
                message: "the rate budget's PostgreSQL pool size is 0, expected at least 1"
                    .to_owned(),
            });
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(|e| Error::Config {
                message: format!("building the rate budget's PostgreSQL pool: {e}"),
            })?;
        let schema = self.schema;
        let client = pool.get().await.map_err(pool_err)?;
        // Processes starting together: one creates, the others find it made.
        let lock = format!("prewarm-budget:{schema}");
        client
            .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock])
            .await
            .map_err(|e| pg_err("taking the rate budget's setup lock", e))?;
        let created = client
            .batch_execute(&SETUP.replace("{schema}", &schema))
            .await
            .map_err(|e| pg_err("creating the rate budget's table", e));
        let unlocked = client
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock])
            .await
            .map_err(|e| pg_err("releasing the rate budget's setup lock", e));
        created?;
        unlocked?;
        Ok(PostgresBudget {
            inner: Arc::new(Inner {
                pool,
                take: format!(
                    "SELECT granted, wait_us FROM {schema}.rate_budget_take($1, $2, $3, $4, $5, \
                     $6, $7, $8, $9, $10)"
                ),
                pause: format!("SELECT {schema}.rate_budget_pause($1, $2, $3)"),
                sweep: format!(
                    "DELETE FROM {schema}.rate_budget WHERE scope = 2 \
                     AND tat_us < (extract(epoch FROM clock_timestamp()) - 3600) * 1000000 \
                     AND paused_until_us < (extract(epoch FROM clock_timestamp()) - 3600) * 1000000"
                ),
                schema,
                takes: AtomicU64::new(0),
            }),
        })
    }
}

/// The rate budget of bots in PostgreSQL, shared by every process that connects to the same
/// schema.
///
/// # Design
/// Each bucket (the bot's, the warms' share of it, each chat's) is one row holding a GCRA
/// theoretical arrival time, the end of the pause the last 429 set, and the slowdown since.
/// A send takes its slot by calling one PL/pgSQL function, `rate_budget_take`, which locks
/// the bot's row, reads the candidate chats' rows, picks the chat whose slot comes first,
/// and moves the bot's, the share's and that chat's `tat` forward, or answers how long until
/// a slot, all in one statement and one transaction. A 429 calls `rate_budget_pause`, which
/// moves the pause of the chat and the bot forward. Times come from the database's clock
/// (`clock_timestamp()`), so hosts with skewed clocks agree.
///
/// Why this design over the alternatives:
/// - *One warming owner per bot with a lease* would keep warms in one process, but sends to
///   users come from every process and must draw from the same budget, so a shared budget
///   is needed anyway; and an owner's death stops warming for a whole lease.
/// - *A shared ban table spread by NOTIFY* tells the others of a 429 only after the
///   notification arrives, and a send may leave in between: here every send reads the pause
///   in the same statement that takes its slot, so a 429 recorded by any process holds for
///   every send that starts after it.
/// - A bucket holds no per-process share, so when a process dies nothing has to be handed
///   back: its share returns at once (well within one lease), and the others' sends fill it.
///
/// # Cost
/// One round trip per send (the take), plus one per 429 (the pause); a process asks one
/// request at a time, so waiting workers add one round trip per wake-up between them. The
/// bot's row is the lock every send of the bot passes: at Telegram's 30 messages a second
/// that is far below what one row takes. `benches/budget.rs` measures a take beside the
/// in-process budget's (BENCHMARKS.md).
///
/// The table (`rate_budget`) and the functions are created idempotently in the schema when
/// the budget connects, under an advisory lock so that processes starting together do not
/// race. Rows of users' chats idle for an hour are deleted now and then.
///
/// ```no_run
/// use std::sync::Arc;
/// use prewarm::db::PostgresBudget;
/// use prewarm::TelegramUploader;
///
/// # async fn demo() -> prewarm::Result<()> {
/// let budget = PostgresBudget::builder("postgres://postgres@127.0.0.1/app").connect().await?;
/// let uploader = TelegramUploader::from_env()
///     .with_rate_budget(Arc::new(budget))
///     .build()?;
/// # let _ = uploader; Ok(()) }
/// ```
///
/// # Clone
/// Clones share the connection pool.
#[derive(Clone)]
pub struct PostgresBudget {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    schema: String,
    take: String,
    pause: String,
    sweep: String,
    takes: AtomicU64,
}

impl fmt::Debug for PostgresBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBudget")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresBudget {
    /// A builder for the database at `url` (`postgres://...`).
    pub fn builder(url: impl Into<String>) -> PostgresBudgetBuilder {
        PostgresBudgetBuilder {
            url: url.into(),
            schema: "prewarm".to_owned(),
            pool_size: 4,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn interval_tolerance(rate: Rate) -> (i64, i64) {
    (micros(rate.interval()), micros(rate.kept_tolerance()))
}

#[async_trait]
impl RateBudget for PostgresBudget {
    async fn take(&self, r: &BudgetRequest<'_>) -> Result<Grant> {
        let inner = &self.inner;
        let client = inner.pool.get().await.map_err(pool_err)?;
        if inner.takes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1
            && let Err(e) = client.execute(inner.sweep.as_str(), &[]).await
        {
            tracing::debug!(error = %e, "could not sweep idle rate budget rows");
        }
        let statement = client
            .prepare_cached(&inner.take)
            .await
            .map_err(|e| pg_err("preparing the rate budget's take", e))?;
        let (bot_interval, bot_tolerance) = interval_tolerance(r.bot_rate);
        let share = r.warm_share.map(interval_tolerance);
        let chats: Vec<i64> = r.chats.iter().map(|c| c.0).collect();
        let (intervals, tolerances): (Vec<i64>, Vec<i64>) =
            r.chats.iter().map(|c| interval_tolerance(c.1)).unzip();
        let cost = i32::try_from(r.cost.max(1)).unwrap_or(i32::MAX);
        let row = client
            .query_one(
                &statement,
                &[
                    &r.bot.as_str(),
                    &cost,
                    &r.charge_chat,
                    &bot_interval,
                    &bot_tolerance,
                    &share.map(|s| s.0),
                    &share.map(|s| s.1),
                    &chats,
                    &intervals,
                    &tolerances,
                ],
            )
            .await
            .map_err(|e| pg_err("taking a send slot from the rate budget", e))?;
        let granted: Option<i64> = row.get(0);
        let wait: Option<i64> = row.get(1);
        Ok(match granted {
            Some(chat) => Grant::Go(chat),
            None => Grant::Wait(Duration::from_micros(
                u64::try_from(wait.unwrap_or(0)).unwrap_or(0).max(1_000),
            )),
        })
    }

    async fn pause(&self, bot: &BotId, chat: i64, retry_after: Duration) -> Result<()> {
        let client = self.inner.pool.get().await.map_err(pool_err)?;
        client
            .execute(
                self.inner.pause.as_str(),
                &[&bot.as_str(), &chat, &micros(retry_after)],
            )
            .await
            .map_err(|e| pg_err("recording a pause in the rate budget", e))?;
        Ok(())
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::Backend {
        backend: "postgres",
        message: format!("getting a connection for the rate budget: {e}"),
        retryable: true,
    }
}
