use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    Claim, Claimed, JobInfo, JobState, Lease, PriorityPolicy, PriorityQueue, PushOutcome,
    QueueDepth,
};
use crate::error::{Error, Result};
use crate::media::{Job, MediaKey, Timestamp};

/// An in-memory [`PriorityQueue`]: binary heaps, O(log n) push and claim.
///
/// Jobs live in a hash map by media; four heaps index them: claimable jobs by rank and by age
/// (for the aging rule), delayed jobs by run time, claimed jobs by lease expiry. Heap entries
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
    slots: HashMap<MediaKey, Slot>,
    by_rank: BinaryHeap<Reverse<(i64, u64, MediaKey)>>,
    by_age: BinaryHeap<Reverse<(Timestamp, u64, MediaKey)>>,
    delayed: BinaryHeap<Reverse<(Timestamp, u64, MediaKey)>>,
    leases: BinaryHeap<Reverse<(Timestamp, u64, MediaKey)>>,
    dead: BTreeMap<u64, MediaKey>,
    depth: QueueDepth,
    next_seq: u64,
}

#[derive(Debug)]
struct Slot {
    job: Job,
    state: JobState,
    /// The sequence number of the job's current heap entries (or dead-list position).
    seq: u64,
    /// Claims so far: the fencing token of the current lease.
    token: u64,
    last_error: Option<String>,
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
        // Every mutation below either completes or panics before touching shared state on an
        // invariant violation that is a bug; keep serving rather than poison every caller.
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

impl State {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Moves the job at `key` to `state` and indexes it there.
    fn set_state(&mut self, key: &MediaKey, state: JobState) {
        let seq = self.seq();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        *count(&mut self.depth, &slot.state) -= 1;
        *count(&mut self.depth, &state) += 1;
        if matches!(slot.state, JobState::Dead) {
            self.dead.remove(&slot.seq);
        }
        slot.seq = seq;
        slot.state = state;
        self.index(key);
    }

    /// Adds the heap entry (or dead-list entry) for the job's current state and sequence.
    fn index(&mut self, key: &MediaKey) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let seq = slot.seq;
        match &slot.state {
            JobState::Queued => {
                self.by_rank
                    .push(Reverse((self.policy.rank(&slot.job), seq, key.clone())));
                self.by_age
                    .push(Reverse((slot.job.enqueued_at, seq, key.clone())));
            }
            JobState::Delayed { run_at } => {
                self.delayed.push(Reverse((*run_at, seq, key.clone())));
            }
            JobState::Claimed { expires_at, .. } => {
                self.leases.push(Reverse((*expires_at, seq, key.clone())));
            }
            JobState::Dead => {
                self.dead.insert(seq, key.clone());
            }
        }
    }

    fn insert(&mut self, job: Job) {
        let key = job.key.clone();
        let seq = self.seq();
        let slot = Slot {
            job,
            state: JobState::Queued,
            seq,
            token: 0,
            last_error: None,
        };
        self.slots.insert(key.clone(), slot);
        self.depth.queued += 1;
        self.index(&key);
    }

    fn is_current(&self, seq: u64, key: &MediaKey, want: fn(&JobState) -> bool) -> bool {
        self.slots
            .get(key)
            .is_some_and(|s| s.seq == seq && want(&s.state))
    }

