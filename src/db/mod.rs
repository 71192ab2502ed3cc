//! Durable backends: a [`FileIdCache`](crate::FileIdCache), a
//! [`PriorityQueue`](crate::PriorityQueue) and an [`UploadJournal`](crate::upload::UploadJournal)
//! that survive the process.
//!
//! | type | feature | for |
//! |---|---|---|
//! | `SqliteStore` | `sqlite` | one process on one machine: an embedded database file |
//! | `PostgresStore` | `postgres` | many processes or machines sharing the work |
//! | `PostgresBudget` | `postgres` | the Telegram rate budget of a bot shared by its processes (not a cache or queue) |
//!
//! Each type implements the three traits on one database: the file_id of a media and its warm
//! job live in one row of the table `media_cache`, whose `status` reads `ready` (a file_id is
//! cached), `warming` (a job is unfinished) or `failed` (the job is dead); the
//! journal of warm-up sends is the table `upload_journal`. Both create their
//! schema by versioned migrations they run themselves, recorded in `schema_migrations`.
//!
//! Put a [`TieredCache`](crate::cache::TieredCache) in front of either for lookups without
//! I/O.
//!
//! [`open`] picks a backend from a `PREWARM_DB`-style string: a `postgres://` URL or a file
//! path.

#[cfg(feature = "sqlite")]
mod file_index;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_journal;
#[cfg(feature = "sqlite")]
mod sqlite_status;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod status;

#[cfg(feature = "sqlite")]
pub use file_index::{FileIndex, FileStat, IndexedFile};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBudget, PostgresBudgetBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreBuilder, QueueClock};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteStore, SqliteStoreBuilder};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use open_impl::{DurableStore, open, open_from_env};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod open_impl {
    use std::sync::Arc;

    use crate::cache::FileIdCache;
    use crate::error::{Error, Result};
    use crate::queue::PriorityQueue;
    use crate::upload::UploadJournal;

    /// A durable backend chosen at run time: the same store as a cache, a queue and a
    /// journal of warm-up sends.
    #[derive(Debug, Clone)]
    pub struct DurableStore {
        /// The store as a file_id cache.
        pub cache: Arc<dyn FileIdCache>,
        /// The same store as the warm-job queue.
        pub queue: Arc<dyn PriorityQueue>,
        /// The same store as the journal of warm-up sends.
        pub journal: Arc<dyn UploadJournal>,
    }

    /// Opens the backend `target` names: a `postgres://` (or `postgresql://`) URL opens a
    /// `PostgresStore` configured by `PostgresStore::builder_from_env` (`PREWARM_DB_SCHEMA`,
    /// default `prewarm`; pool size; connect and statement timeouts), anything else is a file
    /// path for a `SqliteStore`.
    ///
    /// # Errors
    /// [`Error::Config`] when the backend's feature is not enabled, `target` is empty or a
    /// `PREWARM_DB_*` variable is malformed; the backend's error when it cannot open or
    /// migrate the database.
    pub async fn open(target: &str) -> Result<DurableStore> {
        let target = target.trim();
        if target.is_empty() {
            return Err(Error::Config {
                message: "PREWARM_DB is empty: give a file path or a postgres:// URL".to_owned(),
            });
        }
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let store = super::PostgresStore::builder_from_env(target)?
                    .connect()
                    .await?;
                return Ok(DurableStore {
                    cache: Arc::new(store.clone()),
                    queue: Arc::new(store.clone()),
                    journal: Arc::new(store),
                });
            }
            #[cfg(not(feature = "postgres"))]
            return Err(Error::Config {
                message: "PREWARM_DB is a postgres:// URL but prewarm was built without the \
                          `postgres` feature: enable it in Cargo.toml"
                    .to_owned(),
            });
        }
        #[cfg(feature = "sqlite")]
        {
            let store = super::SqliteStore::open(target).await?;
            Ok(DurableStore {
                cache: Arc::new(store.clone()),
                queue: Arc::new(store.clone()),
                journal: Arc::new(store),
            })
        }
        #[cfg(not(feature = "sqlite"))]
        Err(Error::Config {
            message: "PREWARM_DB is a file path but prewarm was built without the `sqlite` \
                      feature: enable it in Cargo.toml"
                .to_owned(),
        })
    }

    /// [`open`] on `PREWARM_DB`, else on `DATABASE_URL`; `None` when neither is set.
    ///
    /// # Errors
    /// As [`open`].
    pub async fn open_from_env() -> Result<Option<DurableStore>> {
        let target = std::env::var("PREWARM_DB")
            .ok()
            .or_else(|| std::env::var("DATABASE_URL").ok());
        match target {
            Some(t) => open(&t).await.map(Some),
            None => Ok(None),
        }
    }
}

