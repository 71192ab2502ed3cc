//! The shared backend: PostgreSQL through tokio-postgres, pooled by deadpool-postgres.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{JobRow, Ranks, aging_cutoff, key_from_row, ms, ts};
use crate::cache::FileIdCache;
use crate::error::{Error, Result};
use crate::media::{BotId, FileId, Job, MediaKey, Timestamp};
use crate::queue::{
    BotSummary, Branch, Claim, Claimed, JobInfo, Lease, PriorityPolicy, PriorityQueue, PushOutcome,
    QueueDepth, pick,
};

/// Versioned migrations, applied in order, each once, recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("migrations/postgres/0001_init.sql")),
    (
        2,
        "claims",
        include_str!("migrations/postgres/0002_claims.sql"),
    ),
    (
        3,
        "claim_log",
        include_str!("migrations/postgres/0003_claim_log.sql"),
    ),
];

/// Opening a connection fails after this long by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A statement is cancelled after this long by default.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The database server's clock in unix milliseconds, as SQL.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Which clock a [`PostgresStore`]'s leases and aging follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueClock {
    /// The database server's clock (default), so that instances on hosts whose clocks
    /// disagree still agree on when a lease lapses and when a job has aged. Every claim reads
    /// it; between claims the store adds its own monotonic time to the last reading. The
    /// `now` passed to the queue's methods, and a pushed job's `enqueued_at`, are then
    /// replaced by this time.
    #[default]
    Database,
    /// The `now` each caller passes, as the other backends do: for tests that drive time,
    /// or hosts whose clocks are known to agree.
    Caller,
}

/// The store's view of time (see [`QueueClock`]).
#[derive(Debug)]
struct Clock {
    mode: QueueClock,
    /// The last reading of the database's clock (unix ms) and when it was taken.
    base: std::sync::Mutex<(i64, std::time::Instant)>,
}

impl Clock {
    /// The time an operation called with the caller's `now` runs at.
    fn now(&self, caller: Timestamp) -> Timestamp {
        match self.mode {
            QueueClock::Caller => caller,
            QueueClock::Database => {
                // A plain lock: two reads of a copy, never held across an await.
                let (ms, at) = *self.base.lock().unwrap_or_else(|p| p.into_inner());
                let elapsed = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
                ts(ms.saturating_add(elapsed))
            }
        }
    }

    /// The caller's time for SQL, or `None` where the database's clock rules.
    fn param(&self, caller: Timestamp) -> Option<i64> {
        (self.mode == QueueClock::Caller).then(|| ms(caller))
    }

    /// Records a reading of the database's clock.
    fn set(&self, db_ms: i64) {
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) = (db_ms, std::time::Instant::now());
    }
}

/// How often a race between a statement's snapshot and a concurrent writer is retried.
const RACE_RETRIES: usize = 3;

/// Builds a [`PostgresStore`].
#[must_use]
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    pool_size: usize,
    policy: PriorityPolicy,
    poll_interval: Duration,
    synchronous_commit: bool,
    clock: QueueClock,
    depth_ttl: Duration,
    connect_timeout: Duration,
    statement_timeout: Duration,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &"******")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("policy", &self.policy)
            .field("poll_interval", &self.poll_interval)
            .field("synchronous_commit", &self.synchronous_commit)
            .field("clock", &self.clock)
            .field("depth_ttl", &self.depth_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the tables (default `prewarm`): lowercase ASCII letters, digits and
    /// `_`, not starting with a digit, at most 50 characters. Several stores in one database
    /// stay apart by schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections held at once (default 16; at least 1). One more is held to listen.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The order jobs are claimed in (default: [`PriorityPolicy::default`]). Every instance
    /// sharing a schema must use the same policy.
    pub fn with_policy(mut self, policy: PriorityPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often the notifier is raised even when no notification came (default 1 s): the
    /// bound on how late an engine hears of work should a notification be lost (the
    /// listening connection dropped and reconnected).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long opening a connection may take (default 10 s; zero waits as long as the
    /// operating system does). A store whose database is unreachable fails within it instead
    /// of hanging.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// PostgreSQL's `statement_timeout` on the store's pooled connections (default 30 s; zero
    /// for none): a statement stuck behind a lock fails, retryable, instead of holding a
    /// connection and a worker. Migrations are not bound by it (they wait for each other).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long an answer of [`depth`](PriorityQueue::depth) is reused (default 1 s; zero
    /// counts on every call). Metrics scrapes and dashboards polling it then cost one count per
    /// interval per instance, whatever their rate; each count reads the jobs' partial indexes,
    /// never the whole table.
    pub fn with_depth_ttl(mut self, ttl: Duration) -> Self {
        self.depth_ttl = ttl;
        self
    }

    /// Which clock leases and aging follow (default [`QueueClock::Database`]).
    pub fn with_clock(mut self, clock: QueueClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether each write waits for PostgreSQL to flush it to disk (default `true`).
    ///
    /// `false` sets `synchronous_commit = off` on the store's connections: writes return
    /// before the flush, several times faster under load. An engine process crashing still
    /// loses nothing; a crash of the *PostgreSQL server* (or its machine) may lose the writes
    /// of its last fraction of a second (at most three `wal_writer_delay`s, 600 ms by
    /// default): a job pushed then may vanish (the media is warmed again when next sent) and
    /// a finished job may come back (it finds its file_id cached and completes without an
    /// upload, unless that write was lost too). The database never becomes inconsistent.
    pub fn with_synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }

    /// Connects, runs the migrations the schema lacks (under an advisory lock, so instances
    /// starting together do not race) and starts listening for other instances' pushes.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or schema name, a pool size of 0, or a schema
    /// written by a newer prewarm; [`Error::Backend`] when the database cannot be reached.
    pub async fn connect(self) -> Result<PostgresStore> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| Error::Config {
                message: format!(
                    "the PostgreSQL URL is malformed ({e}): expected \
                     postgres://user[:password]@host[:port]/database"
                ),
            })?;
        if !self.connect_timeout.is_zero() {
            config.connect_timeout(self.connect_timeout);
        }
        validate_schema(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::Config {
                message: "the PostgreSQL pool size is 0, expected at least 1".to_owned(),
            });
        }
        if self.poll_interval.is_zero() {
            return Err(Error::Config {
                message: "the PostgreSQL poll interval is zero, expected at least 1 ms".to_owned(),
            });
        }
        let db_now = migrate(&config, &self.schema).await?;
        let clock = Clock {
            mode: self.clock,
            base: std::sync::Mutex::new((db_now, std::time::Instant::now())),
        };

        let mut pooled = config.clone();
        let mut options = Vec::new();
        if !self.synchronous_commit {
            options.push("-c synchronous_commit=off".to_owned());
        }
        if !self.statement_timeout.is_zero() {
            options.push(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        }
        if !options.is_empty() {
            pooled.options(options.join(" "));
        }
        let manager = Manager::from_config(
            pooled,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(|e| Error::Config {
                message: format!("building the PostgreSQL pool: {e}"),
            })?;
        let sql = Sql::new(&self.schema);
        let notify = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            config,
            sql.channel.clone(),
            notify.clone(),
            self.poll_interval,
        ))
        .abort_handle();
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let (pushes, push_rx) = mpsc::unbounded_channel();
            let (completes, complete_rx) = mpsc::unbounded_channel();
            tokio::spawn(batcher(weak.clone(), push_rx, |store, batch| {
                Box::pin(async move { store.push_batch(batch).await })
            }));
            tokio::spawn(batcher(weak.clone(), complete_rx, |store, batch| {
                Box::pin(async move { store.complete_batch(batch).await })
            }));
            Shared {
                clock,
                depth_cache: tokio::sync::Mutex::new(None),
                depth_ttl: self.depth_ttl,
                turn: AtomicU64::new(0),
                pushes,
                completes,
                pool,
                sql,
                policy: self.policy,
                notify,
                schema: self.schema,
                listener,
            }
        });
        Ok(PostgresStore { shared })
    }
}

