use std::time::Duration;

use crate::media::{Job, MediaKind};

/// The order in which warm jobs run, shared by every queue backend.
///
/// Each bot's claimable jobs fall in three lists:
/// 1. **Demanded**: someone is waiting for the media (a send or a wait), first come, first
///    served, except that a hot job counts as having come one
///    [`aging_bound`](Self::aging_bound) earlier.
/// 2. **Aged**: not demanded, waiting longer than [`aging_bound`](Self::aging_bound), oldest
///    first.
/// 3. **Fresh**: the rest, by [`rank`](Self::rank), lowest first: hot jobs before the others,
///    then a class made of the kind (photos first, videos last) and the size (each doubling
///    above 64 KiB one step back), then the most recently queued first, because freshly saved
///    media is the media a bot is about to send.
///
/// A job is hot ([`Job::hot`]) when running it now is cheap and running it later is not: the
/// engine holds the media's bytes (it was just saved) and the uploader must upload them
/// (Telegram fetches no URL for it, as for videos over 20 MB), so that warming it at once
/// spares reading the whole media back from the store later. The engine pins such bytes in
/// its byte cache until a worker takes them, and saves can outrun warming many times over: a
/// backlog of demanded or smaller media must not hold the pin (and the memory) for long.
/// Hot jobs therefore go ahead of their list, within limits that keep the rules below: a hot
/// job nobody waits for stays behind every demanded job and every aged one, and among
/// demanded jobs a hot one passes only those that came less than one aging bound before it,
/// so that no demanded job waits more than one aging bound longer than first come, first
/// served would have it.
///
/// A claim slot takes from the first non-empty list in the order demanded, aged, fresh, except
/// one slot in [`aged_share`](Self::aged_share) of each bot's turns, which takes aged, demanded,
/// fresh. Demand therefore beats age (a waiting send is not stuck behind a backlog that has
/// aged), and aged jobs still get at least one slot in `aged_share` while demand lasts, so
/// nothing starves: without demand, a job starts at most `aging_bound` after it was queued,
/// plus the time the workers need to drain the jobs that aged before it; with endless demand,
/// that drain runs at one slot in `aged_share`.
///
/// A claim for several bots gives their lists turns in rotation, one slot each, skipping a
/// bot with nothing claimable: no bot's backlog holds back another bot's jobs.
///
/// The rank is a plain `i64` so that durable backends can store it in an indexed column.
///
/// ```
/// use std::time::Duration;
/// use prewarm::{BotId, Job, MediaKey, MediaKind, PriorityPolicy, Sha256, Timestamp};
///
/// let policy = PriorityPolicy::default();
/// let bot = BotId::new("bot")?;
/// let photo = Job::new(MediaKey::new(bot.clone(), Sha256::of(b"p"), MediaKind::Photo), 50_000, Timestamp(1_000));
/// let video = Job::new(MediaKey::new(bot, Sha256::of(b"v"), MediaKind::Video), 40_000_000, Timestamp(2_000));
/// assert!(policy.rank(&photo) < policy.rank(&video));
/// assert_eq!(policy.aging_bound(), Duration::from_secs(60));
/// assert_eq!(policy.aged_share(), 4);
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityPolicy {
    aging_bound: Duration,
    aged_share: u32,
}

/// One list of a bot's claimable jobs (see [`PriorityPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Branch {
    /// Demanded jobs, first come, first served.
    Demanded,
    /// Jobs past the aging bound, oldest first.
    Aged,
    /// The rest, by rank.
    Fresh,
}

/// Picks up to `max` jobs for `bots` bots, in the order of `policy`: slot by slot, bots in
/// rotation, each slot from the first list of that bot's turn that `take` finds non-empty.
/// `take(bot, branch)` removes and answers that list's best job. `turn` is the caller's slot
/// counter, advanced by the number of jobs picked, so that rotation and the aged share carry
/// over from one claim to the next.
pub(crate) fn pick<T>(
    policy: &PriorityPolicy,
    bots: usize,
    max: usize,
    turn: &mut u64,
    mut take: impl FnMut(usize, Branch) -> Option<T>,
) -> Vec<T> {
    let mut picked = Vec::new();
    if bots == 0 {
        return picked;
    }
    let n = bots as u64;
    // Bots found empty in every list during this claim: they stay empty until it ends.
    let mut empty = vec![false; bots];
    'slots: while picked.len() < max {
        for offset in 0..n {
            let slot = *turn + offset;
            let bot = (slot % n) as usize;
            if empty[bot] {
                continue;
            }
            for branch in policy.branches(slot / n) {
                if let Some(job) = take(bot, branch) {
                    picked.push(job);
                    *turn = slot + 1;
                    continue 'slots;
                }
            }
            empty[bot] = true;
        }
        break;
    }
    picked
}

/// One slot in this many goes to aged jobs ahead of demand.
const DEFAULT_AGED_SHARE: u32 = 4;

