//! The embedded backend: SQLite through rusqlite (bundled library), one file, one writer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    Connection, DropBehavior, OptionalExtension, Savepoint, TransactionBehavior, params,
};
use tokio::sync::Notify;

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

/// Versioned migrations, applied in order, each once, recorded in `schema_migrations`.
const MIGRATIONS: &[Migration] = &[
    (1, "init", include_str!("migrations/sqlite/0001_init.sql")),
    (
        2,
        "claims",
        include_str!("migrations/sqlite/0002_claims.sql"),
    ),
    (
        3,
        "claim_log",
        include_str!("migrations/sqlite/0003_claim_log.sql"),
    ),
    (
        4,
        "upload_journal",
        include_str!("migrations/sqlite/0004_upload_journal.sql"),
    ),
];

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives the process being killed
    /// (SIGKILL, panic, OOM), since it is in the operating system's cache when it returns.
    /// On a power loss or an OS crash, the commits since the WAL was last synced to disk are
    /// lost: SQLite syncs the WAL at each checkpoint (by default when it passes 1000 pages,
    /// about 4 MB), so at most that many of the latest commits — saves acknowledged,
    /// file_ids stored, jobs finished. The database stays consistent: a lost save's job is
    /// gone with it (save it again), a lost file_id's job is warmed again. Several times
    /// faster than [`Power`](Self::Power).
    #[default]
    Process,
    /// `synchronous=FULL`: every commit is on disk before it returns, surviving power loss.
    Power,
}

/// Builds a [`SqliteStore`].
#[must_use]
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    policy: PriorityPolicy,
    durability: Durability,
    busy_timeout: Duration,
}