/// A whole number from the environment within `min..=max`, naming the variable when not.
fn number(env: crate::env::Lookup<'_>, name: &str, min: u64, max: u64) -> Result<Option<u64>> {
    let Some(raw) = env(name)? else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(Error::Config {
            message: format!("{name} is {raw:?}: expected a whole number from {min} to {max}"),
        }),
    }
}

fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 50
        && !schema.as_bytes()[0].is_ascii_digit()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            message: format!(
                "the PostgreSQL schema name {schema:?} is invalid: use 1 to 50 lowercase ASCII \
                 letters, digits and '_', not starting with a digit"
            ),
        })
    }
}

pub(super) fn pg_err(context: &str, e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let retryable = e.is_closed()
        || match e.code() {
            None => true, // I/O: the connection broke
            Some(code) => {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
                    || code.code().starts_with("08")
            }
        };
    // `Display` of a tokio-postgres error is only its kind; the server's message is in the
    // source (a DbError), which never holds the connection password.
    let detail = match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    };
    Error::Backend {
        backend: "postgres",
        message: format!("{context}: {detail}"),
        retryable,
    }
}

/// Runs the migrations the schema lacks; answers the database's clock (unix ms).
async fn migrate(config: &tokio_postgres::Config, schema: &str) -> Result<i64> {
    let (mut client, conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_err("connecting to PostgreSQL to migrate", e))?;
    let conn = tokio::spawn(conn);
    let result = async {
        // A session lock: instances starting together migrate one after the other, and the
        // lock goes with the connection should this one die.
        let lock_key = format!("prewarm:{schema}");
        client
            .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key])
            .await
            .map_err(|e| pg_err("taking the migration lock", e))?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ( \
                   version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|e| pg_err("creating the schema", e))?;
        let current: i32 = client
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"),
                &[],
            )
            .await
            .map_err(|e| pg_err("reading schema_migrations", e))?
            .get(0);
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > latest {
            return Err(Error::Config {
                message: format!(
                    "schema {schema} is at version {current}, newer than this prewarm knows \
                     ({latest}): upgrade prewarm or use another schema"
                ),
            });
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_err("starting a migration", e))?;
            tx.batch_execute(&sql.replace("{schema}", schema))
                .await
                .map_err(|e| pg_err(&format!("applying migration {version} ({name})"), e))?;
            tx.execute(
                &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
                &[version, name],
            )
            .await
            .map_err(|e| pg_err("recording a migration", e))?;
            tx.commit()
                .await
                .map_err(|e| pg_err("committing a migration", e))?;
            tracing::info!(schema, version, name, "postgres migration applied");
        }
        client
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key])
            .await
            .map_err(|e| pg_err("releasing the migration lock", e))?;
        let now: i64 = client
            .query_one(&format!("SELECT {DB_NOW_MS}"), &[])
            .await
            .map_err(|e| pg_err("reading the database's clock", e))?
            .get(0);
        Ok(now)
    }
    .await;
    drop(client);
    let _ = conn.await;
    result
}

/// Listens on the store's channel and raises `notify` for each notification (a burst of
/// notifications while nobody waits raises nothing: `notify_waiters` coalesces), on every
/// (re)connection, and every `poll` as a fallback. Reconnects with backoff.
async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    notify: Arc<Notify>,
    poll: Duration,
) {
    let mut failures = 0u32;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let n = notify.clone();
                let driver = async move {
                    loop {
                        match futures::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => n.notify_waiters(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the PostgreSQL listener lost its connection");
                                break;
                            }
                            None => break,
                        }
                    }
                };
                let work = async {
                    client.batch_execute(&format!("LISTEN {channel}")).await?;
                    failures = 0;
                    // We may have missed notifications while not listening.
                    notify.notify_waiters();
                    loop {
                        tokio::time::sleep(poll).await;
                        notify.notify_waiters();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), tokio_postgres::Error>(())
                };
                tokio::select! {
                    () = driver => {}
                    r = work => if let Err(e) = r {
                        tracing::warn!(error = %e, "LISTEN failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the PostgreSQL listener cannot connect"),
        }
        failures = failures.saturating_add(1);
        let pause = Duration::from_millis(100 << failures.min(6))
            .min(poll.max(Duration::from_millis(100)) * 5);
        // Meanwhile, waiters are woken by the poll fallback's cadence.
        notify.notify_waiters();
        tokio::time::sleep(pause).await;
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

struct PushReq {
    job: Job,
    now: Timestamp,
    reply: Reply<PushOutcome>,
}

struct CompleteReq {
    lease: Lease,
    reply: Reply<()>,
}

/// Most requests one batch statement carries.
const MAX_BATCH: usize = 512;

fn batcher_gone() -> Error {
    Error::Backend {
        backend: "postgres",
        message: "the store's batching task stopped".to_owned(),
        retryable: false,
    }
}

/// Group commit for pushes and completes: takes every request waiting, runs them as one
/// statement, answers each; meanwhile the next requests gather. A lone request runs at
/// once, so an idle store adds no delay. Stops when the store's last handle drops.
async fn batcher<T: Send + 'static>(
    store: Weak<Shared>,
    mut rx: mpsc::UnboundedReceiver<T>,
    run: impl Fn(
        PostgresStore,
        Vec<T>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    + Send
    + 'static,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let Some(shared) = store.upgrade() else {
            return;
        };
        run(PostgresStore { shared }, batch).await;
    }
}

/// The statements, with the schema spliced in once.
struct Sql {
    channel: String,
    get: String,
    put: String,
    invalidate: String,
    invalidate_check: String,
    push: String,
    push_batch: String,
    complete_batch: String,
    wake: String,
    candidates: String,
    candidates_fresh: String,
    claim: String,
    extend: String,
    complete: String,
    held: String,
    retry: String,
    fail: String,
    release: String,
    set_demand: String,
    get_job: String,
    dead: String,
    requeue_select: String,
    requeue_update: String,
    notify: String,
    depth: String,
    record_rejection: String,
    clear_rejections: String,
}

/// The columns describing one job (`mc` is `media_cache`).
fn job_columns(s: &str) -> String {
    format!(
        "mc.bot_slug, mc.sha256, mc.kind, \
         coalesce((SELECT ms.size FROM {s}.media_store ms WHERE ms.sha256 = mc.sha256), 0), \
         mc.enqueued_at, mc.retry_count, mc.demand, mc.job_state, mc.next_retry_at, \
         mc.lease_owner, mc.lease_expires_at, mc.last_error"
    )
}

