//! The [`PriorityQueue`] contract, behaviour by behaviour.
//!
//! Each behaviour takes a fresh, empty queue ordered by the default [`PriorityPolicy`]
//! (60-second aging bound). Times are explicit, starting at [`T0`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::unique_key;
use crate::error::Error;
use crate::media::{BotId, Job, MediaKey, MediaKind, Sha256, Timestamp};
use crate::queue::{JobState, PriorityPolicy, PriorityQueue, PushOutcome, QueueDepth};

/// The time the suite starts at (2027-01-15).
pub const T0: Timestamp = Timestamp(1_800_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

fn at(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

fn job(kind: MediaKind, size: u64, enqueued_at: Timestamp) -> Job {
    Job::new(unique_key(kind), size, enqueued_at)
}

/// The bot of [`unique_key`]'s keys, which most behaviours claim for.
fn bots() -> Vec<BotId> {
    vec![unique_key(MediaKind::Photo).bot]
}

fn bot(name: &str) -> BotId {
    BotId::new(name).expect("a valid bot id")
}

/// A job of `bot`'s that no other test uses.
fn job_of(bot: &BotId, kind: MediaKind, size: u64, enqueued_at: Timestamp) -> Job {
    let sha = Sha256::of(&fastrand::u128(..).to_le_bytes());
    Job::new(MediaKey::new(bot.clone(), sha, kind), size, enqueued_at)
}

/// Runs every queue behaviour below, each on a new queue from `new_queue`.
pub async fn run_all<F, Fut>(new_queue: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PriorityQueue>>,
{
    push_then_claim(&*new_queue().await).await;
    push_merges_unfinished_jobs(&*new_queue().await).await;
    claim_takes_at_most_max(&*new_queue().await).await;
    order_follows_the_policy(&*new_queue().await).await;
    aged_jobs_go_first(&*new_queue().await).await;
    delayed_jobs_wait_for_run_at(&*new_queue().await).await;
    retry_counts_attempts_only_when_asked(&*new_queue().await).await;
    fail_keeps_the_error_and_requeue_revives(&*new_queue().await).await;
    push_revives_a_dead_job(&*new_queue().await).await;
    lapsed_leases_are_reclaimed_and_fenced(&*new_queue().await).await;
    extend_keeps_a_lease(&*new_queue().await).await;
    release_returns_a_job_untouched(&*new_queue().await).await;
    promote_puts_a_job_first(&*new_queue().await).await;
    depth_counts_every_state(&*new_queue().await).await;
    concurrent_claimers_never_share_a_job(new_queue().await).await;
    claims_name_their_bots(&*new_queue().await).await;
    each_bot_keeps_the_policy(&*new_queue().await).await;
    no_bot_starves_another(&*new_queue().await).await;
    clear_demand_drops_a_jobs_demand(&*new_queue().await).await;
    rejections_are_counted_until_cleared(&*new_queue().await).await;
    a_push_into_a_held_job_runs_it_again(&*new_queue().await).await;
    demand_beats_age(&*new_queue().await).await;
    aged_jobs_keep_a_share_under_demand(&*new_queue().await).await;
    the_same_owner_claiming_again_is_fenced(&*new_queue().await).await;
    a_job_pushed_again_after_complete_gets_a_larger_token(&*new_queue().await).await;
    summary_reports_each_bot(&*new_queue().await).await;
    hot_jobs_go_ahead_within_the_policy(&*new_queue().await).await;
}

/// A pushed job is claimed once, with a lease for the owner, then completed and gone.
pub async fn push_then_claim(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 1_000, T0);
    assert_eq!(
        q.push(j.clone(), T0).await.expect("push"),
        PushOutcome::Queued
    );
    let claim = q.claim("w1", &bots(), 10, LEASE, T0).await.expect("claim");
    assert_eq!(claim.jobs.len(), 1, "the one job is claimed");
    let c = &claim.jobs[0];
    assert_eq!(c.job, j, "the job comes back as pushed");
    assert_eq!(&*c.lease.owner, "w1");
    assert_eq!(c.lease.key, j.key);
    assert_eq!(c.lease.expires_at, T0.plus(LEASE));
    assert!(
        q.claim("w2", &bots(), 10, LEASE, T0)
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "a claimed job is not handed out again"
    );
    q.complete(&c.lease).await.expect("complete");
    assert_eq!(
        q.get(&j.key).await.expect("get"),
        None,
        "completed jobs leave"
    );
    assert!(
        q.claim("w1", &bots(), 10, LEASE, at(3600))
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "nothing left, even after the lease would have lapsed"
    );
}

/// Pushing a media whose job is queued or claimed merges into it, keeping demand.
pub async fn push_merges_unfinished_jobs(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Video, 5_000_000, T0);
    q.push(j.clone(), T0).await.expect("push");
    let mut again = j.clone();
    again.demand = true;
    assert_eq!(
        q.push(again, at(1)).await.expect("push"),
        PushOutcome::Merged
    );
    let info = q.get(&j.key).await.expect("get").expect("the job");
    assert!(info.job.demand, "demand is kept on merge");
    assert_eq!(info.job.enqueued_at, T0, "the first push's time is kept");
    let claim = q
        .claim("w", &bots(), 10, LEASE, at(2))
        .await
        .expect("claim");
    assert_eq!(claim.jobs.len(), 1, "one job for the media, not two");
    assert_eq!(
        q.push(j.clone(), at(3)).await.expect("push"),
        PushOutcome::Merged,
        "a claimed job absorbs pushes too"
    );
    assert!(
        q.claim("w", &bots(), 10, LEASE, at(3))
            .await
            .expect("claim")
            .jobs
            .is_empty()
    );
}

/// `claim` answers no more than `max` jobs, and the rest on the next call.
pub async fn claim_takes_at_most_max(q: &dyn PriorityQueue) {
    for _ in 0..5 {
        q.push(job(MediaKind::Photo, 10, T0), T0)
            .await
            .expect("push");
    }
    assert_eq!(
        q.claim("w", &bots(), 3, LEASE, T0)
            .await
            .expect("claim")
            .jobs
            .len(),
        3
    );
    assert_eq!(
        q.claim("w", &bots(), 3, LEASE, T0)
            .await
            .expect("claim")
            .jobs
            .len(),
        2
    );
    assert_eq!(
        q.claim("w", &bots(), 3, LEASE, T0)
            .await
            .expect("claim")
            .jobs
            .len(),
        0
    );
}

/// Within the aging bound, jobs come out by rank: demanded first, then by kind and size class
/// (a 100 KB video goes before a 5 MB photo), recent before old within a class.
pub async fn order_follows_the_policy(q: &dyn PriorityQueue) {
    let big_video = job(MediaKind::Video, 40_000_000, at(1));
    let small_video = job(MediaKind::Video, 100_000, at(2));
    let big_photo = job(MediaKind::Photo, 5_000_000, at(3));
    let old_photo = job(MediaKind::Photo, 30_000, at(4));
    let new_photo = job(MediaKind::Photo, 30_000, at(5));
    let mut demanded = job(MediaKind::Document, 20_000_000, at(6));
    demanded.demand = true;
    let pushed = [
        &big_video,
        &small_video,
        &big_photo,
        &old_photo,
        &new_photo,
        &demanded,
    ];
    for j in pushed {
        q.push(j.clone(), j.enqueued_at).await.expect("push");
    }
    let expected = [
        &demanded,
        &new_photo,
        &old_photo,
        &small_video,
        &big_photo,
        &big_video,
    ];
    let policy = PriorityPolicy::default();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let claim = q.claim("w", &bots(), 1, LEASE, at(7)).await.expect("claim");
        got.push(claim.jobs[0].job.key.clone());
    }
    let want: Vec<MediaKey> = expected.iter().map(|j| j.key.clone()).collect();
    assert_eq!(got, want, "claim order follows PriorityPolicy::rank");
    for pair in expected.windows(2) {
        assert!(
            policy.rank(pair[0]) < policy.rank(pair[1]),
            "ranks agree with the order"
        );
    }
}