/// Ranks of demanded jobs sit below every other rank.
const DEMAND_BASE: i64 = i64::MIN / 2;
/// One class step; larger than any millisecond timestamp before the year 2109.
const CLASS_STEP: i64 = 1 << 42;
/// Ranks of hot jobs nobody waits for sit below every class rank (classes run from 0 to 25,
/// so `HOT_BASE + 26 * CLASS_STEP` is still negative) and above every demanded rank. The
/// ranks of jobs that are not hot are never negative, which [`is_hot_rank`] relies on.
const HOT_BASE: i64 = -32 * CLASS_STEP;

impl PriorityPolicy {
    /// A policy whose jobs all start within `aging_bound` of being queued (plus drain time),
    /// with one slot in 4 kept for aged jobs while demand waits.
    ///
    /// A zero bound makes the queue FIFO for jobs nobody waits for.
    pub const fn new(aging_bound: Duration) -> Self {
        Self {
            aging_bound,
            aged_share: DEFAULT_AGED_SHARE,
        }
    }

    /// Keeps one claim slot in `n` of each bot's turns for aged jobs, ahead of demanded ones
    /// (default 4; `n` below 1 counts as 1: aged jobs always first, as before demand existed).
    #[must_use]
    pub const fn with_aged_share(mut self, n: u32) -> Self {
        self.aged_share = if n == 0 { 1 } else { n };
        self
    }

    /// One slot in how many of each bot's turns goes to aged jobs before demanded ones.
    pub const fn aged_share(&self) -> u32 {
        self.aged_share
    }

    /// The lists a bot's `turn`-th claim slot tries, in order.
    pub(crate) fn branches(&self, turn: u64) -> [Branch; 3] {
        if turn % u64::from(self.aged_share) == u64::from(self.aged_share) - 1 {
            [Branch::Aged, Branch::Demanded, Branch::Fresh]
        } else {
            [Branch::Demanded, Branch::Aged, Branch::Fresh]
        }
    }

    /// How long a job may wait before it goes ahead of every job that has not aged.
    pub const fn aging_bound(&self) -> Duration {
        self.aging_bound
    }

    /// The job's rank: lower runs first among jobs that have not aged.
    pub fn rank(&self, job: &Job) -> i64 {
        let enqueued = job.enqueued_at.as_millis().min(CLASS_STEP as u64 - 1) as i64;
        if job.demand {
            // First come, first served among the jobs someone is waiting for; a hot job as
            // if it had come one aging bound earlier.
            let lead = if job.hot {
                self.aging_bound.as_millis().min(CLASS_STEP as u128 - 1) as i64
            } else {
                0
            };
            return DEMAND_BASE + enqueued - lead;
        }
        let class = i64::from(kind_weight(job.key.kind)) + i64::from(size_class(job.size));
        let base = if job.hot { HOT_BASE } else { 0 };
        // Within a class, the most recent first: a larger timestamp gives a lower rank.
        base + class * CLASS_STEP + (CLASS_STEP - 1 - enqueued)
    }
}

impl Default for PriorityPolicy {
    /// A 60-second aging bound.
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

/// Whether a rank the policy gave a job nobody waits for (a durable backend's stored plain
/// rank) is a hot job's: only those are negative.
pub(crate) fn is_hot_rank(plain_rank: i64) -> bool {
    plain_rank < 0
}

/// How far back a kind sits: what is quick to upload and most often sent goes first.
fn kind_weight(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Photo => 0,
        MediaKind::Sticker | MediaKind::Voice => 1,
        MediaKind::Animation => 2,
        MediaKind::Audio | MediaKind::VideoNote => 3,
        MediaKind::Document => 4,
        MediaKind::Video => 5,
    }
}

