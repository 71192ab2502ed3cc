use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    BotSummary, Branch, Claim, Claimed, JobInfo, JobState, Lease, PriorityPolicy, PriorityQueue,
    PushOutcome, QueueDepth, SUMMARY_WINDOW, pick,
};
use crate::error::{Error, Result};
use crate::media::{BotId, Job, MediaKey, Timestamp};

/// An in-memory [`PriorityQueue`]: binary heaps, O(log n) push and claim.
///
/// Jobs live in a slab, found by media through a hash map; heaps index them: for each bot,
/// its claimable jobs in three heaps (demanded ones by rank, the others by rank and by age,
/// for the aging rule); for the whole queue, delayed jobs by run time and claimed jobs by
/// lease expiry. A claim looks only at the heaps of the bots it names. Heap entries
/// are not removed when a job moves on: each entry carries a sequence number and is skipped
/// when it no longer matches its job, and a heap is rebuilt when stale entries outnumber live
/// ones, so memory stays proportional to the jobs held.
///
/// Its jobs are lost with the process; use a durable backend where that matters.
///
/// # Clone
/// Clones share one queue, so several engines in one process can share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    // A std mutex: every operation is a few heap and map updates with no `.await` inside, so
    // the lock is held for microseconds and an async lock would only add cost.
    inner: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    policy: PriorityPolicy,
    /// Where each media's job lives in `slots`.
    index: HashMap<MediaKey, u32>,
    /// The jobs, by slot number; freed slots are reused. Heap entries name a slot by number
    /// rather than by key, which keeps them 24 bytes and spares a hash lookup per pop.
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Each bot's claimable jobs.
    bots: HashMap<BotId, BotHeaps>,
    delayed: BinaryHeap<Reverse<(Timestamp, u64, u32)>>,
    leases: BinaryHeap<Reverse<(Timestamp, u64, u32)>>,
    dead: BTreeMap<u64, u32>,
    depth: QueueDepth,
    next_seq: u64,
    /// The claim-slot counter of [`pick`]: bot rotation and the aged share.
    turn: u64,
    /// Telegram's refusals of each media's file_id, until cleared.
    rejections: HashMap<MediaKey, u32>,
    /// Recent claims (time, bot), oldest first, for [`PriorityQueue::summary`]; trimmed to
    /// [`SUMMARY_WINDOW`] at each claim, so it holds at most a minute's claims.
    claims: VecDeque<(Timestamp, BotId)>,
}

/// One bot's claimable jobs, by the lists of [`PriorityPolicy`].
#[derive(Debug, Default)]
struct BotHeaps {
    /// Demanded jobs, by rank (first come, first served).
    demanded: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// The others by rank.
    by_rank: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// The others by age.
    by_age: BinaryHeap<Reverse<(Timestamp, u64, u32)>>,
}

#[derive(Debug)]
struct Slot {
    job: Job,
    state: JobState,
    /// The sequence number of the job's current heap entries (or dead-list position). Unique
    /// over the queue's life, so an entry naming a reused slot is recognised as stale.
    seq: u64,
    /// The fencing token of the current lease (0 before the first claim).
    token: u64,
    /// A push merged into the job while claimed: `complete` queues it again.
    rerun: bool,
    last_error: Option<String>,
}

impl Slot {
    fn info(&self) -> JobInfo {
        JobInfo {
            job: self.job.clone(),
            state: self.state.clone(),
            last_error: self.last_error.clone(),
        }
    }
}