impl Sql {
    fn new(s: &str) -> Self {
        let key = "bot_slug = $1 AND sha256 = $2 AND kind = $3";
        let held =
            format!("{key} AND job_state = 'claimed' AND lease_owner = $4 AND fencing_token = $5");
        let cached =
            format!("{key} AND file_id IS NOT NULL AND ($4::text IS NULL OR file_id = $4::text)");
        let cols = job_columns(s);
        let channel = format!("prewarm_{s}");
        Self {
            get: format!("SELECT file_id FROM {s}.media_cache WHERE {key} AND status = 'ready'"),
            put: format!(
                "INSERT INTO {s}.media_cache (bot_slug, sha256, kind, file_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (bot_slug, sha256, kind) \
                 DO UPDATE SET file_id = EXCLUDED.file_id, updated_at = now()"
            ),
            // The two statements touch disjoint rows (with or without a job): one of them
            // removes the file_id, and a row left with neither file_id nor job goes.
            invalidate: format!(
                "WITH d AS (DELETE FROM {s}.media_cache WHERE {cached} AND job_state IS NULL \
                   RETURNING 1), \
                 u AS (UPDATE {s}.media_cache SET file_id = NULL, updated_at = now() \
                   WHERE {cached} AND job_state IS NOT NULL RETURNING 1) \
                 SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u)"
            ),
            invalidate_check: format!("SELECT count(*) FROM {s}.media_cache WHERE {cached}"),
            // One upsert. In DO UPDATE, `mc.` is the row as it was: every SET sees the old
            // state, and the outcome is kept in `last_push` for RETURNING.
            push: format!(
                "WITH ms AS ( \
                   INSERT INTO {s}.media_store (sha256, object_key, size) \
                   VALUES ($2, $15::text, $4::bigint) ON CONFLICT (sha256) DO NOTHING), \
                 up AS ( \
                   INSERT INTO {s}.media_cache AS mc (bot_slug, sha256, kind, job_state, \
                     enqueued_at, retry_count, demand, rank_plain, rank_demanded, priority, last_push) \
                   VALUES ($1, $2, $3, 'queued', $5::bigint, $6::integer, $7::boolean, $8::bigint, \
                     $9::bigint, $10::bigint, 'queued') \
                   ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET \
                     last_push = CASE WHEN mc.job_state IS NULL THEN 'queued' \
                       WHEN mc.job_state = 'dead' THEN 'revived' ELSE 'merged' END, \
                     enqueued_at = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.enqueued_at \
                       WHEN mc.job_state = 'dead' THEN $11::bigint ELSE mc.enqueued_at END, \
                     retry_count = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.retry_count \
                       WHEN mc.job_state = 'dead' THEN 0 ELSE mc.retry_count END, \
                     demand = CASE WHEN mc.job_state IS NULL OR mc.job_state = 'dead' \
                       THEN EXCLUDED.demand ELSE (mc.demand OR EXCLUDED.demand) END, \
                     rank_plain = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_plain \
                       WHEN mc.job_state = 'dead' THEN $12::bigint ELSE mc.rank_plain END, \
                     rank_demanded = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_demanded \
                       WHEN mc.job_state = 'dead' THEN $13::bigint ELSE mc.rank_demanded END, \
                     priority = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.priority \
                       WHEN mc.job_state = 'dead' THEN $14::bigint \
                       WHEN mc.demand OR EXCLUDED.demand THEN mc.rank_demanded \
                       ELSE mc.rank_plain END, \
                     dead_seq = NULL, \
                     rerun = CASE WHEN mc.job_state = 'claimed' THEN true \
                       WHEN mc.job_state IN ('queued', 'delayed') THEN mc.rerun ELSE false END, \
                     job_state = CASE WHEN mc.job_state IS NULL OR mc.job_state = 'dead' \
                       THEN 'queued' ELSE mc.job_state END, \
                     updated_at = now() \
                   RETURNING mc.last_push), \
                 n AS (SELECT pg_notify($16::text, '') FROM up WHERE up.last_push <> 'merged') \
                 SELECT up.last_push, (SELECT count(*) FROM n) FROM up"
            ),
            // The batch form for media without a dead job (those are left out of RETURNING and
            // go one by one). Rows are sorted by key by the caller, for a stable lock order.
            push_batch: format!(
                "WITH input AS ( \
                   SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], \
                     $5::bigint[], $6::integer[], $7::boolean[], $8::bigint[], $9::bigint[], \
                     $10::bigint[], $11::text[]) WITH ORDINALITY \
                   AS i(bot_slug, sha256, kind, size, enqueued_at, retry_count, demand, \
                     rank_plain, rank_demanded, priority, object_key, n)), \
                 ms AS ( \
                   INSERT INTO {s}.media_store (sha256, object_key, size) \
                   SELECT DISTINCT ON (sha256) sha256, object_key, size FROM input \
                   ORDER BY sha256 ON CONFLICT (sha256) DO NOTHING), \
                 up AS ( \
                   INSERT INTO {s}.media_cache AS mc (bot_slug, sha256, kind, job_state, \
                     enqueued_at, retry_count, demand, rank_plain, rank_demanded, priority, last_push) \
                   SELECT bot_slug, sha256, kind, 'queued', enqueued_at, retry_count, demand, \
                     rank_plain, rank_demanded, priority, 'queued' FROM input ORDER BY n \
                   ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET \
                     last_push = CASE WHEN mc.job_state IS NULL THEN 'queued' ELSE 'merged' END, \
                     enqueued_at = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.enqueued_at \
                       ELSE mc.enqueued_at END, \
                     retry_count = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.retry_count \
                       ELSE mc.retry_count END, \
                     demand = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.demand \
                       ELSE (mc.demand OR EXCLUDED.demand) END, \
                     rank_plain = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_plain \
                       ELSE mc.rank_plain END, \
                     rank_demanded = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_demanded \
                       ELSE mc.rank_demanded END, \
                     priority = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.priority \
                       WHEN mc.demand OR EXCLUDED.demand THEN mc.rank_demanded \
                       ELSE mc.rank_plain END, \
                     rerun = CASE WHEN mc.job_state = 'claimed' THEN true \
                       WHEN mc.job_state IN ('queued', 'delayed') THEN mc.rerun ELSE false END, \
                     job_state = coalesce(mc.job_state, 'queued'), \
                     updated_at = now() \
                   WHERE mc.job_state IS DISTINCT FROM 'dead' \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.last_push), \
                 n AS (SELECT pg_notify($12::text, '') \
                   WHERE EXISTS (SELECT 1 FROM up WHERE up.last_push <> 'merged')) \
                 SELECT up.*, (SELECT count(*) FROM n) FROM up"
            ),
            complete_batch: format!(
                "WITH input AS ( \
                   SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], \
                     $5::bigint[]) AS i(bot_slug, sha256, kind, owner, token)), \
                 d AS (DELETE FROM {s}.media_cache mc USING input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.file_id IS NULL AND NOT mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 u AS (UPDATE {s}.media_cache mc SET job_state = NULL, lease_owner = NULL, \
                   lease_expires_at = NULL, next_retry_at = NULL, demand = false, \
                   updated_at = now() FROM input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.file_id IS NOT NULL AND NOT mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 r AS (UPDATE {s}.media_cache mc SET job_state = 'queued', rerun = false, \
                   retry_count = 0, lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = now() FROM input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 n AS (SELECT pg_notify($6::text, '') WHERE EXISTS (SELECT 1 FROM r)) \
                 SELECT * FROM d UNION ALL SELECT * FROM u UNION ALL \
                 SELECT r.* FROM r LEFT JOIN n ON true"
            ),
            // Due retries and lapsed leases return to the queue; rows another claimer is
            // moving are skipped, not waited for.
            // $1: the caller's time, or NULL for the database's clock; answers the time
            // used.
            wake: format!(
                "WITH t AS (SELECT coalesce($1::bigint, {DB_NOW_MS}) AS now), \
                 d AS (UPDATE {s}.media_cache SET job_state = 'queued', next_retry_at = NULL \
                   WHERE id IN (SELECT id FROM {s}.media_cache WHERE job_state = 'delayed' \
                     AND next_retry_at <= (SELECT now FROM t) FOR UPDATE SKIP LOCKED) \
                   RETURNING 1), \
                 l AS (UPDATE {s}.media_cache SET job_state = 'queued', lease_owner = NULL, \
                   lease_expires_at = NULL \
                   WHERE id IN (SELECT id FROM {s}.media_cache WHERE job_state = 'claimed' \
                     AND lease_expires_at <= (SELECT now FROM t) FOR UPDATE SKIP LOCKED) \
                   RETURNING 1) \
                 SELECT (SELECT now FROM t), (SELECT count(*) FROM d) + (SELECT count(*) FROM l)"
            ),
            // One bot's list per LATERAL branch, each an index range scan with its own LIMIT
            // (ix_media_cache_demanded, _aged, _fresh), locked so that concurrent claimers
            // skip each other's candidates. $1 the bots, $2 the aging cutoff, $3 the limit.
            candidates: format!(
                "WITH b AS (SELECT * FROM unnest($1::text[]) WITH ORDINALITY AS b(slug, i)), \
                 d AS (SELECT b.i, 0 AS branch, c.id, c.ord FROM b CROSS JOIN LATERAL ( \
                   SELECT id, priority AS ord FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND demand \
                   ORDER BY priority, id LIMIT $3 FOR UPDATE SKIP LOCKED) c), \
                 a AS (SELECT b.i, 1 AS branch, c.id, c.ord FROM b CROSS JOIN LATERAL ( \
                   SELECT id, enqueued_at AS ord FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND NOT demand \
                   AND enqueued_at <= $2::bigint \
                   ORDER BY enqueued_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c) \
                 SELECT * FROM d UNION ALL SELECT * FROM a"
            ),
            // Fresh jobs, read only for the bots whose demanded and aged lists cannot fill
            // the claim: behind a backlog older than the aging bound, this never runs.
            candidates_fresh: format!(
                "SELECT b.i, 2, c.id, c.priority \
                 FROM unnest($1::text[]) WITH ORDINALITY AS b(slug, i) \
                 CROSS JOIN LATERAL ( \
                   SELECT id, priority FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND NOT demand \
                   AND enqueued_at > $2::bigint \
                   ORDER BY priority, id LIMIT $3 FOR UPDATE SKIP LOCKED) c"
            ),
            // $1 the picked ids in claim order.
            claim: format!(
                "WITH claimed AS ( \
                   UPDATE {s}.media_cache mc SET job_state = 'claimed', lease_owner = $2, \
                     lease_expires_at = $3, fencing_token = nextval('{s}.fencing_seq'), \
                     updated_at = now() \
                   FROM unnest($1::bigint[]) WITH ORDINALITY AS p(id, n) WHERE mc.id = p.id \
                   RETURNING p.n, mc.id, {cols}, mc.fencing_token), \
                 due AS (SELECT LEAST( \
                   (SELECT min(next_retry_at) FROM {s}.media_cache WHERE job_state = 'delayed'), \
                   (SELECT min(lease_expires_at) FROM {s}.media_cache WHERE job_state = 'claimed') \
                 ) AS t) \
                 SELECT c.*, due.t FROM due LEFT JOIN claimed c ON true"
            ),
            extend: format!(
                "WITH u AS (UPDATE {s}.media_cache SET lease_expires_at = $6, updated_at = now() \
                   WHERE {held} RETURNING 1) SELECT count(*) FROM u"
            ),
            // A push merged while the job was held (`rerun`) queues it again.
            complete: format!(
                "WITH d AS (DELETE FROM {s}.media_cache WHERE {held} AND file_id IS NULL \
                   AND NOT rerun RETURNING 1), \
                 u AS (UPDATE {s}.media_cache SET job_state = NULL, lease_owner = NULL, \
                   lease_expires_at = NULL, next_retry_at = NULL, demand = false, \
                   updated_at = now() WHERE {held} AND file_id IS NOT NULL AND NOT rerun \
                   RETURNING 1), \
                 r AS (UPDATE {s}.media_cache SET job_state = 'queued', rerun = false, \
                   retry_count = 0, lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = now() WHERE {held} AND rerun RETURNING 1), \
                 n AS (SELECT pg_notify($6::text, '') FROM r) \
                 SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u) \
                   + (SELECT count(*) FROM r), (SELECT count(*) FROM n)"
            ),
            held: format!("SELECT count(*) FROM {s}.media_cache WHERE {held}"),
            retry: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'delayed', next_retry_at = $6, \
                   retry_count = retry_count + $7, last_error = $8, lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, updated_at = now() \
                   WHERE {held} RETURNING 1), \
                 n AS (SELECT pg_notify($9::text, '') FROM u) \
                 SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"
            ),
            fail: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'dead', \
                   retry_count = retry_count + 1, last_error = $6, lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, dead_seq = nextval('{s}.media_cache_dead_seq'), \
                   updated_at = now() WHERE {held} RETURNING 1) SELECT count(*) FROM u"
            ),
            release: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'queued', lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, updated_at = now() \
                   WHERE {held} RETURNING 1), \
                 n AS (SELECT pg_notify($6::text, '') FROM u) \
                 SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"
            ),
            // $4: the demand to set (promote, clear_demand).
            set_demand: format!(
                "UPDATE {s}.media_cache SET demand = $4, \
                 priority = CASE WHEN $4 THEN rank_demanded ELSE rank_plain END, \
                 updated_at = now() WHERE {key} AND job_state IN ('queued', 'delayed', 'claimed')"
            ),
            get_job: format!(
                "SELECT {cols} FROM {s}.media_cache mc WHERE mc.bot_slug = $1 AND mc.sha256 = $2 \
                 AND mc.kind = $3 AND mc.job_state IS NOT NULL"
            ),
            dead: format!(
                "SELECT {cols} FROM {s}.media_cache mc WHERE mc.job_state = 'dead' \
                 ORDER BY mc.dead_seq LIMIT $1"
            ),
            requeue_select: format!(
                "SELECT mc.id, {cols} FROM {s}.media_cache mc WHERE mc.job_state = 'dead' \
                 AND ($1::text IS NULL OR (mc.bot_slug = $1::text AND mc.sha256 = $2::bytea \
                 AND mc.kind = $3::text)) \
                 FOR UPDATE"
            ),
            requeue_update: format!(
                "UPDATE {s}.media_cache SET job_state = 'queued', retry_count = 0, \
                 enqueued_at = $2, rank_plain = $3, rank_demanded = $4, \
                 priority = CASE WHEN demand THEN $4::bigint ELSE $3::bigint END, dead_seq = NULL, \
                 updated_at = now() WHERE id = $1 AND job_state = 'dead'"
            ),
            notify: "SELECT pg_notify($1::text, '')::text".to_owned(),
            // One count per state, each over its partial index: the cost follows the jobs,
            // not the table (whose ready rows, one per media ever warmed, are most of it).
            depth: format!(
                "SELECT (SELECT count(*) FROM {s}.media_cache WHERE job_state = 'queued' \
                   AND demand) + (SELECT count(*) FROM {s}.media_cache \
                   WHERE job_state = 'queued' AND NOT demand), \
                 (SELECT count(*) FROM {s}.media_cache WHERE job_state = 'delayed'), \
                 (SELECT count(*) FROM {s}.media_cache WHERE job_state = 'claimed'), \
                 (SELECT count(*) FROM {s}.media_cache WHERE job_state = 'dead')"
            ),
            record_rejection: format!(
                "INSERT INTO {s}.media_rejections AS r (bot_slug, sha256, kind, count) \
                 VALUES ($1, $2, $3, 1) ON CONFLICT (bot_slug, sha256, kind) \
                 DO UPDATE SET count = r.count + 1 RETURNING r.count"
            ),
            clear_rejections: format!("DELETE FROM {s}.media_rejections WHERE {key}"),
            channel,
        }
    }
}