impl SqliteStoreBuilder {
    /// The order jobs are claimed in (default: [`PriorityPolicy::default`]).
    pub fn with_policy(mut self, policy: PriorityPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What a commit survives (default: [`Durability::Process`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long to wait for another process holding the file's write lock (default 5 s).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (creating if needed) the database file and runs the migrations it lacks.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be opened or is not a prewarm database;
    /// [`Error::Config`] when the file was written by a newer prewarm.
    pub async fn open(self) -> Result<SqliteStore> {
        let path = self.path.clone();
        let conn = tokio::task::spawn_blocking(move || self.open_blocking())
            .await
            .map_err(|e| Error::Backend {
                backend: "sqlite",
                message: format!("opening the database panicked: {e}"),
                retryable: false,
            })??;
        let (ops, rx) = mpsc::channel();
        let (conn, policy) = conn;
        std::thread::Builder::new()
            .name("prewarm-sqlite".to_owned())
            .spawn(move || writer(conn, policy, rx))
            .map_err(|e| Error::io("starting the SQLite writer thread", e))?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                ops,
                turn: AtomicU64::new(0),
                policy,
                path,
            }),
        })
    }

    fn open_blocking(self) -> Result<(Connection, PriorityPolicy)> {
        let mut conn = Connection::open(&self.path).map_err(|e| {
            sqlite_err(
                &format!("opening the database file {}", self.path.display()),
                e,
            )
        })?;
        let sync = match self.durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        conn.busy_timeout(self.busy_timeout)
            .map_err(|e| sqlite_err("setting the busy timeout", e))?;
        // The pragma answers the mode the file is in: SQLite keeps the old one, silently,
        // where WAL is impossible (an in-memory database, a file system without shared
        // memory). `Durability::Process` is only true in WAL mode: refuse to run without it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| sqlite_err("switching the database to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Config {
                message: format!(
                    "the SQLite database {} cannot use write-ahead logging (its journal mode \
                     stays {mode:?}), which prewarm needs for its durability: put it on a local \
                     file system (not a network share, not :memory:)",
                    self.path.display()
                ),
            });
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(|e| sqlite_err("setting the database's durability", e))?;
        migrate(&mut conn)?;
        Ok((conn, self.policy))
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE takes the write lock first: two processes opening one new file at once
    // migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_err("locking the database to migrate it", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at INTEGER NOT NULL DEFAULT (unixepoch()))",
    )
    .map_err(|e| sqlite_err("creating schema_migrations", e))?;
    let current: i32 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sqlite_err("reading schema_migrations", e))?;
    for (version, name, sql) in pending(MIGRATIONS, current, "the database", "use another file")? {
        tx.execute_batch(sql)
            .map_err(|e| sqlite_err(&format!("applying migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![version, name],
        )
        .map_err(|e| sqlite_err("recording a migration", e))?;
        tracing::info!(version, name, "sqlite migration applied");
    }
    tx.commit()
        .map_err(|e| sqlite_err("committing the migrations", e))
}

/// A durable [`FileIdCache`] and [`PriorityQueue`] in one SQLite file: the embedded default
/// for a bot running as one process.
///
/// The file is in WAL mode. One connection, owned by a dedicated thread, serves every call:
/// SQLite allows one writer at a time anyway. Calls that arrive together share one
/// transaction (group commit), each in its own savepoint, so a claim is atomic and a failing
/// call undoes only itself; every caller hears back only after the commit. It has no
/// [`notifier`](PriorityQueue::notifier): SQLite cannot tell one process about another's
/// writes, so an engine on it is woken by its own pushes and polls for the rest every
/// `MEDIA_PREWARM_INTERVAL_MS`.
///
/// Jobs survive the process being killed: a job claimed when it died is claimed again once
/// its lease lapses. See [`Durability`] for power loss.
///
/// # Clone
/// Clones share one connection.
///
/// ```no_run
/// use std::sync::Arc;
/// use prewarm::{BotId, MemoryUploader, PrewarmEngine};
/// use prewarm::db::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> prewarm::Result<()> {
/// let db = SqliteStore::open("prewarm.db").await?;
/// let engine = PrewarmEngine::builder()
///     .with_cache(Arc::new(db.clone()))
///     .with_queue(Arc::new(db))
///     .with_uploader(Arc::new(MemoryUploader::new(BotId::new("demo")?)))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// Calls for the writer thread, which owns the connection; it stops when this drops.
    ops: mpsc::Sender<Op>,
    /// The claim-slot counter of the priority policy (bot rotation, aged share).
    turn: AtomicU64,
    policy: PriorityPolicy,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

fn sqlite_err(context: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::Backend {
        backend: "sqlite",
        message: format!("{context}: {e}"),
        retryable: busy,
    }
}

impl SqliteStore {
    /// A builder for the database file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_owned(),
            policy: PriorityPolicy::default(),
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// Opens the file at `path` with the defaults; see [`SqliteStoreBuilder::open`].
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open().await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Sets the demand of the media's unfinished job; answers whether there is one.
    async fn set_demand(&self, key: &MediaKey, demand: bool) -> Result<bool> {
        let (bot, sha, kind) = key_params(key);
        self.call("setting a job's demand", move |c, _| {
            let n = c
                .prepare_cached(
                    "UPDATE media_cache SET demand = ?4, \
                     priority = CASE WHEN ?4 THEN rank_demanded ELSE rank_plain END \
                     WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 \
                     AND job_state IN ('queued', 'delayed', 'claimed')",
                )?
                .execute(params![bot, sha, kind, demand])?;
            Ok(Ok(n > 0))
        })
        .await
    }

    /// Runs `f` on the writer thread, in a savepoint of the next batch's transaction; answers
    /// once that transaction is committed.
    pub(super) async fn call<R, F>(&self, what: &'static str, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &PriorityPolicy) -> rusqlite::Result<Result<R>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op: Op = Box::new(move |sp, policy| {
            let sp = match sp {
                Ok(sp) => sp,
                // No transaction could be opened (the file is locked by another process past
                // the busy timeout, or unwritable): the call did nothing.
                Err(message) => {
                    return Box::new(move |_| {
                        let _ = tx.send(Err(Error::Backend {
                            backend: "sqlite",
                            message: format!("{what}: {message}"),
                            retryable: true,
                        }));
                    });
                }
            };
            let result = match std::panic::catch_unwind(AssertUnwindSafe(|| f(sp, policy))) {
                Ok(Ok(Ok(value))) => {
                    sp.set_drop_behavior(DropBehavior::Commit);
                    Ok(value)
                }
                // The savepoint rolls back when dropped: the call changes nothing.
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(e)) => Err(sqlite_err(what, e)),
                Err(_) => Err(Error::Backend {
                    backend: "sqlite",
                    message: format!("{what} panicked"),
                    retryable: false,
                }),
            };
            Box::new(move |committed: std::result::Result<(), String>| {
                let result = match committed {
                    Ok(()) => result,
                    Err(message) => Err(Error::Backend {
                        backend: "sqlite",
                        message: format!("{what}: {message}"),
                        retryable: true,
                    }),
                };
                let _ = tx.send(result);
            })
        });
        let gone = || Error::Backend {
            backend: "sqlite",
            message: format!("{what}: the SQLite writer thread stopped"),
            retryable: false,
        };
        self.shared.ops.send(op).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// One call for the writer thread: it runs in its own savepoint and answers what to tell the
