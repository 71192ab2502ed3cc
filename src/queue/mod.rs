//! The warm-job queue: the [`PriorityQueue`] trait, the [`PriorityPolicy`] every backend
//! orders by, and the in-memory backend.

mod memory;
mod policy;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::error::Result;
use crate::media::{BotId, Job, MediaKey, Timestamp};

pub use memory::MemoryQueue;
pub use policy::PriorityPolicy;
pub(crate) use policy::{Branch, is_hot_rank, pick};

/// What [`PriorityQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// A new job was queued.
    Queued,
    /// An unfinished job for the same media was already there (queued, waiting to retry or
    /// claimed); it was kept, with the demand of both.
    Merged,
    /// The media's job was dead; it was revived with its attempts reset.
    Revived,
}

/// Proof that a worker holds a job. Only the holder of the current lease may finish the job;
/// a lease that expired and was reclaimed is refused with
/// [`Error::LeaseLost`](crate::Error::LeaseLost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job's media.
    pub key: MediaKey,
    /// Fencing token: larger for every claim of the same media than for any before it.
    pub token: u64,
    /// Who holds it (an engine instance id).
    pub owner: Arc<str>,
    /// When it lapses unless extended.
    pub expires_at: Timestamp,
}

/// A job handed to a worker, with its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The job.
    pub job: Job,
    /// The worker's lease on it.
    pub lease: Lease,
}

/// The answer to [`PriorityQueue::claim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The jobs claimed, best first.
    pub jobs: Vec<Claimed>,
    /// The earliest time at which a job not claimable now becomes claimable (a retry coming
    /// due, a lease lapsing), if any: the dispatcher sleeps until then at the latest.
    pub next_due: Option<Timestamp>,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to be claimed.
    Queued,
    /// Waiting until `run_at` before it may be claimed again.
    Delayed {
        /// When it becomes claimable.
        run_at: Timestamp,
    },
    /// Held by a worker.
    Claimed {
        /// The holder.
        owner: Arc<str>,
        /// When its lease lapses.
        expires_at: Timestamp,
    },
    /// Failed for good; kept until requeued.
    Dead,
}

/// A job with its state, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job.
    pub job: Job,
    /// Its state.
    pub state: JobState,
    /// The last error recorded for it, if any.
    pub last_error: Option<String>,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Claimable now (or once their retry time comes: see `delayed`).
    pub queued: u64,
    /// Waiting for a retry time.
    pub delayed: u64,
    /// Held by workers.
    pub claimed: u64,
    /// Failed for good.
    pub dead: u64,
}

/// One bot's jobs, as [`PriorityQueue::summary`] reports them to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotSummary {
    /// The bot.
    pub bot: BotId,
    /// How many of its jobs are in each state.
    pub depth: QueueDepth,
    /// When its oldest unfinished job (queued, delayed or claimed) was first queued.
    pub oldest_enqueued_at: Option<Timestamp>,
    /// Its jobs claimed (upload attempts started) in the minute up to `now`.
    pub claims_last_minute: u64,
    /// The time the figures are as of, by the queue's clock (the clock that stamped
    /// `oldest_enqueued_at`: the database's for PostgreSQL, the caller's `now` otherwise).
    pub as_of: Timestamp,
}

impl BotSummary {
    /// A bot with nothing to report yet, as of `as_of`.
    pub(crate) fn empty(bot: BotId, as_of: Timestamp) -> Self {
        Self {
            bot,
            depth: QueueDepth::default(),
            oldest_enqueued_at: None,
            claims_last_minute: 0,
            as_of,
        }
    }

    /// How long the oldest unfinished job has waited, on the queue's own clock (so that a
    /// caller's clock skew does not enter it).
    pub fn oldest_age(&self) -> Option<Duration> {
        self.oldest_enqueued_at.map(|t| self.as_of.since(t))
    }
}

impl QueueDepth {
    /// Jobs not yet finished: queued, delayed and claimed.
    pub fn pending(&self) -> u64 {
        self.queued + self.delayed + self.claimed
    }
}