/// A job older than the aging bound goes before every job that has not aged.
pub async fn aged_jobs_go_first(q: &dyn PriorityQueue) {
    let bound = PriorityPolicy::default().aging_bound().as_secs();
    let video = job(MediaKind::Video, 40_000_000, T0);
    q.push(video.clone(), T0).await.expect("push");
    // A flood of better jobs, arriving after the video and before it ages.
    for s in 1..bound {
        q.push(job(MediaKind::Photo, 1_000, at(s)), at(s))
            .await
            .expect("push");
    }
    let before = q
        .claim("w", &bots(), 1, LEASE, at(bound - 1))
        .await
        .expect("claim");
    assert_ne!(
        before.jobs[0].job.key, video.key,
        "photos first before the bound"
    );
    let after = q
        .claim("w", &bots(), 1, LEASE, at(bound))
        .await
        .expect("claim");
    assert_eq!(
        after.jobs[0].job.key, video.key,
        "once aged, the video goes before the remaining photos"
    );
}

/// A delayed job is not claimable before its run time, and `next_due` says when it is.
pub async fn delayed_jobs_wait_for_run_at(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let c = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    q.retry(&c.lease, at(10), true, "boom")
        .await
        .expect("retry");
    let info = q.get(&j.key).await.expect("get").expect("job");
    assert_eq!(info.state, JobState::Delayed { run_at: at(10) });
    let early = q.claim("w", &bots(), 1, LEASE, at(9)).await.expect("claim");
    assert!(early.jobs.is_empty(), "not before run_at");
    assert_eq!(early.next_due, Some(at(10)), "next_due names the run time");
    let due = q
        .claim("w", &bots(), 1, LEASE, at(10))
        .await
        .expect("claim");
    assert_eq!(due.jobs.len(), 1, "claimable at run_at");
    assert!(
        due.jobs[0].lease.token > c.lease.token,
        "a new claim has a larger token"
    );
}