/// caller once the batch's commit is known.
type Op = Box<
    dyn FnOnce(std::result::Result<&mut Savepoint<'_>, String>, &PriorityPolicy) -> Done + Send,
>;
type Done = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// Most calls sharing one transaction.
const MAX_BATCH: usize = 256;

/// The writer thread: takes every call waiting, runs them in one IMMEDIATE transaction, commits,
/// then answers them all. Stops when every store handle is dropped.
fn writer(mut conn: Connection, policy: PriorityPolicy, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(ops.len());
        let committed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(mut tx) => {
                for op in ops {
                    match tx.savepoint() {
                        Ok(mut sp) => done.push(op(Ok(&mut sp), &policy)),
                        Err(e) => done.push(op(Err(e.to_string()), &policy)),
                    }
                }
                tx.commit().map_err(|e| e.to_string())
            }
            Err(e) => {
                let message = format!("opening a transaction: {e}");
                for op in ops {
                    done.push(op(Err(message.clone()), &policy));
                }
                Err(message)
            }
        };
        if let Err(e) = &committed {
            tracing::warn!(error = %e, "a SQLite batch failed to commit");
        }
        for d in done {
            d(committed.clone());
        }
    }
}

pub(super) fn key_params(key: &MediaKey) -> (String, Vec<u8>, &'static str) {
    (
        key.bot.as_str().to_owned(),
        key.sha256.as_bytes().to_vec(),
        key.kind.as_str(),
    )
}

const JOB_COLUMNS: &str = "bot_slug, sha256, kind, size, enqueued_at, retry_count, demand, \
                           job_state, next_retry_at, lease_owner, lease_expires_at, last_error, \
                           rank_plain";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobRow>> {
    job_row_at(r, 0)
}

/// The lease check every finishing call makes: the job is claimed by this owner with this
/// token. Whether the lease's time has run out does not matter until another claim takes it.
const HELD: &str = "bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 AND job_state = 'claimed' \
                    AND lease_owner = ?4 AND fencing_token = ?5";