/// The job states stored in `media_cache.job_state` (`NULL`: no job).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod state {
    pub(crate) const QUEUED: &str = "queued";
    pub(crate) const DELAYED: &str = "delayed";
    pub(crate) const CLAIMED: &str = "claimed";
    pub(crate) const DEAD: &str = "dead";
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod shared {
    use std::sync::Arc;

    use crate::error::{Error, Result};
    use crate::media::{BotId, FileId, Job, MediaKey, Sha256, Timestamp};
    use crate::queue::{JobInfo, JobState, Lease, PriorityPolicy, PushOutcome};
    use crate::upload::{Delivered, JournalEntry};

    /// A job's two possible ranks. The policy lives in Rust, so the database stores both and
    /// picks by the `demand` column: a merge or a promote flips demand without knowing the
    /// policy.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Ranks {
        pub(crate) plain: i64,
        pub(crate) demanded: i64,
    }

    impl Ranks {
        pub(crate) fn of(policy: &PriorityPolicy, job: &Job) -> Self {
            let mut j = job.clone();
            j.demand = false;
            let plain = policy.rank(&j);
            j.demand = true;
            let demanded = policy.rank(&j);
            Self { plain, demanded }
        }

        pub(crate) fn effective(&self, demand: bool) -> i64 {
            if demand { self.demanded } else { self.plain }
        }
    }

    pub(crate) fn ms(t: Timestamp) -> i64 {
        i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn ts(v: i64) -> Timestamp {
        Timestamp(u64::try_from(v).unwrap_or(0))
    }

    /// The earliest time jobs older than the aging bound were queued at.
    pub(crate) fn aging_cutoff(policy: &PriorityPolicy, now: Timestamp) -> i64 {
        let bound = i64::try_from(policy.aging_bound().as_millis()).unwrap_or(i64::MAX);
        ms(now).saturating_sub(bound)
    }

    /// A row read back from the database: checked, since another program may write it.
    pub(crate) fn key_from_row(bot: &str, sha: &[u8], kind: &str) -> Result<MediaKey> {
        key_in("media_cache", bot, sha, kind)
    }

    /// The key of a row of `table`, checked.
    pub(crate) fn key_in(table: &str, bot: &str, sha: &[u8], kind: &str) -> Result<MediaKey> {
        let sha: [u8; 32] = sha
            .try_into()
            .map_err(|_| corrupt_in(table, "a sha256 is not 32 bytes"))?;
        Ok(MediaKey::new(
            BotId::new(bot).map_err(|_| corrupt_in(table, "a bot_slug is not a valid bot id"))?,
            Sha256::from_bytes(sha),
            kind.parse()
                .map_err(|_| corrupt_in(table, "a kind is not a media kind"))?,
        ))
    }

    /// The columns describing one job, as read from `media_cache` (and `media_store`).
    #[derive(Debug)]
    pub(crate) struct JobRow {
        pub(crate) key: MediaKey,
        pub(crate) size: i64,
        pub(crate) enqueued_at: i64,
        pub(crate) attempts: i64,
        pub(crate) demand: bool,
        /// The stored plain rank, which tells whether the job was pushed hot.
        pub(crate) rank_plain: Option<i64>,
        pub(crate) state: String,
        pub(crate) run_at: Option<i64>,
        pub(crate) owner: Option<String>,
        pub(crate) expires_at: Option<i64>,
        pub(crate) last_error: Option<String>,
    }

    impl JobRow {
        pub(crate) fn job(&self) -> Job {
            Job {
                key: self.key.clone(),
                size: u64::try_from(self.size).unwrap_or(0),
                enqueued_at: ts(self.enqueued_at),
                attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
                demand: self.demand,
                hot: self.rank_plain.is_some_and(crate::queue::is_hot_rank),
            }
        }

        pub(crate) fn info(self) -> Result<JobInfo> {
            use super::state::*;
            let state = match self.state.as_str() {
                QUEUED => JobState::Queued,
                DELAYED => JobState::Delayed {
                    run_at: ts(self.run_at.unwrap_or(0)),
                },
                CLAIMED => JobState::Claimed {
                    owner: Arc::from(self.owner.clone().unwrap_or_default()),
                    expires_at: ts(self.expires_at.unwrap_or(0)),
                },
                DEAD => JobState::Dead,
                _ => {
                    return Err(corrupt(
                        "a job_state is not one of queued, delayed, claimed, dead",
                    ));
                }
            };
            Ok(JobInfo {
                job: self.job(),
                state,
                last_error: self.last_error,
            })
        }
    }

    /// The columns of one `upload_journal` row, as read back.
    #[derive(Debug)]
    pub(crate) struct JournalRow {
        pub(crate) key: MediaKey,
        pub(crate) chat: i64,
        pub(crate) after: Option<i64>,
        pub(crate) started_at: i64,
        pub(crate) message_id: Option<i64>,
        pub(crate) file_id: Option<String>,
    }

    impl JournalRow {
        /// The entry, checked: `deliver` writes the message id and the file_id together,
        /// so a row with one and not the other was written by something else.
        pub(crate) fn entry(self) -> Result<JournalEntry> {
            let delivered = match (self.message_id, self.file_id) {
                (Some(message_id), Some(file_id)) => Some(Delivered {
                    message_id,
                    file_id: FileId::new(file_id),
                }),
                (None, None) => None,
                _ => {
                    return Err(corrupt_in(
                        "upload_journal",
                        "a row holds a message_id or a file_id without the other",
                    ));
                }
            };
            Ok(JournalEntry {
                media: self.key,
                chat: self.chat,
                after: self.after,
                started_at: ts(self.started_at),
                delivered,
            })
        }
    }

    /// A versioned migration: its version, name and SQL.
    pub(crate) type Migration = (i32, &'static str, &'static str);

    /// The migrations of `list` past `current`, in order; an error when the database is
    /// newer than this prewarm (`what` names it and `instead` the way out).
    pub(crate) fn pending(
        list: &'static [Migration],
        current: i32,
        what: &str,
        instead: &str,
    ) -> Result<impl Iterator<Item = &'static Migration>> {
        let latest = list.last().map_or(0, |m| m.0);
        if current > latest {
            return Err(Error::Config {
                message: format!(
                    "{what} is at schema version {current}, newer than this prewarm knows \
                     ({latest}): upgrade prewarm or {instead}"
                ),
            });
        }
        Ok(list.iter().filter(move |m| m.0 > current))
    }

    /// The statement of `depth()` on `table`: one row of four counts (queued, delayed,
    /// claimed, dead), each over its state's partial index (queued jobs over the demanded and
    /// the undemanded ones, tested by the dialect's `demanded` and `undemanded`), so that its
    /// cost follows the jobs, never the table (whose ready rows, one per media ever warmed,
    /// are most of it).
    pub(crate) fn depth_sql(table: &str, demanded: &str, undemanded: &str) -> String {
        let count =
            |state: &str| format!("(SELECT count(*) FROM {table} WHERE job_state = '{state}'");
        let queued = count("queued");
        format!(
            "SELECT {queued} AND {demanded}) + {queued} AND {undemanded}), {}), {}), {})",
            count("delayed"),
            count("claimed"),
            count("dead")
        )
    }

    /// What a push did, from the word the upsert records in `last_push`.
    pub(crate) fn push_outcome(word: &str) -> PushOutcome {
        match word {
            "merged" => PushOutcome::Merged,
            "revived" => PushOutcome::Revived,
            _ => PushOutcome::Queued,
        }
    }

    /// A finishing call by a worker that no longer holds the job.
    pub(crate) fn lease_lost(lease: &Lease) -> Error {
        Error::LeaseLost {
            key: lease.key.clone(),
        }
    }

    pub(crate) fn corrupt(what: &str) -> Error {
        corrupt_in("media_cache", what)
    }

    fn corrupt_in(table: &str, what: &str) -> Error {
        Error::Backend {
            backend: "database",
            message: format!(
                "the {table} table holds a row prewarm did not write: {what}; check what else writes to it"
            ),
            retryable: false,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use shared::*;