/// `retry` counts a failed attempt when asked, and not for a rate-limit pause; it records the
/// error.
pub async fn retry_counts_attempts_only_when_asked(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let c = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    q.retry(&c.lease, T0, false, "rate limited")
        .await
        .expect("retry");
    let c = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(c.job.attempts, 0, "a rate-limit pause is not an attempt");
    q.retry(&c.lease, T0, true, "HTTP 502")
        .await
        .expect("retry");
    let info = q.get(&j.key).await.expect("get").expect("job");
    assert_eq!(info.job.attempts, 1, "a failed attempt is counted");
    assert_eq!(info.last_error.as_deref(), Some("HTTP 502"));
    let c = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(c.job.attempts, 1, "the claimed job carries its attempts");
    assert_eq!(c.job.enqueued_at, T0, "retries keep the first enqueue time");
}

/// `fail` moves a job to the dead state with its error; `requeue_dead` brings it back with
/// zero attempts.
pub async fn fail_keeps_the_error_and_requeue_revives(q: &dyn PriorityQueue) {
    let a = job(MediaKind::Photo, 10, T0);
    let b = job(MediaKind::Photo, 10, T0);
    q.push(a.clone(), T0).await.expect("push");
    q.push(b.clone(), T0).await.expect("push");
    for c in q
        .claim("w", &bots(), 2, LEASE, T0)
        .await
        .expect("claim")
        .jobs
    {
        q.fail(&c.lease, "HTTP 400 Bad Request: wrong type")
            .await
            .expect("fail");
    }
    let dead = q.dead(10).await.expect("dead");
    assert_eq!(dead.len(), 2, "both are dead");
    for info in &dead {
        assert_eq!(info.state, JobState::Dead);
        assert_eq!(
            info.last_error.as_deref(),
            Some("HTTP 400 Bad Request: wrong type")
        );
    }
    assert_eq!(q.dead(1).await.expect("dead").len(), 1, "limit is honoured");
    assert!(
        q.claim("w", &bots(), 10, LEASE, at(3600))
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "dead jobs are not claimable"
    );
    assert_eq!(
        q.requeue_dead(Some(&a.key), at(1)).await.expect("requeue"),
        1
    );
    let c = q
        .claim("w", &bots(), 10, LEASE, at(1))
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    assert_eq!(c.jobs[0].job.key, a.key);
    assert_eq!(c.jobs[0].job.attempts, 0, "attempts reset");
    assert_eq!(q.requeue_dead(None, at(2)).await.expect("requeue all"), 1);
    assert_eq!(q.dead(10).await.expect("dead").len(), 0);
}

/// Pushing a media whose job is dead revives it.
pub async fn push_revives_a_dead_job(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Sticker, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let c = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    q.fail(&c.lease, "bad").await.expect("fail");
    assert_eq!(
        q.push(j.clone(), at(5)).await.expect("push"),
        PushOutcome::Revived
    );
    let c = q.claim("w", &bots(), 1, LEASE, at(5)).await.expect("claim");
    assert_eq!(c.jobs.len(), 1, "revived and claimable");
    assert_eq!(c.jobs[0].job.attempts, 0);
}