impl MemoryQueue {
    /// An empty queue with the default [`PriorityPolicy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue ordered by `policy`.
    pub fn with_policy(policy: PriorityPolicy) -> Self {
        let queue = Self::default();
        queue.lock().policy = policy;
        queue
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No operation below can leave the state half-updated by panicking midway (none
        // panics on its own data); keep serving rather than poison every caller.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn count<'a>(depth: &'a mut QueueDepth, state: &JobState) -> &'a mut u64 {
    match state {
        JobState::Queued => &mut depth.queued,
        JobState::Delayed { .. } => &mut depth.delayed,
        JobState::Claimed { .. } => &mut depth.claimed,
        JobState::Dead => &mut depth.dead,
    }
}

fn queued(s: &JobState) -> bool {
    matches!(s, JobState::Queued)
}

fn delayed(s: &JobState) -> bool {
    matches!(s, JobState::Delayed { .. })
}

fn claimed(s: &JobState) -> bool {
    matches!(s, JobState::Claimed { .. })
}

impl State {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn slot(&self, idx: u32) -> Option<&Slot> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn find(&self, key: &MediaKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Moves the job in slot `idx` to `state` and indexes it there.
    fn set_state(&mut self, idx: u32, state: JobState) {
        let seq = self.seq();
        let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) else {
            return;
        };
        *count(&mut self.depth, &slot.state) -= 1;
        *count(&mut self.depth, &state) += 1;
        if matches!(slot.state, JobState::Dead) {
            self.dead.remove(&slot.seq);
        }
        slot.seq = seq;
        slot.state = state;
        self.index_entries(idx);
    }

    /// Adds the heap entry (or dead-list entry) for the job's current state and sequence.
    fn index_entries(&mut self, idx: u32) {
        let Some(slot) = self.slot(idx) else {
            return;
        };
        let seq = slot.seq;
        match &slot.state {
            JobState::Queued => {
                let (rank, enqueued) = (self.policy.rank(&slot.job), slot.job.enqueued_at);
                let demand = slot.job.demand;
                let heaps = self.bots.entry(slot.job.key.bot.clone()).or_default();
                if demand {
                    heaps.demanded.push(Reverse((rank, seq, idx)));
                } else {
                    heaps.by_rank.push(Reverse((rank, seq, idx)));
                    heaps.by_age.push(Reverse((enqueued, seq, idx)));
                }
            }
            JobState::Delayed { run_at } => self.delayed.push(Reverse((*run_at, seq, idx))),
            JobState::Claimed { expires_at, .. } => {
                self.leases.push(Reverse((*expires_at, seq, idx)));
            }
            JobState::Dead => {
                self.dead.insert(seq, idx);
            }
        }
    }

    fn insert(&mut self, job: Job) {
        let seq = self.seq();
        let key = job.key.clone();
        let slot = Slot {
            job,
            state: JobState::Queued,
            seq,
            token: 0,
            rerun: false,
            last_error: None,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(slot);
                idx
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, idx);
        self.depth.queued += 1;
        self.index_entries(idx);
    }

    fn remove(&mut self, idx: u32) {
        if let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::take) {
            *count(&mut self.depth, &slot.state) -= 1;
            if matches!(slot.state, JobState::Dead) {
                self.dead.remove(&slot.seq);
            }
            self.index.remove(&slot.job.key);
            self.free.push(idx);
        }
    }

    fn is_current(&self, seq: u64, idx: u32, want: fn(&JobState) -> bool) -> bool {
        self.slot(idx)
            .is_some_and(|s| s.seq == seq && want(&s.state))
    }

    /// Moves due delayed jobs and lapsed leases back to the queue.
    fn wake_due(&mut self, now: Timestamp) {
        while let Some(&Reverse((at, seq, idx))) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if self.is_current(seq, idx, delayed) {
                self.set_state(idx, JobState::Queued);
            }
        }
        while let Some(&Reverse((at, seq, idx))) = self.leases.peek() {
            if at > now {
                break;
            }
            self.leases.pop();
            if self.is_current(seq, idx, claimed) {
                if let Some(slot) = self.slot(idx) {
                    tracing::debug!(media = %slot.job.key, "lease lapsed; job returns to the queue");
                }
                self.set_state(idx, JobState::Queued);
            }
        }
    }