/// One step per doubling above 64 KiB: 30 KB is 0, 2 MB is 5, 40 MB is 10, 2 GB is 15.
fn size_class(size: u64) -> u8 {
    let units = size / (64 * 1024);
    if units == 0 {
        0
    } else {
        (64 - units.leading_zeros()).min(20) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{BotId, MediaKey, Sha256, Timestamp};

    fn job(kind: MediaKind, size: u64, at: u64) -> Job {
        let key = MediaKey::new(
            BotId::new("b").unwrap(),
            Sha256::of(&at.to_le_bytes()),
            kind,
        );
        Job::new(key, size, Timestamp(at))
    }

    #[test]
    fn smaller_photos_recent_and_demanded_go_first() {
        let p = PriorityPolicy::default();
        let now = 1_800_000_000_000;
        assert!(
            p.rank(&job(MediaKind::Photo, 30_000, now))
                < p.rank(&job(MediaKind::Photo, 2_000_000, now))
        );
        assert!(
            p.rank(&job(MediaKind::Photo, 2_000_000, now))
                < p.rank(&job(MediaKind::Video, 2_000_000, now))
        );
        assert!(
            p.rank(&job(MediaKind::Photo, 30_000, now + 1))
                < p.rank(&job(MediaKind::Photo, 30_000, now))
        );
        let mut demanded = job(MediaKind::Video, 40_000_000, now);
        demanded.demand = true;
        assert!(p.rank(&demanded) < p.rank(&job(MediaKind::Photo, 1, now + 10)));
        let mut earlier = job(MediaKind::Video, 1, now - 5);
        earlier.demand = true;
        assert!(p.rank(&earlier) < p.rank(&demanded));
    }

    fn hot(mut j: Job) -> Job {
        j.hot = true;
        j
    }

    fn demanded(mut j: Job) -> Job {
        j.demand = true;
        j
    }

    /// A hot job nobody waits for goes ahead of every fresh job that is not hot (the smallest
    /// photo, queued later, included), in class order among hot ones, and behind every
    /// demanded job.
    #[test]
    fn hot_jobs_lead_the_fresh_list_and_stay_behind_demand() {
        let p = PriorityPolicy::default();
        let now = 1_800_000_000_000;
        let big = hot(job(MediaKind::Video, 40_000_000, now));
        assert!(p.rank(&big) < p.rank(&job(MediaKind::Photo, 1, now + 10)));
        assert!(p.rank(&big) < p.rank(&job(MediaKind::Photo, 1, 0)));
        assert!(
            p.rank(&hot(job(MediaKind::Photo, 30_000, now)))
                < p.rank(&hot(job(MediaKind::Video, 30_000, now)))
        );
        assert!(p.rank(&demanded(job(MediaKind::Video, u64::MAX, now + 10))) < p.rank(&big));
        // Extremes of both bands: the largest class at the earliest time, hot or not.
        let worst_hot = hot(job(MediaKind::Video, u64::MAX, 0));
        let best_plain = job(MediaKind::Photo, 0, CLASS_STEP as u64 - 1);
        assert!(p.rank(&worst_hot) < p.rank(&best_plain));
        assert!(is_hot_rank(p.rank(&worst_hot)));
        assert!(is_hot_rank(p.rank(&hot(job(MediaKind::Photo, 0, now)))));
        assert!(!is_hot_rank(p.rank(&best_plain)));
        assert!(!is_hot_rank(p.rank(&job(MediaKind::Video, u64::MAX, 0))));
    }

    /// Among demanded jobs, a hot one passes those that came less than one aging bound before
    /// it, and no others.
    #[test]
    fn a_hot_demanded_job_passes_at_most_one_aging_bound() {
        let p = PriorityPolicy::new(Duration::from_secs(60));
        let now = 1_800_000_000_000;
        let h = demanded(hot(job(MediaKind::Video, 25_000_000, now)));
        let recent = demanded(job(MediaKind::Photo, 1, now - 59_999));
        let old = demanded(job(MediaKind::Photo, 1, now - 60_001));
        assert!(p.rank(&h) < p.rank(&recent));
        assert!(p.rank(&old) < p.rank(&h));
        // Hot ones among themselves: first come, first served.
        let later = demanded(hot(job(MediaKind::Photo, 1, now + 1)));
        assert!(p.rank(&h) < p.rank(&later));
        // A zero bound leaves first come, first served as it was.
        let fifo = PriorityPolicy::new(Duration::ZERO);
        assert!(fifo.rank(&demanded(job(MediaKind::Photo, 1, now - 1))) < fifo.rank(&h));
    }

    /// Two bots in rotation, each with demand and aged work: every fourth turn of each bot
    /// takes aged first; an empty bot yields its slot.
    #[test]
    fn pick_rotates_bots_and_keeps_the_aged_share() {
        let p = PriorityPolicy::default();
        let mut turn = 0;
        let got = pick(&p, 2, 8, &mut turn, |bot, branch| Some((bot, branch)));
        let aged: Vec<_> = got.iter().filter(|g| g.1 == Branch::Aged).collect();
        assert_eq!(got.len(), 8);
        assert_eq!(turn, 8);
        assert!(got.iter().step_by(2).all(|g| g.0 == 0), "{got:?}");
        assert_eq!(aged, [&(0, Branch::Aged), &(1, Branch::Aged)], "{got:?}");
        let got = pick(&p, 2, 3, &mut turn, |bot, branch| {
            (bot == 1).then_some((bot, branch))
        });
        assert_eq!(got.len(), 3, "bot 1 takes the slots bot 0 cannot use");
        assert!(pick(&p, 0, 3, &mut turn, |_, _| Some(())).is_empty());
        assert!(pick(&p, 2, 3, &mut turn, |_, _| None::<()>).is_empty());
    }

    #[test]
    fn size_classes() {
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(30_000), 0);
        assert_eq!(size_class(2_000_000), 5);
        assert_eq!(size_class(40_000_000), 10);
        assert_eq!(size_class(u64::MAX), 20);
    }
}