/// A lapsed lease lets another worker claim the job with a larger token; the first worker's
/// lease is then refused, changing nothing.
pub async fn lapsed_leases_are_reclaimed_and_fenced(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let first = q
        .claim("w1", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    let early = q
        .claim("w2", &bots(), 1, LEASE, at(29))
        .await
        .expect("claim");
    assert!(early.jobs.is_empty(), "not before the lease lapses");
    assert_eq!(
        early.next_due,
        Some(T0.plus(LEASE)),
        "next_due names the lease expiry"
    );
    let second = q
        .claim("w2", &bots(), 1, LEASE, at(30))
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert!(
        second.lease.token > first.lease.token,
        "fencing token grows"
    );
    assert_eq!(&*second.lease.owner, "w2");
    for (what, result) in [
        ("complete", q.complete(&first.lease).await),
        ("retry", q.retry(&first.lease, at(31), true, "x").await),
        ("fail", q.fail(&first.lease, "x").await),
        ("release", q.release(&first.lease).await),
    ] {
        assert!(
            matches!(result, Err(Error::LeaseLost { .. })),
            "a stale {what} is refused: {result:?}"
        );
    }
    assert!(
        matches!(
            q.extend(&first.lease, LEASE, at(31)).await,
            Err(Error::LeaseLost { .. })
        ),
        "a stale extend is refused"
    );
    let info = q.get(&j.key).await.expect("get").expect("job");
    assert!(
        matches!(&info.state, JobState::Claimed { owner, .. } if &**owner == "w2"),
        "still held by the new owner: {:?}",
        info.state
    );
    q.complete(&second.lease)
        .await
        .expect("the holder completes");
}

/// Extending a lease keeps the job from being reclaimed past its first expiry.
pub async fn extend_keeps_a_lease(q: &dyn PriorityQueue) {
    q.push(job(MediaKind::Photo, 10, T0), T0)
        .await
        .expect("push");
    let c = q
        .claim("w1", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    let extended = q.extend(&c.lease, LEASE, at(20)).await.expect("extend");
    assert_eq!(extended.expires_at, at(50));
    assert!(
        q.claim("w2", &bots(), 1, LEASE, at(40))
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "an extended lease holds past its first expiry"
    );
    q.complete(&extended)
        .await
        .expect("complete with the extended lease");
}

/// `release` returns a claimed job to the queue without counting an attempt.
pub async fn release_returns_a_job_untouched(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let c = q
        .claim("w1", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    q.release(&c.lease).await.expect("release");
    let again = q
        .claim("w2", &bots(), 1, LEASE, at(1))
        .await
        .expect("claim");
    assert_eq!(again.jobs.len(), 1, "claimable again at once");
    assert_eq!(again.jobs[0].job.attempts, 0, "no attempt counted");
}

/// `promote` puts a job ahead of better-ranked ones and answers whether a job exists.
pub async fn promote_puts_a_job_first(q: &dyn PriorityQueue) {
    let video = job(MediaKind::Video, 40_000_000, T0);
    q.push(video.clone(), T0).await.expect("push");
    for s in 1..5 {
        q.push(job(MediaKind::Photo, 10, at(s)), at(s))
            .await
            .expect("push");
    }
    assert!(q.promote(&video.key, at(5)).await.expect("promote"));
    let c = q.claim("w", &bots(), 1, LEASE, at(5)).await.expect("claim");
    assert_eq!(c.jobs[0].job.key, video.key, "the demanded job goes first");
    assert!(c.jobs[0].job.demand);
    assert!(
        !q.promote(&unique_key(MediaKind::Photo), at(5))
            .await
            .expect("promote"),
        "no job, nothing promoted"
    );
}

/// `depth` counts queued, delayed, claimed and dead jobs.
pub async fn depth_counts_every_state(q: &dyn PriorityQueue) {
    for _ in 0..4 {
        q.push(job(MediaKind::Photo, 10, T0), T0)
            .await
            .expect("push");
    }
    let mut claimed = q
        .claim("w", &bots(), 3, LEASE, T0)
        .await
        .expect("claim")
        .jobs;
    let c1 = claimed.pop().expect("job");
    let c2 = claimed.pop().expect("job");
    q.retry(&c1.lease, at(100), true, "x").await.expect("retry");
    q.fail(&c2.lease, "x").await.expect("fail");
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.queued, 1, "{depth:?}");
    assert_eq!(depth.delayed, 1, "{depth:?}");
    assert_eq!(depth.claimed, 1, "{depth:?}");
    assert_eq!(depth.dead, 1, "{depth:?}");
    assert_eq!(depth.pending(), 3);
}

/// Many workers claiming at once never receive the same job, and together receive all.
pub async fn concurrent_claimers_never_share_a_job(q: Arc<dyn PriorityQueue>) {
    const JOBS: usize = 400;
    let mut keys = HashSet::new();
    for _ in 0..JOBS {
        let j = job(MediaKind::Photo, 10, T0);
        keys.insert(j.key.clone());
        q.push(j, T0).await.expect("push");
    }
    let workers = (0..8).map(|w| {
        let q = q.clone();
        tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut got = Vec::new();
            loop {
                let claim = q
                    .claim(&owner, &bots(), 7, LEASE, at(1))
                    .await
                    .expect("claim");
                if claim.jobs.is_empty() {
                    break;
                }
                for c in claim.jobs {
                    q.complete(&c.lease).await.expect("complete own job");
                    got.push(c.job.key);
                }
                tokio::task::yield_now().await;
            }
            got
        })
    });
    let mut seen = HashSet::new();
    for handle in futures::future::join_all(workers).await {
        for key in handle.expect("worker") {
            assert!(seen.insert(key), "a job was handed to two claimers");
        }
    }
    assert_eq!(seen, keys, "every job was claimed exactly once");
}