#[async_trait]
impl FileIdCache for SqliteStore {
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>> {
        let (bot, sha, kind) = key_params(key);
        self.call("looking up a file_id", move |c, _| {
            let id: Option<String> = c
                .prepare_cached(
                    "SELECT file_id FROM media_cache \
                     WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 AND status = 'ready'",
                )?
                .query_row(params![bot, sha, kind], |r| r.get(0))
                .optional()?;
            Ok(Ok(id.map(FileId::new)))
        })
        .await
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let (bot, sha, kind) = key_params(key);
        let id = file_id.as_str().to_owned();
        self.call("storing a file_id", move |c, _| {
            c.prepare_cached(
                "INSERT INTO media_cache (bot_slug, sha256, kind, file_id) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET file_id = excluded.file_id",
            )?
            .execute(params![bot, sha, kind, id])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool> {
        let (bot, sha, kind) = key_params(key);
        let only_if = only_if.map(|id| id.as_str().to_owned());
        self.call("invalidating a file_id", move |c, _| {
            let tx = c;
            // `?4 IS NULL OR file_id = ?4`: remove whatever is there, or only the id given.
            let matches = "bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 AND file_id IS NOT NULL \
                           AND (?4 IS NULL OR file_id = ?4)";
            let removed = tx.execute(
                &format!("DELETE FROM media_cache WHERE {matches} AND job_state IS NULL"),
                params![bot, sha, kind, only_if],
            )? + tx.execute(
                &format!("UPDATE media_cache SET file_id = NULL WHERE {matches}"),
                params![bot, sha, kind, only_if],
            )?;
            Ok(Ok(removed > 0))
        })
        .await
    }

    fn get_local(&self, _key: &MediaKey) -> Option<FileId> {
        // Everything is on disk: put a TieredCache in front for lookups without I/O.
        None
    }
}

/// What a claim asks for.
struct ClaimReq {
    owner: String,
    bots: Vec<BotId>,
    max: usize,
    lease: Duration,
    now: Timestamp,
}

fn claim_tx(
    tx: &Connection,
    policy: &PriorityPolicy,
    turn: &mut u64,
    req: &ClaimReq,
) -> rusqlite::Result<Result<Claim>> {
    let ClaimReq {
        owner,
        bots,
        max,
        lease,
        now,
    } = req;
    let (owner, max, lease, now) = (owner.as_str(), *max, *lease, *now);
    let now_ms = ms(now);
    // Due retries and lapsed leases return to the queue.
    tx.prepare_cached(
        "UPDATE media_cache SET job_state = 'queued', next_retry_at = NULL \
         WHERE job_state = 'delayed' AND next_retry_at <= ?1",
    )?
    .execute([now_ms])?;
    tx.prepare_cached(
        "UPDATE media_cache SET job_state = 'queued', lease_owner = NULL, lease_expires_at = NULL \
         WHERE job_state = 'claimed' AND lease_expires_at <= ?1",
    )?
    .execute([now_ms])?;

    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let cutoff = aging_cutoff(policy, now);
    // Each (bot, list) is read once, when the pick first needs it, up to `max` ids: a list
    // the pick never reaches (fresh jobs behind enough aged ones) costs nothing.
    let mut lists: HashMap<(usize, Branch), VecDeque<i64>> = HashMap::new();
    let mut failed = None;
    let mut ids = pick(policy, bots.len(), max, turn, |b, branch| {
        if failed.is_some() {
            return None;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = lists.entry((b, branch)) {
            match candidates(tx, branch, bots[b].as_str(), cutoff, limit) {
                Ok(ids) => {
                    e.insert(ids);
                }
                Err(err) => {
                    failed = Some(err);
                    return None;
                }
            }
        }
        lists.get_mut(&(b, branch)).and_then(VecDeque::pop_front)
    });
    if let Some(e) = failed {
        return Err(e);
    }
    ids.truncate(max);

    let expires_at = now.plus(lease);
    let owner_arc: Arc<str> = owner.into();
    let mut jobs = Vec::with_capacity(ids.len());
    // Tokens from the queue-wide sequence, one per job claimed.
    let last: i64 = tx
        .prepare_cached(
            "UPDATE queue_sequence SET value = value + ?1 WHERE id = 1 RETURNING value",
        )?
        .query_row([ids.len() as i64], |r| r.get(0))?;
    let mut next_token = last - ids.len() as i64;
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE media_cache SET job_state = 'claimed', lease_owner = ?2, lease_expires_at = ?3, \
         fencing_token = ?4 WHERE id = ?1 RETURNING {JOB_COLUMNS}, fencing_token"
    ))?;
    for id in ids {
        next_token += 1;
        let (row, token) = stmt.query_row(params![id, owner, ms(expires_at), next_token], |r| {
            Ok((job_row(r)?, r.get::<_, i64>(13)?))
        })?;
        let row = match row {
            Ok(row) => row,
            Err(e) => return Ok(Err(e)),
        };
        jobs.push(Claimed {
            job: row.job(),
            lease: Lease {
                key: row.key,
                token: u64::try_from(token).unwrap_or(0),
                owner: owner_arc.clone(),
                expires_at,
            },
        });
    }
    let next_due: Option<i64> = tx
        .prepare_cached(
            "SELECT min(t) FROM ( \
               SELECT min(next_retry_at) AS t FROM media_cache WHERE job_state = 'delayed' \
               UNION ALL \
               SELECT min(lease_expires_at) FROM media_cache WHERE job_state = 'claimed')",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(Ok(Claim {
        jobs,
        next_due: next_due.map(ts),
    }))
}

#[async_trait]
impl PriorityQueue for SqliteStore {
    async fn push(&self, job: Job, now: Timestamp) -> Result<PushOutcome> {
        let outcome = self
            .call("queueing a job", move |c, policy| {
                let fresh = Ranks::of(policy, &job);
                let revived = Ranks::of(
                    policy,
                    &Job {
                        attempts: 0,
                        enqueued_at: now,
                        ..job.clone()
                    },
                );
                let (bot, sha, kind) = key_params(&job.key);
                // One upsert. In DO UPDATE, bare column names are the row as it was, so each
                // SET sees the old state and the outcome is recorded in `last_push`.
                let outcome: String = c
                    .prepare_cached(
                        "INSERT INTO media_cache (bot_slug, sha256, kind, job_state, size, \
                           enqueued_at, retry_count, demand, rank_plain, rank_demanded, priority, \
                           last_push) \
                         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued') \
                         ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET \
                           last_push = CASE WHEN job_state IS NULL THEN 'queued' \
                             WHEN job_state = 'dead' THEN 'revived' ELSE 'merged' END, \
                           size = CASE WHEN job_state IS NULL OR job_state = 'dead' \
                             THEN excluded.size ELSE size END, \
                           enqueued_at = CASE WHEN job_state IS NULL THEN excluded.enqueued_at \
                             WHEN job_state = 'dead' THEN ?11 ELSE enqueued_at END, \
                           retry_count = CASE WHEN job_state IS NULL THEN excluded.retry_count \
                             WHEN job_state = 'dead' THEN 0 ELSE retry_count END, \
                           demand = CASE WHEN job_state IS NULL OR job_state = 'dead' \
                             THEN excluded.demand ELSE (demand OR excluded.demand) END, \
                           rank_plain = CASE WHEN job_state IS NULL THEN excluded.rank_plain \
                             WHEN job_state = 'dead' THEN ?12 ELSE rank_plain END, \
                           rank_demanded = CASE WHEN job_state IS NULL THEN excluded.rank_demanded \
                             WHEN job_state = 'dead' THEN ?13 ELSE rank_demanded END, \
                           priority = CASE WHEN job_state IS NULL THEN excluded.priority \
                             WHEN job_state = 'dead' THEN ?14 \
                             WHEN demand OR excluded.demand THEN rank_demanded \
                             ELSE rank_plain END, \
                           dead_seq = NULL, \
                           rerun = CASE WHEN job_state = 'claimed' THEN 1 \
                             WHEN job_state IN ('queued', 'delayed') THEN rerun ELSE 0 END, \
                           job_state = CASE WHEN job_state IS NULL OR job_state = 'dead' \
                             THEN 'queued' ELSE job_state END \
                         RETURNING last_push",
                    )?
                    .query_row(
                        params![
                            bot,
                            sha,
                            kind,
                            i64::try_from(job.size).unwrap_or(i64::MAX),
                            ms(job.enqueued_at),
                            i64::from(job.attempts),
                            job.demand,
                            fresh.plain,
                            fresh.demanded,
                            fresh.effective(job.demand),
                            ms(now),
                            revived.plain,
                            revived.demanded,
                            revived.effective(job.demand),
                        ],
                        |r| r.get(0),
                    )?;
                Ok(Ok(push_outcome(&outcome)))
            })
            .await?;
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
        let req = ClaimReq {
            owner: owner.to_owned(),
            bots: bots.to_vec(),
            max,
            lease,
            now,
        };
        let shared = self.shared.clone();
        self.call("claiming jobs", move |c, policy| {
            // The writer thread runs one call at a time: the counter is read and written
            // by this claim alone.
            let mut turn = shared.turn.load(Ordering::Relaxed);
            let claim = claim_tx(c, policy, &mut turn, &req)?;
            shared.turn.store(turn, Ordering::Relaxed);
            if let Ok(claim) = &claim {
                super::sqlite_status::log_claims(c, &claim.jobs, req.now)?;
            }
            Ok(claim)
        })
        .await
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        let (bot, sha, kind) = key_params(&lease.key);
        let l = lease.clone();
        let expires_at = now.plus(lease_for);
        self.call("extending a lease", move |c, _| {
            let n = c
                .prepare_cached(&format!(
                    "UPDATE media_cache SET lease_expires_at = ?6 WHERE {HELD}"
                ))?
                .execute(params![
                    bot,
                    sha,
                    kind,
                    &*l.owner,
                    l.token as i64,
                    ms(expires_at)
                ])?;
            Ok(if n == 0 {
                Err(lease_lost(&l))
            } else {
                Ok(Lease { expires_at, ..l })
            })
        })
        .await
    }

    async fn complete(&self, lease: &Lease) -> Result<()> {
        let (bot, sha, kind) = key_params(&lease.key);
        let l = lease.clone();
        self.call("completing a job", move |c, _| {
            let tx = c;
            let args = params![bot, sha, kind, &*l.owner, l.token as i64];
            // A push came while the job was held: it runs again, from zero attempts.
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE media_cache SET job_state = 'queued', rerun = 0, retry_count = 0, \
                     lease_owner = NULL, lease_expires_at = NULL WHERE {HELD} AND rerun = 1"
                ))?
                .execute(args)?
                // No file_id cached: the row has nothing left to say; otherwise keep it,
                // job-less.
                + tx.prepare_cached(&format!(
                    "DELETE FROM media_cache WHERE {HELD} AND file_id IS NULL"
                ))?
                .execute(args)?
                + tx.prepare_cached(&format!(
                    "UPDATE media_cache SET job_state = NULL, lease_owner = NULL, \
                     lease_expires_at = NULL, next_retry_at = NULL, demand = 0 \
                     WHERE {HELD} AND file_id IS NOT NULL"
                ))?
                .execute(args)?;
            Ok(if n == 0 { Err(lease_lost(&l)) } else { Ok(()) })
        })
        .await
    }

    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> Result<()> {
        let (bot, sha, kind) = key_params(&lease.key);
        let l = lease.clone();
        let error = error.to_owned();
        self.call("scheduling a retry", move |c, _| {
            let n = c
                .prepare_cached(&format!(
                    "UPDATE media_cache SET job_state = 'delayed', next_retry_at = ?6, \
                     retry_count = retry_count + ?7, last_error = ?8, lease_owner = NULL, \
                     lease_expires_at = NULL, rerun = 0 WHERE {HELD}"
                ))?
                .execute(params![
                    bot,
                    sha,
                    kind,
                    &*l.owner,
                    l.token as i64,
                    ms(run_at),
                    i64::from(count_attempt),
                    error
                ])?;
            Ok(if n == 0 { Err(lease_lost(&l)) } else { Ok(()) })
        })
        .await?;
        Ok(())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<()> {
        let (bot, sha, kind) = key_params(&lease.key);
        let l = lease.clone();
        let error = error.to_owned();
        self.call("failing a job", move |c, _| {
            let n = c
                .prepare_cached(&format!(
                    "UPDATE media_cache SET job_state = 'dead', retry_count = retry_count + 1, \
                     last_error = ?6, lease_owner = NULL, lease_expires_at = NULL, rerun = 0, \
                     dead_seq = (SELECT coalesce(max(dead_seq), 0) + 1 FROM media_cache \
                                 WHERE job_state = 'dead') \
                     WHERE {HELD}"
                ))?
                .execute(params![bot, sha, kind, &*l.owner, l.token as i64, error])?;
            Ok(if n == 0 { Err(lease_lost(&l)) } else { Ok(()) })
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let (bot, sha, kind) = key_params(&lease.key);
        let l = lease.clone();
        self.call("releasing a job", move |c, _| {
            let n = c
                .prepare_cached(&format!(
                    "UPDATE media_cache SET job_state = 'queued', lease_owner = NULL, \
                     lease_expires_at = NULL, rerun = 0 WHERE {HELD}"
                ))?
                .execute(params![bot, sha, kind, &*l.owner, l.token as i64])?;
            Ok(if n == 0 { Err(lease_lost(&l)) } else { Ok(()) })
        })
        .await?;
        Ok(())
    }

    async fn promote(&self, key: &MediaKey, _now: Timestamp) -> Result<bool> {
        self.set_demand(key, true).await
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>> {
        let (bot, sha, kind) = key_params(key);
        self.call("reading a job", move |c, _| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM media_cache \
                     WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 AND job_state IS NOT NULL"
                ))?
                .query_row(params![bot, sha, kind], job_row)
                .optional()?;
            Ok(row
                .transpose()
                .and_then(|r| r.map(JobRow::info).transpose()))
        })
        .await
    }

    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call("listing dead jobs", move |c, _| {
            let rows: Vec<Result<JobRow>> = c
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM media_cache WHERE job_state = 'dead' \
                     ORDER BY dead_seq LIMIT ?1"
                ))?
                .query_map([limit], job_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows.into_iter().map(|r| r.and_then(JobRow::info)).collect())
        })
        .await
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64> {
        let key = key.map(key_params);
        let n = self
            .call("requeueing dead jobs", move |c, policy| {
                let tx = c;
                let (bot, sha, kind) = key.unwrap_or_default();
                let rows: Vec<(i64, Result<JobRow>)> = tx
                    .prepare_cached(&format!(
                        "SELECT id, {JOB_COLUMNS} FROM media_cache WHERE job_state = 'dead' \
                         AND (?1 = 0 OR (bot_slug = ?2 AND sha256 = ?3 AND kind = ?4))"
                    ))?
                    .query_map(params![key_is_some(&bot), bot, sha, kind], |r| {
                        Ok((r.get(0)?, job_row_at(r, 1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut stmt = tx.prepare_cached(
                    "UPDATE media_cache SET job_state = 'queued', retry_count = 0, \
                     enqueued_at = ?2, rank_plain = ?3, rank_demanded = ?4, \
                     priority = CASE WHEN demand THEN ?4 ELSE ?3 END, dead_seq = NULL \
                     WHERE id = ?1",
                )?;
                let mut n = 0u64;
                for (id, row) in rows {
                    let row = match row {
                        Ok(row) => row,
                        Err(e) => return Ok(Err(e)),
                    };
                    let ranks = Ranks::of(
                        policy,
                        &Job {
                            attempts: 0,
                            enqueued_at: now,
                            hot: false,
                            ..row.job()
                        },
                    );
                    n += stmt.execute(params![id, ms(now), ranks.plain, ranks.demanded])? as u64;
                }
                Ok(Ok(n))
            })
            .await?;
        Ok(n)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        self.call("counting jobs", move |c, _| {
            let n = |r: &rusqlite::Row<'_>, i| {
                r.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0))
            };
            let depth = c
                .prepare_cached(&depth_sql("media_cache", "demand = 1", "demand = 0"))?
                .query_row([], |r| {
                    Ok(QueueDepth {
                        queued: n(r, 0)?,
                        delayed: n(r, 1)?,
                        claimed: n(r, 2)?,
                        dead: n(r, 3)?,
                    })
                })?;
            Ok(Ok(depth))
        })
        .await
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        // Another process writing the same file is never heard, so the engine must poll
        // (`MEDIA_PREWARM_INTERVAL_MS`); its own pushes wake it directly.
        None
    }

    async fn clear_demand(&self, key: &MediaKey) -> Result<bool> {
        self.set_demand(key, false).await
    }

    async fn record_rejection(&self, key: &MediaKey) -> Result<u32> {
        let (bot, sha, kind) = key_params(key);
        self.call("counting a rejected file_id", move |c, _| {
            let n: i64 = c
                .prepare_cached(
                    "INSERT INTO media_rejections (bot_slug, sha256, kind, count) \
                     VALUES (?1, ?2, ?3, 1) ON CONFLICT (bot_slug, sha256, kind) \
                     DO UPDATE SET count = count + 1 RETURNING count",
                )?
                .query_row(params![bot, sha, kind], |r| r.get(0))?;
            Ok(Ok(u32::try_from(n).unwrap_or(u32::MAX)))
        })
        .await
    }

    async fn clear_rejections(&self, key: &MediaKey) -> Result<()> {
        let (bot, sha, kind) = key_params(key);
        self.call("clearing rejections", move |c, _| {
            c.prepare_cached(
                "DELETE FROM media_rejections WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3",
            )?
            .execute(params![bot, sha, kind])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn summary(&self, now: Timestamp) -> Result<Vec<BotSummary>> {
        self.call("summarising the queue", move |c, _| {
            super::sqlite_status::summary(c, now)
        })
        .await
    }
}

/// Up to `limit` ids of one bot's list, best first.
fn candidates(
    tx: &Connection,
    branch: Branch,
    bot: &str,
    cutoff: i64,
    limit: i64,
) -> rusqlite::Result<VecDeque<i64>> {
    let sql = match branch {
        // `?2 = ?2`: the demanded list has no cutoff, but every branch binds the same three.
        Branch::Demanded => {
            "SELECT id FROM media_cache WHERE bot_slug = ?1 AND job_state = 'queued' \
             AND demand = 1 AND ?2 = ?2 ORDER BY priority, id LIMIT ?3"
        }
        Branch::Aged => {
            "SELECT id FROM media_cache WHERE bot_slug = ?1 AND job_state = 'queued' \
             AND demand = 0 AND enqueued_at <= ?2 ORDER BY enqueued_at, id LIMIT ?3"
        }
        Branch::Fresh => {
            "SELECT id FROM media_cache WHERE bot_slug = ?1 AND job_state = 'queued' \
             AND demand = 0 AND enqueued_at > ?2 ORDER BY priority, id LIMIT ?3"
        }
    };
    tx.prepare_cached(sql)?
        .query_map(params![bot, cutoff, limit], |r| r.get(0))?
        .collect()
}

fn key_is_some(bot: &str) -> i64 {
    i64::from(!bot.is_empty())
}

fn job_row_at(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<Result<JobRow>> {
    let bot: String = r.get(offset)?;
    let sha: Vec<u8> = r.get(offset + 1)?;
    let kind: String = r.get(offset + 2)?;
    let key = match key_from_row(&bot, &sha, &kind) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(JobRow {
        key,
        size: r.get(offset + 3)?,
        enqueued_at: r.get(offset + 4)?,
        attempts: r.get(offset + 5)?,
        demand: r.get(offset + 6)?,
        state: r.get(offset + 7)?,
        run_at: r.get(offset + 8)?,
        owner: r.get(offset + 9)?,
        expires_at: r.get(offset + 10)?,
        last_error: r.get(offset + 11)?,
        rank_plain: r.get(offset + 12)?,
    }))
}