    /// Moves due delayed jobs and lapsed leases back to the queue.
    fn wake_due(&mut self, now: Timestamp) {
        while let Some(Reverse((at, seq, key))) = self.delayed.peek().cloned() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if self.is_current(seq, &key, |s| matches!(s, JobState::Delayed { .. })) {
                self.set_state(&key, JobState::Queued);
            }
        }
        while let Some(Reverse((at, seq, key))) = self.leases.peek().cloned() {
            if at > now {
                break;
            }
            self.leases.pop();
            if self.is_current(seq, &key, |s| matches!(s, JobState::Claimed { .. })) {
                tracing::debug!(media = %key, "lease lapsed; job returns to the queue");
                self.set_state(&key, JobState::Queued);
            }
        }
    }

    /// The best claimable job, if any.
    fn pop_best(&mut self, now: Timestamp) -> Option<MediaKey> {
        let queued = |s: &JobState| matches!(s, JobState::Queued);
        // Rule 1: a job that has waited past the aging bound goes first.
        while let Some(Reverse((enqueued, seq, key))) = self.by_age.peek() {
            if !self.is_current(*seq, key, queued) {
                self.by_age.pop();
                continue;
            }
            if now.since(*enqueued) >= self.policy.aging_bound() {
                let key = key.clone();
                self.by_age.pop();
                return Some(key);
            }
            break;
        }
        // Rule 2: lowest rank.
        while let Some(Reverse((_, seq, key))) = self.by_rank.pop() {
            if self.is_current(seq, &key, queued) {
                return Some(key);
            }
        }
        None
    }

    /// The earliest time a delayed job or a lease comes due, dropping stale heap tops.
    fn next_due(&mut self) -> Option<Timestamp> {
        while let Some(Reverse((_, seq, key))) = self.delayed.peek() {
            if self.is_current(*seq, key, |s| matches!(s, JobState::Delayed { .. })) {
                break;
            }
            self.delayed.pop();
        }
        while let Some(Reverse((_, seq, key))) = self.leases.peek() {
            if self.is_current(*seq, key, |s| matches!(s, JobState::Claimed { .. })) {
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
        let live = self.slots.len();
        let slots = &self.slots;
        let keep = |seq: u64, key: &MediaKey| slots.get(key).is_some_and(|s| s.seq == seq);
        if self.by_rank.len() > 2 * live + 1024 {
            self.by_rank
                .retain(|Reverse((_, seq, key))| keep(*seq, key));
        }
        if self.by_age.len() > 2 * live + 1024 {
            self.by_age.retain(|Reverse((_, seq, key))| keep(*seq, key));
        }
        if self.delayed.len() > 2 * live + 1024 {
            self.delayed
                .retain(|Reverse((_, seq, key))| keep(*seq, key));
        }
        if self.leases.len() > 2 * live + 1024 {
            self.leases.retain(|Reverse((_, seq, key))| keep(*seq, key));
        }
    }

    /// The slot of a job the lease still holds.
    fn held(&mut self, lease: &Lease) -> Result<&mut Slot> {
        match self.slots.get_mut(&lease.key) {
            Some(slot)
                if slot.token == lease.token
                    && matches!(&slot.state, JobState::Claimed { owner, .. } if *owner == lease.owner) =>
            {
                Ok(slot)
            }
            _ => Err(Error::LeaseLost {
                key: lease.key.clone(),
            }),
        }
    }
}

#[async_trait]
impl PriorityQueue for MemoryQueue {
    async fn push(&self, job: Job, now: Timestamp) -> Result<PushOutcome> {
        let outcome = {
            let mut st = self.lock();
            match st.slots.get_mut(&job.key) {
                None => {
                    st.insert(job);
                    PushOutcome::Queued
                }
                Some(slot) if matches!(slot.state, JobState::Dead) => {
                    slot.job = Job {
                        attempts: 0,
                        enqueued_at: now,
                        ..job
                    };
                    let key = slot.job.key.clone();
                    st.set_state(&key, JobState::Queued);
                    PushOutcome::Revived
                }
                Some(slot) => {
                    let promote = job.demand && !slot.job.demand;
                    slot.job.demand |= job.demand;
                    if promote && matches!(slot.state, JobState::Queued) {
                        // Re-index under the demanded rank.
                        st.set_state(&job.key, JobState::Queued);
                    }
                    PushOutcome::Merged
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
        max: usize,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Claim> {
        let mut st = self.lock();
        st.wake_due(now);
        let owner: Arc<str> = owner.into();
        let expires_at = now.plus(lease);
        let mut jobs = Vec::with_capacity(max.min(st.depth.queued as usize));
        while jobs.len() < max {
            let Some(key) = st.pop_best(now) else { break };
            st.set_state(
                &key,
                JobState::Claimed {
                    owner: owner.clone(),
                    expires_at,
                },
            );
            let Some(slot) = st.slots.get_mut(&key) else {
                continue;
            };
            slot.token += 1;
            jobs.push(Claimed {
                job: slot.job.clone(),
                lease: Lease {
                    key,
                    token: slot.token,
                    owner: owner.clone(),
                    expires_at,
                },
            });
        }
        let next_due = st.next_due();
        st.compact();
        Ok(Claim { jobs, next_due })
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        let mut st = self.lock();
        st.held(lease)?;
        let expires_at = now.plus(lease_for);
        st.set_state(
            &lease.key,
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
        let mut st = self.lock();
        st.held(lease)?;
        st.slots.remove(&lease.key);
        st.depth.claimed -= 1;
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
            let slot = st.held(lease)?;
            slot.job.attempts += u32::from(count_attempt);
            slot.last_error = Some(error.to_owned());
            st.set_state(&lease.key, JobState::Delayed { run_at });
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<()> {
        let mut st = self.lock();
        let slot = st.held(lease)?;
        slot.job.attempts += 1;
        slot.last_error = Some(error.to_owned());
        st.set_state(&lease.key, JobState::Dead);
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        {
            let mut st = self.lock();
            st.held(lease)?;
            st.set_state(&lease.key, JobState::Queued);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn promote(&self, key: &MediaKey, _now: Timestamp) -> Result<bool> {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(key) else {
            return Ok(false);
        };
        match slot.state {
            JobState::Dead => Ok(false),
            JobState::Queued if !slot.job.demand => {
                slot.job.demand = true;
                st.set_state(key, JobState::Queued);
                Ok(true)
            }
            _ => {
                slot.job.demand = true;
                Ok(true)
            }
        }
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>> {
        Ok(self.lock().slots.get(key).map(|slot| JobInfo {
            job: slot.job.clone(),
            state: slot.state.clone(),
            last_error: slot.last_error.clone(),
        }))
    }

    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let st = self.lock();
        Ok(st
            .dead
            .values()
            .take(limit)
            .filter_map(|key| st.slots.get(key))
            .map(|slot| JobInfo {
                job: slot.job.clone(),
                state: slot.state.clone(),
                last_error: slot.last_error.clone(),
            })
            .collect())
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64> {
        let requeued = {
            let mut st = self.lock();
            let keys: Vec<MediaKey> = match key {
                Some(key) => st
                    .slots
                    .get(key)
                    .filter(|s| matches!(s.state, JobState::Dead))
                    .map(|_| key.clone())
                    .into_iter()
                    .collect(),
                None => st.dead.values().cloned().collect(),
            };
            for key in &keys {
                if let Some(slot) = st.slots.get_mut(key) {
                    slot.job.attempts = 0;
                    slot.job.enqueued_at = now;
                }
                st.set_state(key, JobState::Queued);
            }
            keys.len() as u64
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
}