/// A claim answers only jobs of the bots it names; an empty list claims nothing.
pub async fn claims_name_their_bots(q: &dyn PriorityQueue) {
    let (a, b) = (bot("bot-a"), bot("bot-b"));
    let mut of_a = HashSet::new();
    for s in 0..3 {
        let j = job_of(&a, MediaKind::Photo, 10, at(s));
        of_a.insert(j.key.clone());
        q.push(j, at(s)).await.expect("push");
    }
    let jb = job_of(&b, MediaKind::Photo, 10, at(9));
    q.push(jb.clone(), at(9)).await.expect("push");
    assert!(
        q.claim("w", &[], 10, LEASE, at(10))
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "no bots, no jobs"
    );
    assert!(
        q.claim("w", &[bot("bot-c")], 10, LEASE, at(10))
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "a bot without jobs gets none of the others'"
    );
    let got: HashSet<MediaKey> = q
        .claim("w", std::slice::from_ref(&a), 10, LEASE, at(10))
        .await
        .expect("claim")
        .jobs
        .into_iter()
        .map(|c| c.job.key)
        .collect();
    assert_eq!(
        got, of_a,
        "a claim for bot A answers A's jobs and only them"
    );
    let c = q
        .claim("w", std::slice::from_ref(&a), 10, LEASE, at(3600))
        .await
        .expect("claim");
    assert!(
        c.jobs.iter().all(|c| c.job.key.bot == a),
        "even B's oldest job is not A's: {:?}",
        c.jobs
    );
    let c = q
        .claim("w", std::slice::from_ref(&b), 10, LEASE, at(10))
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    assert_eq!(c.jobs[0].job.key, jb.key, "B's job waited for B");
}

/// With two bots' backlogs in one queue, each bot's jobs come out in the policy's order,
/// its aging bound included, whatever the other bot holds.
pub async fn each_bot_keeps_the_policy(q: &dyn PriorityQueue) {
    let bound = PriorityPolicy::default().aging_bound().as_secs();
    let (a, b) = (bot("bot-a"), bot("bot-b"));
    let mut want = Vec::new();
    for who in [&a, &b] {
        // Per bot: an old video that ages, then better photos, newest best.
        let video = job_of(who, MediaKind::Video, 40_000_000, T0);
        let photos: Vec<Job> = (1..4)
            .map(|s| job_of(who, MediaKind::Photo, 1_000, at(s)))
            .collect();
        q.push(video.clone(), T0).await.expect("push");
        for p in &photos {
            q.push(p.clone(), p.enqueued_at).await.expect("push");
        }
        let mut order = vec![video.key.clone()];
        order.extend(photos.iter().rev().map(|p| p.key.clone()));
        want.push(order);
    }
    let bots = [a.clone(), b.clone()];
    let mut got = [Vec::new(), Vec::new()];
    loop {
        let c = q
            .claim("w", &bots, 1, LEASE, at(bound))
            .await
            .expect("claim");
        let Some(c) = c.jobs.into_iter().next() else {
            break;
        };
        got[usize::from(c.job.key.bot == b)].push(c.job.key);
    }
    assert_eq!(
        got[0], want[0],
        "bot A: its aged video, then photos by rank"
    );
    assert_eq!(got[1], want[1], "bot B: the same, unaffected by A");
}

/// A claim for several bots takes from each in turn: a bot with a long backlog of better
/// jobs does not hold back another bot's worse ones.
pub async fn no_bot_starves_another(q: &dyn PriorityQueue) {
    let (a, b) = (bot("bot-a"), bot("bot-b"));
    for s in 0..20 {
        q.push(job_of(&a, MediaKind::Photo, 1_000, at(s)), at(s))
            .await
            .expect("push");
    }
    for s in 0..3 {
        q.push(job_of(&b, MediaKind::Video, 40_000_000, at(s)), at(s))
            .await
            .expect("push");
    }
    let bots = [a.clone(), b.clone()];
    let c = q.claim("w", &bots, 2, LEASE, at(20)).await.expect("claim");
    let of_b = c.jobs.iter().filter(|c| c.job.key.bot == b).count();
    assert_eq!(
        (c.jobs.len(), of_b),
        (2, 1),
        "one slot each for two bots, though all of A's jobs rank better"
    );
    let mut b_done = 1;
    for i in 0..4 {
        let c = q.claim("w", &bots, 1, LEASE, at(20)).await.expect("claim");
        b_done += c.jobs.iter().filter(|c| c.job.key.bot == b).count();
        assert!(
            b_done >= (i + 2) / 2,
            "B gets every other slot: {b_done} of its jobs after {} claims",
            i + 2
        );
    }
    assert_eq!(b_done, 3, "B's three jobs are all out within six slots");
}