/// A durable [`FileIdCache`] and [`PriorityQueue`] on PostgreSQL, for several bot instances
/// (processes or machines) sharing the work.
///
/// - **Tables** (in a configurable schema): `media_store` (each media's object key and size),
///   `media_cache` (one row per media: `file_id`, `status` ready/warming/failed, and the job:
///   `retry_count`, `next_retry_at`, `priority`, lease owner and expiry, `fencing_token`,
///   `last_error`), with the partial index `ix_media_cache_lookup` over ready rows. Created
///   by versioned migrations the store runs itself, under an advisory lock.
/// - **Claims** take a batch with `FOR UPDATE SKIP LOCKED` in materialized, limited
///   candidate lists (aged jobs oldest first, then by rank): concurrent claimers skip each
///   other's rows and never receive the same job. Lapsed leases are reclaimed by the next
///   claim, with a larger fencing token; `complete`, `retry`, `fail`, `release` and `extend`
///   check owner and token, so a stale worker changes nothing.
/// - **Wake-ups**: pushes, retries and releases `NOTIFY` a channel the store `LISTEN`s on;
///   [`notifier`](PriorityQueue::notifier) is raised for each notification and at least
///   every poll interval (see [`PostgresStoreBuilder::with_poll_interval`]).
///
/// # Clone
/// Clones share one pool and one listener; the listener stops when the last clone drops.
///
/// ```no_run
/// use std::sync::Arc;
/// use prewarm::{BotId, MemoryUploader, PrewarmEngine};
/// use prewarm::db::PostgresStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> prewarm::Result<()> {
/// let db = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/test")
///     .with_schema("prewarm")
///     .connect()
///     .await?;
/// let engine = PrewarmEngine::builder()
///     .with_cache(Arc::new(db.clone()))
///     .with_queue(Arc::new(db))
///     .with_uploader(Arc::new(MemoryUploader::new(BotId::new("demo")?)))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Clock,
    /// The last `depth()` and when it was counted.
    depth_cache: tokio::sync::Mutex<Option<(std::time::Instant, QueueDepth)>>,
    depth_ttl: Duration,
    /// The claim-slot counter of the priority policy (bot rotation, aged share); each
    /// instance keeps its own, which keeps the shares in sum.
    turn: AtomicU64,
    pushes: mpsc::UnboundedSender<PushReq>,
    completes: mpsc::UnboundedSender<CompleteReq>,
    pool: Pool,
    sql: Sql,
    policy: PriorityPolicy,
    notify: Arc<Notify>,
    schema: String,
    listener: AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.schema)
            .field("policy", &self.shared.policy)
            .field("pool", &self.shared.pool.status())
            .finish_non_exhaustive()
    }
}