/// The warm-job queue.
///
/// # Contract
/// - **One unfinished job per media.** `push` of a key whose job is queued, delayed or claimed
///   merges into it (demand is kept if either had it) and answers
///   [`PushOutcome::Merged`]; of a dead job revives it with zero attempts. A push merged into
///   a *claimed* job is not lost when its holder finishes: `complete` then queues the job
///   again (zero attempts) instead of removing it, since the push may come after what the
///   holder uploaded went stale (a re-warm after Telegram rejected a file_id). `retry` and
///   `release` run the job again anyway; `fail` ends it, and a later push revives it.
/// - **Bots.** `claim` names the bots its caller serves (the bots of its uploaders) and never
///   answers another bot's job; an empty `bots` claims nothing. Bots sharing one queue (one
///   database) so never hold each other's jobs.
/// - **Order.** Within each bot, `claim` hands out claimable jobs in the order of the queue's
///   [`PriorityPolicy`]: jobs someone waits for (demanded) first, then jobs older than the
///   aging bound (oldest first), then the rest by [`PriorityPolicy::rank`], lowest first;
///   except one slot in [`PriorityPolicy::aged_share`], where aged jobs go before demanded
///   ones, so that nothing starves. A hot job ([`Job::hot`]) goes ahead of its list within
///   the policy's limits (its rank says so: a backend that orders by rank needs nothing
///   more); the mark comes back with the job, and `requeue_dead` clears it. A claim for several bots takes one job from each bot in
///   rotation (skipping bots with nothing claimable), so one bot's backlog never delays
///   another bot's jobs. Jobs delayed until a later time are not claimable before it.
/// - **Leases.** A claimed job belongs to the lease holder until `expires_at`; after that the
///   next `claim` may hand it to another worker with a larger fencing token. `complete`,
///   `retry`, `fail`, `release` and `extend` check the lease and answer
///   [`Error::LeaseLost`](crate::Error::LeaseLost) to a holder that lost it, changing nothing.
/// - `complete` removes the job. `retry` makes it claimable again at `run_at`, counting a
///   failed attempt when `count_attempt`. `fail` moves it to the dead state with the error.
///   `release` returns it to the queue untouched (for shutdown).
/// - `promote` marks a job as demanded (someone waits for it), which puts it in its bot's
///   demanded list; a delayed job stays delayed. `clear_demand` undoes it when the last
///   waiter leaves.
/// - **Rejections.** `record_rejection` counts, per media, the times Telegram refused its
///   file_id when sent, whether or not the media has a job (durably in a durable backend),
///   until `clear_rejections`.
/// - **Time.** Times are passed in by the caller, so that tests can drive them: the memory
///   and SQLite backends (one host) use the `now` given. A queue shared by several hosts may
///   follow one clock of its own instead, so that hosts whose clocks disagree still agree on
///   leases and aging: `PostgresStore` by default follows the database server's clock and then
///   ignores `now` (and a pushed job's `enqueued_at`); the times it answers
///   (`Lease::expires_at`, `Claim::next_due`) are on that clock. Measure a lease's remaining
///   time from when the claim returned, not by comparing `expires_at` with a local clock.
/// - `notifier` is a signal the queue raises when work may have become claimable through
///   someone else (another engine sharing the queue, another process), or `None` when it
///   cannot tell: the engine then polls.
#[async_trait]
pub trait PriorityQueue: Send + Sync + Debug + 'static {
    /// Queues `job`, or merges it into the media's unfinished job.
    async fn push(&self, job: Job, now: Timestamp) -> Result<PushOutcome>;

    /// Claims up to `max` jobs of `bots` for `owner`, each leased until `now + lease`.
    async fn claim(
        &self,
        owner: &str,
        bots: &[BotId],
        max: usize,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Claim>;

    /// Extends a lease to `now + lease`; answers the extended lease.
    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease>;

    /// Finishes a job: it is done and leaves the queue.
    async fn complete(&self, lease: &Lease) -> Result<()>;

    /// Makes a job claimable again at `run_at`, recording `error`.
    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> Result<()>;

    /// Moves a job to the dead state, keeping `error`.
    async fn fail(&self, lease: &Lease, error: &str) -> Result<()>;

    /// Returns a claimed job to the queue as it was, without counting an attempt.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Marks the media's job as demanded; answers whether there was an unfinished job.
    async fn promote(&self, key: &MediaKey, now: Timestamp) -> Result<bool>;

    /// The media's job and its state, if there is one.
    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>>;

    /// Up to `limit` dead jobs with their errors, oldest first.
    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>>;

    /// Requeues the dead job of `key`, or every dead job when `None`, with attempts reset;
    /// answers how many were requeued.
    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64>;

    /// How many jobs are in each state.
    async fn depth(&self) -> Result<QueueDepth>;

    /// A signal raised when work may have become claimable through someone else.
    fn notifier(&self) -> Option<Arc<Notify>>;

    /// The media's job loses its demand (the last waiter left); answers whether there was an
    /// unfinished job.
    async fn clear_demand(&self, key: &MediaKey) -> Result<bool>;

    /// Counts one more refusal of the media's file_id by Telegram; answers the count, this one
    /// included. Kept, with or without a job, until [`clear_rejections`](Self::clear_rejections).
    async fn record_rejection(&self, key: &MediaKey) -> Result<u32>;

    /// Forgets the media's rejections (a warm succeeded).
    async fn clear_rejections(&self, key: &MediaKey) -> Result<()>;

    /// Per bot, ordered by bot id: its jobs in each state, its oldest unfinished job, and its
    /// claims in the [`SUMMARY_WINDOW`] up to `now`. Bots with no job and no such claim are
    /// left out. For operators (`prewarm status`), not for the hot path: it may scan.
    async fn summary(&self, now: Timestamp) -> Result<Vec<BotSummary>>;
}

/// How far back [`PriorityQueue::summary`] counts claims: one minute.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);