/// `clear_demand` takes a job out of the demanded list (it goes back by rank) and answers
/// whether the media had an unfinished job.
pub async fn clear_demand_drops_a_jobs_demand(q: &dyn PriorityQueue) {
    let mut video = job(MediaKind::Video, 40_000_000, T0);
    video.demand = true;
    let photo = job(MediaKind::Photo, 10, at(1));
    q.push(video.clone(), T0).await.expect("push");
    q.push(photo.clone(), at(1)).await.expect("push");
    assert!(q.clear_demand(&video.key).await.expect("clear_demand"));
    let info = q.get(&video.key).await.expect("get").expect("job");
    assert!(!info.job.demand, "the job lost its demand");
    let c = q.claim("w", &bots(), 1, LEASE, at(2)).await.expect("claim");
    assert_eq!(
        c.jobs[0].job.key, photo.key,
        "without demand, the video ranks behind the photo"
    );
    assert!(
        !q.clear_demand(&unique_key(MediaKind::Photo))
            .await
            .expect("clear_demand"),
        "no job: false"
    );
    // Demand cleared from a claimed job stays cleared when it is handed back.
    assert!(q.promote(&photo.key, at(3)).await.expect("promote"));
    assert!(q.clear_demand(&photo.key).await.expect("clear_demand"));
    q.release(&c.jobs[0].lease).await.expect("release");
    let info = q.get(&photo.key).await.expect("get").expect("job");
    assert!(!info.job.demand);
}

/// `record_rejection` counts per media, with or without a job, until `clear_rejections`.
pub async fn rejections_are_counted_until_cleared(q: &dyn PriorityQueue) {
    let (a, b) = (unique_key(MediaKind::Photo), unique_key(MediaKind::Photo));
    assert_eq!(q.record_rejection(&a).await.expect("record"), 1);
    assert_eq!(q.record_rejection(&a).await.expect("record"), 2);
    assert_eq!(
        q.record_rejection(&b).await.expect("record"),
        1,
        "per media"
    );
    // A job coming and going does not reset the count.
    q.push(Job::new(a.clone(), 10, T0), T0).await.expect("push");
    let c = q.claim("w", &bots(), 1, LEASE, T0).await.expect("claim");
    q.complete(&c.jobs[0].lease).await.expect("complete");
    assert_eq!(q.record_rejection(&a).await.expect("record"), 3);
    q.clear_rejections(&a).await.expect("clear");
    assert_eq!(
        q.record_rejection(&a).await.expect("record"),
        1,
        "counting starts again after a clear"
    );
    assert_eq!(
        q.record_rejection(&b).await.expect("record"),
        2,
        "others untouched"
    );
    q.clear_rejections(&unique_key(MediaKind::Video))
        .await
        .expect("clearing nothing is fine");
}

/// A push merged into a claimed job makes it run again once its holder completes it (the
/// push may ask for a re-warm of what the holder is uploading), with a larger token.
pub async fn a_push_into_a_held_job_runs_it_again(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    q.push(j.clone(), T0).await.expect("push");
    let first = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(
        q.push(j.clone(), at(1)).await.expect("push"),
        PushOutcome::Merged
    );
    q.complete(&first.lease).await.expect("complete");
    let info = q
        .get(&j.key)
        .await
        .expect("get")
        .expect("the job is still there: the push asked for another run");
    assert_eq!(info.state, JobState::Queued);
    let second = q
        .claim("w", &bots(), 1, LEASE, at(2))
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(second.job.key, j.key);
    assert_eq!(second.job.attempts, 0);
    assert!(second.lease.token > first.lease.token);
    q.complete(&second.lease).await.expect("complete");
    assert_eq!(
        q.get(&j.key).await.expect("get"),
        None,
        "no push during the second run: done"
    );
}

/// Pushes ten photos and answers a time by which all of them have aged.
async fn push_aged_backlog(q: &dyn PriorityQueue) -> Timestamp {
    for s in 0..10 {
        q.push(job(MediaKind::Photo, 10, at(s)), at(s))
            .await
            .expect("push");
    }
    at(PriorityPolicy::default().aging_bound().as_secs() + 20)
}

/// A demanded job goes before a backlog older than the aging bound: a waiting send is not
/// stuck behind it.
pub async fn demand_beats_age(q: &dyn PriorityQueue) {
    let late = push_aged_backlog(q).await;
    let mut wanted = job(MediaKind::Video, 40_000_000, late);
    wanted.demand = true;
    q.push(wanted.clone(), late).await.expect("push");
    // At most one slot in `aged_share` goes to aged jobs first: with a share of 2 or more,
    // the demanded job is out within two slots.
    let mut got = Vec::new();
    for _ in 0..2 {
        let c = q.claim("w", &bots(), 1, LEASE, late).await.expect("claim");
        got.push(c.jobs[0].job.key.clone());
    }
    assert!(
        got.contains(&wanted.key),
        "the demanded video beats ten aged photos"
    );
}

/// While demand keeps coming, aged jobs still get one claim slot in
/// [`PriorityPolicy::aged_share`]: nothing starves.
pub async fn aged_jobs_keep_a_share_under_demand(q: &dyn PriorityQueue) {
    let share = u64::from(PriorityPolicy::default().aged_share());
    let late = push_aged_backlog(q).await;
    let slots = 4 * share;
    for _ in 0..slots {
        let mut j = job(MediaKind::Photo, 10, late);
        j.demand = true;
        q.push(j, late).await.expect("push");
    }
    let (mut aged, mut demanded) = (0u64, 0u64);
    for _ in 0..slots {
        let c = q.claim("w", &bots(), 1, LEASE, late).await.expect("claim");
        if c.jobs[0].job.demand {
            demanded += 1;
        } else {
            aged += 1;
        }
    }
    assert_eq!(
        aged,
        slots / share,
        "one slot in {share} went to aged jobs ({demanded} to demand)"
    );
}