    /// The best job of `bot` in `branch`, if any, removed from its heap.
    fn take(&mut self, bot: &BotId, branch: Branch, now: Timestamp) -> Option<u32> {
        let bound = self.policy.aging_bound();
        let Self { bots, slots, .. } = self;
        let heaps = bots.get_mut(bot)?;
        let current = |seq: u64, idx: u32| {
            slots
                .get(idx as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.seq == seq && queued(&s.state))
        };
        match branch {
            Branch::Demanded => {
                while let Some(Reverse((_, seq, idx))) = heaps.demanded.pop() {
                    if current(seq, idx) {
                        return Some(idx);
                    }
                }
                None
            }
            Branch::Aged => {
                while let Some(&Reverse((enqueued, seq, idx))) = heaps.by_age.peek() {
                    if !current(seq, idx) {
                        heaps.by_age.pop();
                        continue;
                    }
                    if now.since(enqueued) >= bound {
                        heaps.by_age.pop();
                        return Some(idx);
                    }
                    break;
                }
                None
            }
            // Taken only once the aged list is empty, so every live entry here is fresh.
            Branch::Fresh => {
                while let Some(Reverse((_, seq, idx))) = heaps.by_rank.pop() {
                    if current(seq, idx) {
                        return Some(idx);
                    }
                }
                None
            }
        }
    }

    /// The earliest time a delayed job or a lease comes due, dropping stale heap tops.
    fn next_due(&mut self) -> Option<Timestamp> {
        while let Some(&Reverse((_, seq, idx))) = self.delayed.peek() {
            if self.is_current(seq, idx, delayed) {
                break;
            }
            self.delayed.pop();
        }
        while let Some(&Reverse((_, seq, idx))) = self.leases.peek() {
            if self.is_current(seq, idx, claimed) {
                break;
            }
            self.leases.pop();
        }
        let delayed = self.delayed.peek().map(|Reverse((at, ..))| *at);
        let lease = self.leases.peek().map(|Reverse((at, ..))| *at);
        delayed.into_iter().chain(lease).min()
    }

    /// Rebuilds a heap whose stale entries outnumber its live ones.
    fn compact(&mut self) {
        let limit = 2 * self.index.len() + 1024;
        let slots = &self.slots;
        let live = |seq: u64, idx: u32| {
            slots
                .get(idx as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.seq == seq)
        };
        for heaps in self.bots.values_mut() {
            if heaps.demanded.len() > limit {
                heaps
                    .demanded
                    .retain(|Reverse((_, seq, idx))| live(*seq, *idx));
            }
            if heaps.by_rank.len() > limit {
                heaps
                    .by_rank
                    .retain(|Reverse((_, seq, idx))| live(*seq, *idx));
            }
            if heaps.by_age.len() > limit {
                heaps
                    .by_age
                    .retain(|Reverse((_, seq, idx))| live(*seq, *idx));
            }
        }
        // A bot whose jobs all left keeps no heaps.
        self.bots
            .retain(|_, h| !(h.demanded.is_empty() && h.by_rank.is_empty() && h.by_age.is_empty()));
        if self.delayed.len() > limit {
            self.delayed
                .retain(|Reverse((_, seq, idx))| live(*seq, *idx));
        }
        if self.leases.len() > limit {
            self.leases
                .retain(|Reverse((_, seq, idx))| live(*seq, *idx));
        }
    }

    /// Sets the demand of the media's unfinished job; answers whether there is one.
    fn set_demand(&mut self, key: &MediaKey, demand: bool) -> bool {
        let Some(idx) = self.find(key) else {
            return false;
        };
        let Some(slot) = self.slot_mut(idx) else {
            return false;
        };
        if matches!(slot.state, JobState::Dead) {
            return false;
        }
        let reindex = slot.job.demand != demand && queued(&slot.state);
        slot.job.demand = demand;
        if reindex {
            // Into the bot's other list.
            self.set_state(idx, JobState::Queued);
        }
        true
    }

