use std::time::Duration;

use crate::media::{Job, MediaKind};

/// The order in which warm jobs run, shared by every queue backend.
///
/// Two rules, applied in turn:
/// 1. **Aging.** A job that has waited longer than [`aging_bound`](Self::aging_bound) goes
///    before every job that has not, oldest first. However many better jobs keep arriving,
///    a job therefore starts at most `aging_bound` after it was queued, plus the time the
///    workers need to drain the jobs that aged before it.
/// 2. **Rank** ([`rank`](Self::rank), lowest first): jobs someone is waiting for, then by a
///    class made of the kind (photos first, videos last) and the size (each doubling above
///    64 KiB one step back), then the most recently queued first, because freshly saved media
///    is the media a bot is about to send.
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
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityPolicy {
    aging_bound: Duration,
}

/// Ranks of demanded jobs sit below every class rank.
const DEMAND_BASE: i64 = i64::MIN / 2;
/// One class step; larger than any millisecond timestamp for the next few thousand years.
const CLASS_STEP: i64 = 1 << 42;

impl PriorityPolicy {
    /// A policy whose jobs all start within `aging_bound` of being queued (plus drain time).
    ///
    /// A zero bound makes the queue plain FIFO.
    pub const fn new(aging_bound: Duration) -> Self {
        Self { aging_bound }
    }

    /// How long a job may wait before it goes ahead of every job that has not aged.
    pub const fn aging_bound(&self) -> Duration {
        self.aging_bound
    }

    /// The job's rank: lower runs first among jobs that have not aged.
    pub fn rank(&self, job: &Job) -> i64 {
        let enqueued = job.enqueued_at.as_millis().min(CLASS_STEP as u64 - 1) as i64;
        if job.demand {
            // First come, first served among the jobs someone is waiting for.
            return DEMAND_BASE + enqueued;
        }
        let class = i64::from(kind_weight(job.key.kind)) + i64::from(size_class(job.size));
        // Within a class, the most recent first: a larger timestamp gives a lower rank.
        class * CLASS_STEP + (CLASS_STEP - 1 - enqueued)
    }
}

impl Default for PriorityPolicy {
    /// A 60-second aging bound.
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
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

    #[test]
    fn size_classes() {
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(30_000), 0);
        assert_eq!(size_class(2_000_000), 5);
        assert_eq!(size_class(40_000_000), 10);
        assert_eq!(size_class(u64::MAX), 20);
    }
}