/// An owner whose lease lapsed and who claims the job again gets a new, larger token: its
/// old lease (same owner, old token) is refused.
pub async fn the_same_owner_claiming_again_is_fenced(q: &dyn PriorityQueue) {
    q.push(job(MediaKind::Photo, 10, T0), T0)
        .await
        .expect("push");
    let first = q
        .claim("w", &bots(), 1, LEASE, T0)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    let again = q
        .claim("w", &bots(), 1, LEASE, T0.plus(LEASE))
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert!(again.lease.token > first.lease.token, "a new token");
    assert!(
        matches!(q.complete(&first.lease).await, Err(Error::LeaseLost { .. })),
        "the same owner's old lease is refused"
    );
    q.complete(&again.lease).await.expect("the new lease holds");
}

/// A media whose job completed and is pushed again gets a larger token than before: tokens
/// come from a queue-wide sequence, not from the job's row.
pub async fn a_job_pushed_again_after_complete_gets_a_larger_token(q: &dyn PriorityQueue) {
    let j = job(MediaKind::Photo, 10, T0);
    let mut last = 0;
    for round in 0..3 {
        q.push(j.clone(), at(round)).await.expect("push");
        let c = q
            .claim("w", &bots(), 1, LEASE, at(round))
            .await
            .expect("claim")
            .jobs
            .remove(0);
        assert!(
            c.lease.token > last,
            "round {round}: token {} after {last}",
            c.lease.token
        );
        last = c.lease.token;
        q.complete(&c.lease).await.expect("complete");
    }
}

/// `summary` reports per bot, in bot order: jobs by state, when its oldest unfinished job was
/// queued, and its claims in the minute up to `now` (finished jobs' claims included).
pub async fn summary_reports_each_bot(q: &dyn PriorityQueue) {
    assert!(
        q.summary(T0).await.expect("summary").is_empty(),
        "an empty queue reports no bot"
    );
    let (a, b) = (bot("summary-a"), bot("summary-b"));
    for t in [0, 1, 2] {
        q.push(job_of(&a, MediaKind::Photo, 10, at(t)), at(t))
            .await
            .expect("push");
    }
    let mut claimed = q
        .claim("w", std::slice::from_ref(&a), 3, LEASE, at(10))
        .await
        .expect("claim")
        .jobs;
    assert_eq!(claimed.len(), 3);
    // The oldest dies, so that counting dead jobs as unfinished would show.
    claimed.sort_by_key(|c| std::cmp::Reverse(c.job.enqueued_at));
    let (dead, held, delayed) = (
        claimed.pop().expect("job"),
        claimed.pop().expect("job"),
        claimed.pop().expect("job"),
    );
    q.retry(&delayed.lease, at(100), true, "x")
        .await
        .expect("retry");
    q.fail(&dead.lease, "x").await.expect("fail");
    q.push(job_of(&a, MediaKind::Photo, 10, at(20)), at(20))
        .await
        .expect("push");
    q.push(job_of(&b, MediaKind::Photo, 10, at(11)), at(11))
        .await
        .expect("push");

    let s = q.summary(at(30)).await.expect("summary");
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!((&s[0].bot, &s[1].bot), (&a, &b), "bots in order: {s:?}");
    let want = QueueDepth {
        queued: 1,
        delayed: 1,
        claimed: 1,
        dead: 1,
    };
    assert_eq!(s[0].depth, want, "{s:?}");
    let oldest = held.job.enqueued_at.min(delayed.job.enqueued_at);
    assert_eq!(
        s[0].oldest_enqueued_at,
        Some(oldest),
        "the oldest unfinished job, not the dead one: {s:?}"
    );
    assert_eq!(s[0].claims_last_minute, 3, "{s:?}");
    assert_eq!(
        s[0].oldest_age(),
        Some(at(30).since(oldest)),
        "the age as of the summary's time: {s:?}"
    );
    assert_eq!(s[1].depth.queued, 1, "{s:?}");
    assert_eq!(s[1].depth.pending(), 1, "{s:?}");
    assert_eq!(s[1].oldest_enqueued_at, Some(at(11)), "{s:?}");
    assert_eq!(s[1].claims_last_minute, 0, "{s:?}");

    q.complete(&held.lease).await.expect("complete");
    let s = q.summary(at(70)).await.expect("summary");
    assert_eq!(s[0].depth.claimed, 0, "{s:?}");
    assert_eq!(
        s[0].claims_last_minute, 3,
        "a claim counts for a full minute, finished or not: {s:?}"
    );
    let s = q.summary(at(71)).await.expect("summary");
    assert_eq!(
        s[0].claims_last_minute, 0,
        "claims older than a minute: {s:?}"
    );
}

