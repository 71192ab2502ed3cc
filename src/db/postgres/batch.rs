//! Group commit: pushes and completes that arrive together share one statement.

use super::*;

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) struct PushReq {
    pub(super) job: Job,
    pub(super) now: Timestamp,
    pub(super) reply: Reply<PushOutcome>,
}

pub(super) struct CompleteReq {
    pub(super) lease: Lease,
    pub(super) reply: Reply<()>,
}

/// Most requests one batch statement carries.
const MAX_BATCH: usize = 512;

pub(super) fn batcher_gone() -> Error {
    Error::Backend {
        backend: "postgres",
        message: "the store's batching task stopped".to_owned(),
        retryable: false,
    }
}

/// Group commit for pushes and completes: takes every request waiting, runs them as one
/// statement, answers each; meanwhile the next requests gather. A lone request runs at
/// once, so an idle store adds no delay. Stops when the store's last handle drops.
pub(super) async fn batcher<T: Send + 'static>(
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

impl PostgresStore {
    pub(super) async fn push_one(&self, job: Job, now: Timestamp) -> Result<PushOutcome> {
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
        Ok(push_outcome(rows.first().map_or("", |r| r.get(0))))
    }

    pub(super) async fn complete_one(&self, lease: &Lease) -> Result<()> {
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
    pub(super) async fn push_batch(&self, reqs: Vec<PushReq>) {
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
                done.insert(key, push_outcome(r.get(3)));
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
    pub(super) async fn complete_batch(&self, reqs: Vec<CompleteReq>) {
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
}