fn key_args(key: &MediaKey) -> (&str, &[u8], &'static str) {
    (key.bot.as_str(), key.sha256.as_bytes(), key.kind.as_str())
}

fn job_row_at(r: &Row, at: usize) -> Result<JobRow> {
    let bot: &str = r.get(at);
    let sha: &[u8] = r.get(at + 1);
    let kind: &str = r.get(at + 2);
    Ok(JobRow {
        key: key_from_row(bot, sha, kind)?,
        size: r.get(at + 3),
        enqueued_at: r.get(at + 4),
        attempts: i64::from(r.get::<_, i32>(at + 5)),
        demand: r.get(at + 6),
        state: r.get(at + 7),
        run_at: r.get(at + 8),
        owner: r.get(at + 9),
        expires_at: r.get(at + 10),
        last_error: r.get(at + 11),
    })
}

fn lease_lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        key: lease.key.clone(),
    }
}

impl PostgresStore {
    /// A builder for the database at `url` (`postgres://user[:password]@host[:port]/db`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "prewarm".to_owned(),
            pool_size: 16,
            policy: PriorityPolicy::default(),
            poll_interval: Duration::from_secs(1),
            synchronous_commit: true,
            clock: QueueClock::Database,
            depth_ttl: Duration::from_secs(1),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }

    /// A builder for the database at `url`, configured from the environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `PREWARM_DB_SCHEMA` | the schema holding the tables (see [`PostgresStoreBuilder::with_schema`]): bots that must not share a queue use different schemas | `prewarm` |
    /// | `PREWARM_DB_POOL_SIZE` | most connections held at once, 1 to 1024 | 16 |
    /// | `PREWARM_DB_CONNECT_TIMEOUT_MS` | how long opening a connection may take (0: no limit) | 10000 |
    /// | `PREWARM_DB_STATEMENT_TIMEOUT_MS` | PostgreSQL's `statement_timeout` (0: none) | 30000 |
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when one is malformed.
    pub fn builder_from_env(url: impl Into<String>) -> Result<PostgresStoreBuilder> {
        Self::builder_from(url, &crate::env::process)
    }

    pub(crate) fn builder_from(
        url: impl Into<String>,
        env: crate::env::Lookup<'_>,
    ) -> Result<PostgresStoreBuilder> {
        let mut b = Self::builder(url);
        if let Some(schema) = env("PREWARM_DB_SCHEMA")? {
            validate_schema(&schema).map_err(|e| Error::Config {
                message: format!("PREWARM_DB_SCHEMA: {e}"),
            })?;
            b = b.with_schema(schema);
        }
        if let Some(size) = number(env, "PREWARM_DB_POOL_SIZE", 1, 1024)? {
            b = b.with_pool_size(size as usize);
        }
        if let Some(ms) = number(env, "PREWARM_DB_CONNECT_TIMEOUT_MS", 0, 3_600_000)? {
            b = b.with_connect_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = number(env, "PREWARM_DB_STATEMENT_TIMEOUT_MS", 0, 86_400_000)? {
            b = b.with_statement_timeout(Duration::from_millis(ms));
        }
        Ok(b)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.shared.schema
    }

    /// PostgreSQL's plans for the statements a claim of up to `max` jobs for `bots` runs
    /// (`EXPLAIN`, so nothing runs and nothing is locked), one text per statement: wake-up,
    /// demanded and aged candidates, fresh candidates, the claim itself. For operators of a
    /// large queue checking that every step is an index scan (`ix_media_cache_demanded`,
    /// `_aged`, `_fresh`, `_delayed`, `_leases`), and for the crate's tests.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database cannot be reached.
    pub async fn explain_claim(&self, bots: &[BotId], max: usize) -> Result<Vec<String>> {
        let what = "explaining a claim";
        let sql = &self.shared.sql;
        let client = self.client().await?;
        let now = self.shared.clock.now(Timestamp::now());
        let cutoff = aging_cutoff(&self.shared.policy, now);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let slugs: Vec<&str> = bots.iter().map(BotId::as_str).collect();
        let ids: Vec<i64> = (1..=limit).collect();
        let owner = "explain";
        let expires = ms(now);
        let statements: [(&str, Vec<&(dyn ToSql + Sync)>); 4] = [
            (&sql.wake, vec![&None::<i64>]),
            (&sql.candidates, vec![&slugs, &cutoff, &limit]),
            (&sql.candidates_fresh, vec![&slugs, &cutoff, &limit]),
            (&sql.claim, vec![&ids, &owner, &expires]),
        ];
        let mut plans = Vec::with_capacity(statements.len());
        for (statement, args) in statements {
            let rows = client
                .query(&format!("EXPLAIN {statement}"), &args)
                .await
                .map_err(|e| pg_err(what, e))?;
            let lines: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
            plans.push(lines.join("\n"));
        }
        Ok(plans)
    }

    async fn push_one(&self, job: Job, now: Timestamp) -> Result<PushOutcome> {
        let policy = &self.shared.policy;
        let fresh = Ranks::of(policy, &job);
        let revived = Ranks::of(
            policy,
            &Job {
                attempts: 0,
                enqueued_at: now,
                ..job.clone()
            },
        );
        let (bot, sha, kind) = key_args(&job.key);
        let size = i64::try_from(job.size).unwrap_or(i64::MAX);
        let attempts = i32::try_from(job.attempts).unwrap_or(i32::MAX);
        let object_key = job.key.object_key();
        let rows = self
            .query(
                "queueing a job",
                &self.shared.sql.push,
                &[
                    &bot,
                    &sha,
                    &kind,
                    &size,
                    &ms(job.enqueued_at),
                    &attempts,
                    &job.demand,
                    &fresh.plain,
                    &fresh.demanded,
                    &fresh.effective(job.demand),
                    &ms(now),
                    &revived.plain,
                    &revived.demanded,
                    &revived.effective(job.demand),
                    &object_key.as_str(),
                    &self.shared.sql.channel,
                ],
            )
            .await?;
        let outcome = match rows.first().map(|r| r.get::<_, &str>(0)) {
            Some("merged") => PushOutcome::Merged,
            Some("revived") => PushOutcome::Revived,
            _ => PushOutcome::Queued,
        };
        Ok(outcome)
    }

    async fn complete_one(&self, lease: &Lease) -> Result<()> {
        let sql = &self.shared.sql;
        for _ in 0..RACE_RETRIES {
            match self
                .finish("completing a job", &sql.complete, lease, &[&sql.channel])
                .await
            {
                Err(Error::LeaseLost { .. }) => {
                    // Zero can also mean a cache write or invalidation moved the row between
                    // the statement's snapshot and its lock: retry while the lease holds.
                    if self
                        .finish("completing a job", &sql.held, lease, &[])
                        .await
                        .is_err()
                    {
                        return Err(lease_lost(lease));
                    }
                }
                other => return other,
            }
        }
        Err(Error::Backend {
            backend: "postgres",
            message: "completing a job kept racing with concurrent writers".to_owned(),
            retryable: true,
        })
    }

    /// Pushes that arrived together, in one statement; what it cannot settle (a dead job to
    /// revive) goes one by one, in arrival order.
    async fn push_batch(&self, reqs: Vec<PushReq>) {
        if reqs.len() == 1 {
            for r in reqs {
                let _ = r.reply.send(self.push_one(r.job, r.now).await);
            }
            return;
        }
        // One row per media: a later push of the same media merges into the first.
        let mut groups: Vec<(MediaKey, Vec<PushReq>)> = Vec::new();
        let mut index: HashMap<MediaKey, usize> = HashMap::new();
        for r in reqs {
            match index.get(&r.job.key) {
                Some(&i) => groups[i].1.push(r),
                None => {
                    index.insert(r.job.key.clone(), groups.len());
                    groups.push((r.job.key.clone(), vec![r]));
                }
            }
        }
        // A stable lock order against other instances' batches.
        groups.sort_by(|a, b| {
            (a.0.bot.as_str(), a.0.sha256.as_bytes(), a.0.kind.as_str()).cmp(&(
                b.0.bot.as_str(),
                b.0.sha256.as_bytes(),
                b.0.kind.as_str(),
            ))
        });
        let policy = &self.shared.policy;
        let n = groups.len();
        let (mut bots, mut shas, mut kinds, mut sizes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut enq, mut attempts, mut demand) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut plain, mut demanded, mut prio, mut objects) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (key, reqs) in &groups {
            let mut job = reqs[0].job.clone();
            job.demand = reqs.iter().any(|r| r.job.demand);
            let ranks = Ranks::of(policy, &job);
            bots.push(key.bot.as_str());
            shas.push(key.sha256.as_bytes().as_slice());
            kinds.push(key.kind.as_str());
            sizes.push(i64::try_from(job.size).unwrap_or(i64::MAX));
            enq.push(ms(job.enqueued_at));
            attempts.push(i32::try_from(job.attempts).unwrap_or(i32::MAX));
            demand.push(job.demand);
            plain.push(ranks.plain);
            demanded.push(ranks.demanded);
            prio.push(ranks.effective(job.demand));
            objects.push(key.object_key().as_str().to_owned());
        }
        let result = self
            .query(
                "queueing jobs",
                &self.shared.sql.push_batch,
                &[
                    &bots,
                    &shas,
                    &kinds,
                    &sizes,
                    &enq,
                    &attempts,
                    &demand,
                    &plain,
                    &demanded,
                    &prio,
                    &objects,
                    &self.shared.sql.channel,
                ],
            )
            .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                // Nothing was written: the statement is one transaction.
                let message = e.to_string();
                let retryable = e.is_retryable();
                for (_, reqs) in groups {
                    for r in reqs {
                        let _ = r.reply.send(Err(Error::Backend {
                            backend: "postgres",
                            message: message.clone(),
                            retryable,
                        }));
                    }
                }
                return;
            }
        };
        let mut done: HashMap<MediaKey, PushOutcome> = HashMap::with_capacity(rows.len());
        for r in &rows {
            if let Ok(key) = key_from_row(r.get(0), r.get(1), r.get(2)) {
                let outcome = match r.get::<_, &str>(3) {
                    "merged" => PushOutcome::Merged,
                    _ => PushOutcome::Queued,
                };
                done.insert(key, outcome);
            }
        }
        for (key, reqs) in groups {
            match done.get(&key) {
                Some(&outcome) => {
                    let mut first = true;
                    for r in reqs {
                        let o = if first { outcome } else { PushOutcome::Merged };
                        first = false;
                        let _ = r.reply.send(Ok(o));
                    }
                }
                // A dead job: revived by the single-row statement, which knows how.
                None => {
                    for r in reqs {
                        let _ = r.reply.send(self.push_one(r.job, r.now).await);
                    }
                }
            }
        }
    }

    /// Completes that arrived together, in one statement; what it did not settle (a lost
    /// lease, a race with a cache write) goes one by one.
    async fn complete_batch(&self, reqs: Vec<CompleteReq>) {
        if reqs.len() == 1 {
            for r in reqs {
                let _ = r.reply.send(self.complete_one(&r.lease).await);
            }
            return;
        }
        let (mut bots, mut shas, mut kinds, mut owners, mut tokens) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in &reqs {
            bots.push(r.lease.key.bot.as_str());
            shas.push(r.lease.key.sha256.as_bytes().as_slice());
            kinds.push(r.lease.key.kind.as_str());
            owners.push(&*r.lease.owner);
            tokens.push(r.lease.token as i64);
        }
        let rows = self
            .query(
                "completing jobs",
                &self.shared.sql.complete_batch,
                &[
                    &bots,
                    &shas,
                    &kinds,
                    &owners,
                    &tokens,
                    &self.shared.sql.channel,
                ],
            )
            .await
            .unwrap_or_default();
        let mut done: HashMap<(MediaKey, i64), ()> = HashMap::with_capacity(rows.len());
        for r in &rows {
            if let Ok(key) = key_from_row(r.get(0), r.get(1), r.get(2)) {
                done.insert((key, r.get(3)), ());
            }
        }
        for r in reqs {
            if done.contains_key(&(r.lease.key.clone(), r.lease.token as i64)) {
                let _ = r.reply.send(Ok(()));
            } else {
                let _ = r.reply.send(self.complete_one(&r.lease).await);
            }
        }
    }

    /// Sets the demand of the media's unfinished job; answers whether there is one.
    async fn set_demand(&self, key: &MediaKey, demand: bool) -> Result<bool> {
        let (bot, sha, kind) = key_args(key);
        let n = self
            .execute(
                "setting a job's demand",
                &self.shared.sql.set_demand,
                &[&bot, &sha, &kind, &demand],
            )
            .await?;
        Ok(n > 0)
    }

    async fn client(&self) -> Result<Object> {
        self.shared.pool.get().await.map_err(|e| Error::Backend {
            backend: "postgres",
            message: format!("taking a connection from the pool: {e}"),
            retryable: true,
        })
    }

    /// Runs one prepared statement, answering its rows.
    async fn query(&self, what: &str, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(what, e))?;
        client.query(&stmt, args).await.map_err(|e| pg_err(what, e))
    }

    async fn execute(&self, what: &str, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_err(what, e))?;
        client
            .execute(&stmt, args)
            .await
            .map_err(|e| pg_err(what, e))
    }

    async fn count(&self, what: &str, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<i64> {
        let rows = self.query(what, sql, args).await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    /// A finishing call by the lease holder: `sql` takes the held-lease arguments first.
    async fn finish(
        &self,
        what: &str,
        sql: &str,
        lease: &Lease,
        extra: &[&(dyn ToSql + Sync)],
    ) -> Result<()> {
        let (bot, sha, kind) = key_args(&lease.key);
        let token = lease.token as i64;
        let owner: &str = &lease.owner;
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&bot, &sha, &kind, &owner, &token];
        args.extend_from_slice(extra);
        if self.count(what, sql, &args).await? == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }
}