/// A hot job ([`Job::hot`]) goes ahead of its list within [`PriorityPolicy`]'s limits: ahead
/// of every fresh job, behind demanded and aged ones; among demanded jobs, ahead of those that
/// came less than one aging bound before it only. The mark comes back with the job, and a
/// requeue of a dead job clears it.
pub async fn hot_jobs_go_ahead_within_the_policy(q: &dyn PriorityQueue) {
    let bound = PriorityPolicy::default().aging_bound().as_secs();
    // Claims `n` jobs one at a time and completes them (no lease left to lapse later).
    let claim_all = |now: Timestamp, n: usize| async move {
        let mut got = Vec::new();
        for _ in 0..n {
            let c = q.claim("w", &bots(), 1, LEASE, now).await.expect("claim");
            for claimed in &c.jobs {
                q.complete(&claimed.lease).await.expect("complete");
            }
            got.extend(c.jobs);
        }
        got
    };

    // Fresh: the hot video before a smaller photo saved later; demand before both.
    let mut hot_video = job(MediaKind::Video, 40_000_000, at(1));
    hot_video.hot = true;
    let photo = job(MediaKind::Photo, 30_000, at(2));
    let mut demanded = job(MediaKind::Document, 20_000_000, at(3));
    demanded.demand = true;
    for j in [&hot_video, &photo, &demanded] {
        q.push(j.clone(), j.enqueued_at).await.expect("push");
    }
    let got = claim_all(at(4), 3).await;
    assert_eq!(
        got.iter().map(|c| c.job.key.clone()).collect::<Vec<_>>(),
        [&demanded, &hot_video, &photo].map(|j| j.key.clone()),
        "demanded, then hot, then the photo"
    );
    assert_eq!(
        got[1].job, hot_video,
        "the hot mark comes back with the job"
    );

    // Demanded: the hot job passes a job that came less than one bound before it, not one
    // that came earlier.
    let t = 10;
    let mut early = job(MediaKind::Photo, 1_000, at(t));
    early.demand = true;
    let mut recent = job(MediaKind::Photo, 1_000, at(t + 2));
    recent.demand = true;
    let mut hot_demanded = job(MediaKind::Video, 25_000_000, at(t + bound + 1));
    hot_demanded.demand = true;
    hot_demanded.hot = true;
    for j in [&early, &recent, &hot_demanded] {
        q.push(j.clone(), j.enqueued_at).await.expect("push");
    }
    let got: Vec<MediaKey> = claim_all(at(t + bound + 2), 3)
        .await
        .into_iter()
        .map(|c| c.job.key)
        .collect();
    assert_eq!(
        got,
        [&early, &hot_demanded, &recent].map(|j| j.key.clone()),
        "the hot job passes the demanded job of {}s before it, not the one of {}s before",
        bound - 1,
        bound + 1
    );

    // Aged: an aged job nobody waits for goes before a hot fresh one.
    let t = 1_000;
    let old = job(MediaKind::Video, 40_000_000, at(t));
    let mut hot_photo = job(MediaKind::Photo, 1_000, at(t + bound));
    hot_photo.hot = true;
    for j in [&old, &hot_photo] {
        q.push(j.clone(), j.enqueued_at).await.expect("push");
    }
    let got: Vec<MediaKey> = claim_all(at(t + bound), 2)
        .await
        .into_iter()
        .map(|c| c.job.key)
        .collect();
    assert_eq!(got, [old.key.clone(), hot_photo.key.clone()], "aged first");

    // A dead hot job requeued is hot no more: a photo queued at the same time goes first.
    let t = 2_000;
    let mut dead = job(MediaKind::Video, 40_000_000, at(t));
    dead.hot = true;
    q.push(dead.clone(), at(t)).await.expect("push");
    let c = q.claim("w", &bots(), 1, LEASE, at(t)).await.expect("claim");
    q.fail(&c.jobs[0].lease, "bad").await.expect("fail");
    assert_eq!(
        q.requeue_dead(Some(&dead.key), at(t + 1))
            .await
            .expect("requeue"),
        1
    );
    let info = q.get(&dead.key).await.expect("get").expect("a job");
    assert!(!info.job.hot, "a requeued job is not hot");
    let later_photo = job(MediaKind::Photo, 1_000, at(t + 1));
    q.push(later_photo.clone(), at(t + 1)).await.expect("push");
    let got: Vec<MediaKey> = claim_all(at(t + 1), 2)
        .await
        .into_iter()
        .map(|c| c.job.key)
        .collect();
    assert_eq!(
        got,
        [later_photo.key.clone(), dead.key.clone()],
        "ranked as any video again"
    );
}
