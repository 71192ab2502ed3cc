//! The shared backend: PostgreSQL through tokio-postgres, pooled by deadpool-postgres.
//!
//! One folder by concern: `builder` (settings and connecting), `migrations`, `listener`
//! (LISTEN/NOTIFY wake-ups), `clock` (the database's clock), `sql` (every statement, with the
//! schema spliced in), `batch` (group commit of pushes and completes), `cache`, `queue` and
//! `journal` (the three traits).

mod batch;
mod budget;
mod builder;
mod cache;
mod clock;
mod journal;
mod listener;
mod migrations;
mod queue;
mod sql;
mod status;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{
    JobRow, Migration, Ranks, aging_cutoff, depth_sql, key_from_row, lease_lost, ms, pending,
    push_outcome, ts,
};
use crate::cache::FileIdCache;
use crate::error::{Error, Result};
use crate::media::{BotId, FileId, Job, MediaKey, Timestamp};
use crate::queue::{
    BotSummary, Branch, Claim, Claimed, JobInfo, Lease, PriorityPolicy, PriorityQueue, PushOutcome,
    QueueDepth, pick,
};

pub use budget::{PostgresBudget, PostgresBudgetBuilder};
pub use builder::PostgresStoreBuilder;
pub use clock::QueueClock;

use batch::{CompleteReq, PushReq, batcher, batcher_gone};
use clock::{Clock, DB_NOW_MS};
use listener::listen;
use migrations::migrate;
use sql::Sql;

/// How often a race between a statement's snapshot and a concurrent writer is retried.
const RACE_RETRIES: usize = 3;

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
        rank_plain: r.get(at + 12),
    })
}

impl PostgresStore {
    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.shared.schema
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

fn pg_err(context: &str, e: tokio_postgres::Error) -> Error {
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