    /// The slot number of the job the lease still holds.
    fn held(&self, lease: &Lease) -> Result<u32> {
        self.find(&lease.key)
            .filter(|&idx| {
                self.slot(idx).is_some_and(|slot| {
                    slot.token == lease.token
                        && matches!(&slot.state, JobState::Claimed { owner, .. } if *owner == lease.owner)
                })
            })
            .ok_or_else(|| Error::LeaseLost {
                key: lease.key.clone(),
            })
    }
}

#[async_trait]
impl PriorityQueue for MemoryQueue {
    async fn push(&self, job: Job, now: Timestamp) -> Result<PushOutcome> {
        let outcome = {
            let mut st = self.lock();
            match st.find(&job.key) {
                None => {
                    st.insert(job);
                    PushOutcome::Queued
                }
                Some(idx) => {
                    let Some(slot) = st.slot_mut(idx) else {
                        return Err(Error::NotFound {
                            what: format!("the queue slot of {}", job.key),
                        });
                    };
                    if matches!(slot.state, JobState::Dead) {
                        slot.job = Job {
                            attempts: 0,
                            enqueued_at: now,
                            ..job
                        };
                        st.set_state(idx, JobState::Queued);
                        PushOutcome::Revived
                    } else {
                        let promote = job.demand && !slot.job.demand;
                        slot.job.demand |= job.demand;
                        slot.rerun |= claimed(&slot.state);
                        if promote && queued(&slot.state) {
                            // Re-indexed under the demanded rank.
                            st.set_state(idx, JobState::Queued);
                        }
                        PushOutcome::Merged
                    }
                }
            }
        };
        if outcome != PushOutcome::Merged {
            self.notify.notify_waiters();
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
        let mut st = self.lock();
        st.wake_due(now);
        let owner: Arc<str> = owner.into();
        let expires_at = now.plus(lease);
        let policy = st.policy;
        let mut turn = st.turn;
        let picked = pick(&policy, bots.len(), max, &mut turn, |b, branch| {
            let idx = st.take(&bots[b], branch, now)?;
            // Claimed at once: its entries in the bot's other heaps turn stale.
            st.set_state(
                idx,
                JobState::Claimed {
                    owner: owner.clone(),
                    expires_at,
                },
            );
            Some(idx)
        });
        st.turn = turn;
        let mut jobs = Vec::with_capacity(picked.len());
        for idx in picked {
            // Tokens come from the queue-wide sequence: larger for every claim, even of a
            // media whose earlier job finished and was pushed anew.
            let token = st.seq();
            let Some(slot) = st.slot_mut(idx) else {
                continue;
            };
            slot.token = token;
            jobs.push(Claimed {
                job: slot.job.clone(),
                lease: Lease {
                    key: slot.job.key.clone(),
                    token,
                    owner: owner.clone(),
                    expires_at,
                },
            });
        }
        st.log_claims(&jobs, now);
        let next_due = st.next_due();
        st.compact();
        Ok(Claim { jobs, next_due })
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        let mut st = self.lock();
        let idx = st.held(lease)?;
        let expires_at = now.plus(lease_for);
        st.set_state(
            idx,
            JobState::Claimed {
                owner: lease.owner.clone(),
                expires_at,
            },
        );
        Ok(Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn complete(&self, lease: &Lease) -> Result<()> {
        let rerun = {
            let mut st = self.lock();
            let idx = st.held(lease)?;
            match st.slot_mut(idx) {
                Some(slot) if slot.rerun => {
                    slot.rerun = false;
                    slot.job.attempts = 0;
                    st.set_state(idx, JobState::Queued);
                    true
                }
                _ => {
                    st.remove(idx);
                    false
                }
            }
        };
        if rerun {
            self.notify.notify_waiters();
        }
        Ok(())
    }

    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> Result<()> {
        {
            let mut st = self.lock();
            let idx = st.held(lease)?;
            if let Some(slot) = st.slot_mut(idx) {
                slot.job.attempts += u32::from(count_attempt);
                slot.last_error = Some(error.to_owned());
                slot.rerun = false;
            }
            st.set_state(idx, JobState::Delayed { run_at });
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<()> {
        let mut st = self.lock();
        let idx = st.held(lease)?;
        if let Some(slot) = st.slot_mut(idx) {
            slot.job.attempts += 1;
            slot.last_error = Some(error.to_owned());
            slot.rerun = false;
        }
        st.set_state(idx, JobState::Dead);
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        {
            let mut st = self.lock();
            let idx = st.held(lease)?;
            if let Some(slot) = st.slot_mut(idx) {
                slot.rerun = false;
            }
            st.set_state(idx, JobState::Queued);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn promote(&self, key: &MediaKey, _now: Timestamp) -> Result<bool> {
        Ok(self.lock().set_demand(key, true))
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>> {
        let st = self.lock();
        Ok(st.find(key).and_then(|idx| st.slot(idx)).map(Slot::info))
    }

    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let st = self.lock();
        Ok(st
            .dead
            .values()
            .take(limit)
            .filter_map(|&idx| st.slot(idx))
            .map(Slot::info)
            .collect())
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64> {
        let requeued = {
            let mut st = self.lock();
            let slots: Vec<u32> = match key {
                Some(key) => st
                    .find(key)
                    .filter(|&idx| {
                        st.slot(idx)
                            .is_some_and(|s| matches!(s.state, JobState::Dead))
                    })
                    .into_iter()
                    .collect(),
                None => st.dead.values().copied().collect(),
            };
            for &idx in &slots {
                if let Some(slot) = st.slot_mut(idx) {
                    slot.job.attempts = 0;
                    slot.job.enqueued_at = now;
                    // Whatever made it hot is long gone.
                    slot.job.hot = false;
                }
                st.set_state(idx, JobState::Queued);
            }
            slots.len() as u64
        };
        if requeued > 0 {
            self.notify.notify_waiters();
        }
        Ok(requeued)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        Ok(self.lock().depth)
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        Some(self.notify.clone())
    }

    async fn clear_demand(&self, key: &MediaKey) -> Result<bool> {
        Ok(self.lock().set_demand(key, false))
    }

    async fn record_rejection(&self, key: &MediaKey) -> Result<u32> {
        let mut st = self.lock();
        let n = st.rejections.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        Ok(*n)
    }

    async fn clear_rejections(&self, key: &MediaKey) -> Result<()> {
        self.lock().rejections.remove(key);
        Ok(())
    }

    async fn summary(&self, now: Timestamp) -> Result<Vec<BotSummary>> {
        Ok(self.lock().summary(now))
    }
}

impl State {
    fn log_claims(&mut self, jobs: &[Claimed], now: Timestamp) {
        let horizon = Timestamp(now.0.saturating_sub(SUMMARY_WINDOW.as_millis() as u64));
        while self.claims.front().is_some_and(|(at, _)| *at < horizon) {
            self.claims.pop_front();
        }
        self.claims
            .extend(jobs.iter().map(|c| (now, c.job.key.bot.clone())));
    }

    /// O(jobs held): an operator's view, not a hot path.
    fn summary(&self, now: Timestamp) -> Vec<BotSummary> {
        let mut bots: BTreeMap<BotId, BotSummary> = BTreeMap::new();
        for slot in self.slots.iter().flatten() {
            let bot = &slot.job.key.bot;
            let s = bots
                .entry(bot.clone())
                .or_insert_with(|| BotSummary::empty(bot.clone(), now));
            *count(&mut s.depth, &slot.state) += 1;
            if !matches!(slot.state, JobState::Dead) {
                let at = slot.job.enqueued_at;
                s.oldest_enqueued_at = Some(s.oldest_enqueued_at.map_or(at, |o| o.min(at)));
            }
        }
        let horizon = Timestamp(now.0.saturating_sub(SUMMARY_WINDOW.as_millis() as u64));
        for (at, bot) in &self.claims {
            if *at >= horizon && *at <= now {
                bots.entry(bot.clone())
                    .or_insert_with(|| BotSummary::empty(bot.clone(), now))
                    .claims_last_minute += 1;
            }
        }
        bots.into_values().collect()
    }
}