#[async_trait]
impl FileIdCache for PostgresStore {
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "looking up a file_id",
                &self.shared.sql.get,
                &[&bot, &sha, &kind],
            )
            .await?;
        Ok(rows.first().map(|r| FileId::new(r.get::<_, &str>(0))))
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let (bot, sha, kind) = key_args(key);
        self.execute(
            "storing a file_id",
            &self.shared.sql.put,
            &[&bot, &sha, &kind, &file_id.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool> {
        let (bot, sha, kind) = key_args(key);
        let only_if = only_if.map(FileId::as_str);
        let args: &[&(dyn ToSql + Sync)] = &[&bot, &sha, &kind, &only_if];
        for _ in 0..RACE_RETRIES {
            let sql = &self.shared.sql;
            if self
                .count("invalidating a file_id", &sql.invalidate, args)
                .await?
                > 0
            {
                return Ok(true);
            }
            // Zero can also mean a push gave the row a job between the statement's snapshot
            // and its lock: look again while a matching entry is there.
            if self
                .count("invalidating a file_id", &sql.invalidate_check, args)
                .await?
                == 0
            {
                return Ok(false);
            }
        }
        Err(Error::Backend {
            backend: "postgres",
            message: "invalidating a file_id kept racing with concurrent writers".to_owned(),
            retryable: true,
        })
    }

    fn get_local(&self, _key: &MediaKey) -> Option<FileId> {
        // Everything is in the database: put a TieredCache in front for lookups without I/O.
        None
    }
}

#[async_trait]
impl PriorityQueue for PostgresStore {
    async fn push(&self, mut job: Job, now: Timestamp) -> Result<PushOutcome> {
        let now = self.shared.clock.now(now);
        if self.shared.clock.mode == QueueClock::Database {
            // Aging counts from the database's clock too.
            job.enqueued_at = now;
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .pushes
            .send(PushReq { job, now, reply })
            .map_err(|_| batcher_gone())?;
        let outcome = answer.await.map_err(|_| batcher_gone())??;
        if outcome != PushOutcome::Merged {
            self.shared.notify.notify_waiters();
        }
        Ok(outcome)
    }

    async fn claim(
        &self,
        owner: &str,
        bots: &[BotId],
        max: usize,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Claim> {
        if max == 0 || bots.is_empty() {
            return Ok(Claim::default());
        }
        let what = "claiming jobs";
        let sql = &self.shared.sql;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err(what, e))?;
        let clock = &self.shared.clock;
        let woken = tx
            .query_one(&sql.wake, &[&clock.param(now)])
            .await
            .map_err(|e| pg_err("returning due jobs to the queue", e))?;
        // The time this claim runs at: the caller's, or the database's, read just now.
        let now_ms: i64 = woken.get(0);
        if clock.mode == QueueClock::Database {
            clock.set(now_ms);
        }
        let now = ts(now_ms);
        let expires_at = now.plus(lease);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let cutoff = aging_cutoff(&self.shared.policy, now);
        let slugs: Vec<&str> = bots.iter().map(BotId::as_str).collect();
        let mut lists: HashMap<(usize, Branch), Vec<(i64, i64)>> = HashMap::new();
        let add = |lists: &mut HashMap<(usize, Branch), Vec<(i64, i64)>>,
                   rows: Vec<Row>,
                   of: &[usize]| {
            for r in rows {
                let i = usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(0);
                let branch = match r.get::<_, i32>(1) {
                    0 => Branch::Demanded,
                    1 => Branch::Aged,
                    _ => Branch::Fresh,
                };
                let (id, ord): (i64, i64) = (r.get(2), r.get(3));
                lists.entry((of[i], branch)).or_default().push((ord, id));
            }
        };
        let all: Vec<usize> = (0..bots.len()).collect();
        let rows = tx
            .query(&sql.candidates, &[&slugs, &cutoff, &limit])
            .await
            .map_err(|e| pg_err(what, e))?;
        add(&mut lists, rows, &all);
        let short: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&b| {
                let have = |br| lists.get(&(b, br)).map_or(0, Vec::len);
                have(Branch::Demanded) + have(Branch::Aged) < max
            })
            .collect();
        if !short.is_empty() {
            let names: Vec<&str> = short.iter().map(|&b| slugs[b]).collect();
            let rows = tx
                .query(&sql.candidates_fresh, &[&names, &cutoff, &limit])
                .await
                .map_err(|e| pg_err(what, e))?;
            add(&mut lists, rows, &short);
        }
        let mut lists: HashMap<(usize, Branch), std::collections::VecDeque<i64>> = lists
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_unstable();
                (k, v.into_iter().map(|(_, id)| id).collect())
            })
            .collect();
        let mut turn = self.shared.turn.load(Ordering::Relaxed);
        let ids: Vec<i64> = pick(&self.shared.policy, bots.len(), max, &mut turn, |b, br| {
            lists.get_mut(&(b, br)).and_then(|l| l.pop_front())
        });
        self.shared.turn.store(turn, Ordering::Relaxed);
        let rows = tx
            .query(&sql.claim, &[&ids, &owner, &ms(expires_at)])
            .await
            .map_err(|e| pg_err(what, e))?;
        // Candidates not picked are unlocked here.
        tx.commit().await.map_err(|e| pg_err(what, e))?;
        drop(client);

        let owner: Arc<str> = owner.into();
        let mut due: Option<i64> = None;
        let mut picked = Vec::with_capacity(rows.len());
        for r in &rows {
            // Columns: n, id, the 12 job columns, fencing_token, due.
            due = r.get(15);
            let Some(n) = r.get::<_, Option<i64>>(0) else {
                continue; // no job claimed: the row only carries `due`
            };
            let row = job_row_at(r, 2)?;
            let token: i64 = r.get(14);
            picked.push((n, row, token));
        }
        picked.sort_by_key(|p| p.0);
        let jobs: Vec<Claimed> = picked
            .into_iter()
            .map(|(_, row, token)| Claimed {
                job: row.job(),
                lease: Lease {
                    key: row.key,
                    token: u64::try_from(token).unwrap_or(0),
                    owner: owner.clone(),
                    expires_at,
                },
            })
            .collect();
        // `due` was read before this claim: the leases just taken lapse at `expires_at`.
        let mut next_due = due.map(ts);
        if !jobs.is_empty() {
            next_due = Some(next_due.map_or(expires_at, |d| d.min(expires_at)));
        }
        super::postgres_status::log_claims(&self.client().await?, &self.shared.schema, &jobs, now)
            .await?;
        Ok(Claim { jobs, next_due })
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        let expires_at = self.shared.clock.now(now).plus(lease_for);
        self.finish(
            "extending a lease",
            &self.shared.sql.extend,
            lease,
            &[&ms(expires_at)],
        )
        .await
        .map(|()| Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn complete(&self, lease: &Lease) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .completes
            .send(CompleteReq {
                lease: lease.clone(),
                reply,
            })
            .map_err(|_| batcher_gone())?;
        answer.await.map_err(|_| batcher_gone())?
    }

    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> Result<()> {
        let inc = i32::from(count_attempt);
        self.finish(
            "scheduling a retry",
            &self.shared.sql.retry,
            lease,
            &[&ms(run_at), &inc, &error, &self.shared.sql.channel],
        )
        .await?;
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<()> {
        self.finish("failing a job", &self.shared.sql.fail, lease, &[&error])
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.finish(
            "releasing a job",
            &self.shared.sql.release,
            lease,
            &[&self.shared.sql.channel],
        )
        .await?;
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn promote(&self, key: &MediaKey, _now: Timestamp) -> Result<bool> {
        self.set_demand(key, true).await
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "reading a job",
                &self.shared.sql.get_job,
                &[&bot, &sha, &kind],
            )
            .await?;
        rows.first()
            .map(|r| job_row_at(r, 0).and_then(JobRow::info))
            .transpose()
    }

    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query("listing dead jobs", &self.shared.sql.dead, &[&limit])
            .await?;
        rows.iter()
            .map(|r| job_row_at(r, 0).and_then(JobRow::info))
            .collect()
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64> {
        let now = self.shared.clock.now(now);
        let sql = &self.shared.sql;
        let what = "requeueing dead jobs";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err(what, e))?;
        let (bot, sha, kind) = match key {
            Some(k) => {
                let (b, s, k) = key_args(k);
                (Some(b), s.to_vec(), k)
            }
            None => (None, Vec::new(), ""),
        };
        let rows = tx
            .query(&sql.requeue_select, &[&bot, &sha, &kind])
            .await
            .map_err(|e| pg_err(what, e))?;
        let update = tx
            .prepare_cached(&sql.requeue_update)
            .await
            .map_err(|e| pg_err(what, e))?;
        let mut n = 0;
        for r in &rows {
            let id: i64 = r.get(0);
            let row = job_row_at(r, 1)?;
            let ranks = Ranks::of(
                &self.shared.policy,
                &Job {
                    attempts: 0,
                    enqueued_at: now,
                    ..row.job()
                },
            );
            n += tx
                .execute(&update, &[&id, &ms(now), &ranks.plain, &ranks.demanded])
                .await
                .map_err(|e| pg_err(what, e))?;
        }
        if n > 0 {
            tx.query(&sql.notify, &[&sql.channel])
                .await
                .map_err(|e| pg_err(what, e))?;
        }
        tx.commit().await.map_err(|e| pg_err(what, e))?;
        if n > 0 {
            self.shared.notify.notify_waiters();
        }
        Ok(n)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        // Callers arriving together share one count (the lock is held across it), and a
        // count younger than the TTL is answered as it is.
        let mut cached = self.shared.depth_cache.lock().await;
        if let Some((at, depth)) = *cached
            && at.elapsed() < self.shared.depth_ttl
        {
            return Ok(depth);
        }
        let rows = self
            .query("counting jobs", &self.shared.sql.depth, &[])
            .await?;
        let n = |i| {
            rows.first()
                .map_or(0, |r| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0))
        };
        let depth = QueueDepth {
            queued: n(0),
            delayed: n(1),
            claimed: n(2),
            dead: n(3),
        };
        *cached = Some((std::time::Instant::now(), depth));
        Ok(depth)
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        Some(self.shared.notify.clone())
    }

    async fn clear_demand(&self, key: &MediaKey) -> Result<bool> {
        self.set_demand(key, false).await
    }

    async fn record_rejection(&self, key: &MediaKey) -> Result<u32> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "counting a rejected file_id",
                &self.shared.sql.record_rejection,
                &[&bot, &sha, &kind],
            )
            .await?;
        let n: i32 = rows.first().map_or(1, |r| r.get(0));
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn clear_rejections(&self, key: &MediaKey) -> Result<()> {
        let (bot, sha, kind) = key_args(key);
        self.execute(
            "clearing rejections",
            &self.shared.sql.clear_rejections,
            &[&bot, &sha, &kind],
        )
        .await?;
        Ok(())
    }

    async fn summary(&self, now: Timestamp) -> Result<Vec<BotSummary>> {
        super::postgres_status::summary(&self.client().await?, &self.shared.schema, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::from_pairs;

    #[test]
    fn settings_come_from_the_environment_with_defaults() {
        let b = PostgresStore::builder_from("postgres://h/db", &from_pairs(&[])).expect("defaults");
        assert_eq!(
            (
                b.schema.as_str(),
                b.pool_size,
                b.connect_timeout,
                b.statement_timeout
            ),
            (
                "prewarm",
                16,
                Duration::from_secs(10),
                Duration::from_secs(30)
            )
        );
        let env = from_pairs(&[
            ("PREWARM_DB_SCHEMA", "bot_two"),
            ("PREWARM_DB_POOL_SIZE", "4"),
            ("PREWARM_DB_CONNECT_TIMEOUT_MS", "1500"),
            ("PREWARM_DB_STATEMENT_TIMEOUT_MS", "0"),
        ]);
        let b = PostgresStore::builder_from("postgres://h/db", &env).expect("set");
        assert_eq!(
            (
                b.schema.as_str(),
                b.pool_size,
                b.connect_timeout,
                b.statement_timeout
            ),
            ("bot_two", 4, Duration::from_millis(1500), Duration::ZERO)
        );
        for (name, value, says) in [
            ("PREWARM_DB_SCHEMA", "Bot-Two", "lowercase"),
            ("PREWARM_DB_POOL_SIZE", "0", "from 1 to 1024"),
            ("PREWARM_DB_CONNECT_TIMEOUT_MS", "soon", "whole number"),
        ] {
            let err = PostgresStore::builder_from("postgres://h/db", &from_pairs(&[(name, value)]))
                .expect_err(name);
            let text = err.to_string();
            assert!(matches!(err, Error::Config { .. }), "{text}");
            assert!(text.contains(name) && text.contains(says), "{text}");
        }
    }
}
