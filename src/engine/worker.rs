//! The dispatcher, which claims jobs as workers free up, and the worker, which warms one job.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::{Inner, PrewarmEngine, lock};
use crate::error::{Error, Result};
use crate::media::{BotId, FileId, MediaKey};
use crate::queue::{Claimed, Lease};
use crate::upload::{UploadRequest, Uploaded};

/// The engine's workers running as a spawned task; see [`PrewarmEngine::spawn`].
///
/// Dropping it asks the engine to shut down gracefully, as
/// [`shutdown`](Self::shutdown) does, without waiting for it.
#[derive(Debug)]
pub struct EngineTask {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl EngineTask {
    /// Stops claiming jobs, lets running uploads finish within the shutdown grace, returns
    /// the rest to the queue, and waits until all of that is done.
    ///
    /// # Errors
    /// [`Error::Config`] when the engine was already running elsewhere; a panic in the
    /// dispatcher as [`Error::Backend`].
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(handle) => handle.await.map_err(|e| Error::Backend {
                backend: "engine",
                message: format!("the dispatcher task failed: {e}"),
                retryable: false,
            })?,
            None => Ok(()),
        }
    }
}

impl Drop for EngineTask {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl PrewarmEngine {
    /// Runs the engine's workers on the current runtime until [`EngineTask::shutdown`] or the
    /// task handle is dropped.
    ///
    /// Must be called within a tokio runtime.
    pub fn spawn(&self) -> EngineTask {
        let (stop, stopped) = oneshot::channel::<()>();
        let engine = self.clone();
        let handle = tokio::spawn(async move {
            engine
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        EngineTask {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Runs the engine's workers until `shutdown` completes, then shuts down gracefully: stops
    /// claiming, lets running uploads finish within the shutdown grace, and returns whatever
    /// still runs after it to the queue. Queued jobs stay queued.
    ///
    /// For hosts that drive their own tasks; [`spawn`](Self::spawn) is the convenience.
    ///
    /// # Errors
    /// [`Error::Config`] when this engine is already running.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let inner = &self.inner;
        if inner.running.swap(true, Ordering::SeqCst) {
            return Err(Error::Config {
                message: "this engine is already running: call run or spawn once".to_owned(),
            });
        }
        struct Running<'a>(&'a Inner);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.running.store(false, Ordering::SeqCst);
            }
        }
        let _running = Running(inner);
        Dispatcher::new(self.inner.clone()).run(shutdown).await;
        Ok(())
    }
}

struct Dispatcher {
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    /// Leases held by running workers, so that a forced shutdown can release them.
    held: Arc<Mutex<HashMap<MediaKey, Lease>>>,
}

impl Dispatcher {
    fn new(inner: Arc<Inner>) -> Self {
        let permits = Arc::new(Semaphore::new(inner.config.concurrency));
        Self {
            inner,
            permits,
            tasks: JoinSet::new(),
            held: Arc::default(),
        }
    }

    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let inner = self.inner.clone();
        let remote = inner.queue.notifier();
        // The bots this engine uploads for: a claim never takes another bot's job.
        let bots: Vec<BotId> = inner.uploaders.keys().cloned().collect();
        tracing::info!(
            instance = %inner.instance,
            concurrency = inner.config.concurrency,
            notifies = remote.is_some(),
            "prewarm engine started"
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            while let Some(done) = self.tasks.try_join_next() {
                self.reap(done);
            }
            let free = self.permits.available_permits();
            if free == 0 {
                inner.metrics.blocked();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    Some(done) = self.tasks.join_next() => self.reap(done),
                }
                continue;
            }

            // Armed before the claim, so that a push landing between the claim and the wait
            // below still wakes us.
            let local = inner.wake.notified();
            let mut local = std::pin::pin!(local);
            local.as_mut().enable();
            let mut remote_wake = remote.as_ref().map(|n| Box::pin(n.notified()));
            if let Some(n) = remote_wake.as_mut() {
                n.as_mut().enable();
            }

            let now = inner.clock.now();
            let claim = match inner
                .queue
                .claim(&inner.instance, &bots, free, inner.config.lease, now)
                .await
            {
                Ok(claim) => {
                    failures = 0;
                    claim
                }
                Err(e) => {
                    failures += 1;
                    let pause = backoff(
                        failures,
                        Duration::from_millis(50),
                        inner.config.poll_interval.max(Duration::from_millis(50)),
                    );
                    tracing::warn!(error = %e, retry_in = ?pause, "claiming jobs failed");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            if !claim.jobs.is_empty() {
                inner.metrics.batch(claim.jobs.len());
                for claimed in claim.jobs {
                    self.start(claimed);
                }
                continue;
            }

            let mut wake_at = claim.next_due.map(|at| inner.clock.instant_at(at));
            if remote.is_none() {
                let poll = super::deadline_after(inner.config.poll_interval);
                wake_at = Some(wake_at.map_or(poll, |at| at.min(poll)));
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = &mut local => {}
                () = async { remote_wake.as_mut().expect("guarded").await }, if remote_wake.is_some() => {}
                () = async { tokio::time::sleep_until(wake_at.expect("guarded")).await }, if wake_at.is_some() => {}
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.reap(done),
            }
        }
        self.shut_down().await;
    }

    fn start(&mut self, claimed: Claimed) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Cannot happen: we claim at most the free permits, and only we take them. Should
            // it happen anyway, the job goes back rather than run over the limit.
            let inner = self.inner.clone();
            self.tasks.spawn(async move {
                let _ = inner.queue.release(&claimed.lease).await;
            });
            return;
        };
        let inner = self.inner.clone();
        let held = self.held.clone();
        lock(&held).insert(claimed.job.key.clone(), claimed.lease.clone());
        let active = (inner.config.concurrency - self.permits.available_permits()) as u64;
        inner.metrics.workers(active, inner.config.concurrency);
        let span = tracing::info_span!(
            "prewarm_job",
            media = %claimed.job.key,
            size = claimed.job.size,
            attempt = claimed.job.attempts + 1,
        );
        self.tasks.spawn(
            async move {
                let (key, token) = (claimed.job.key.clone(), claimed.lease.token);
                warm(&inner, &held, claimed).await;
                // Only this claim's entry: a later claim of the same media may hold it now.
                let mut held = lock(&held);
                if held.get(&key).is_some_and(|l| l.token == token) {
                    held.remove(&key);
                }
                drop(held);
                drop(permit);
                // A freed worker (and perhaps a retry time) for the dispatcher to act on.
                inner.wake.notify_one();
            }
            .instrument(span),
        );
    }

    fn reap(&self, done: std::result::Result<(), tokio::task::JoinError>) {
        if let Err(e) = done
            && e.is_panic()
        {
            tracing::error!(error = %e, "a warm worker panicked; its job returns when its lease lapses");
        }
        let active = (self.inner.config.concurrency - self.permits.available_permits()) as u64;
        self.inner
            .metrics
            .workers(active, self.inner.config.concurrency);
    }

    async fn shut_down(mut self) {
        let inner = &self.inner;
        let running = self.tasks.len();
        tracing::info!(running, grace = ?inner.config.shutdown_grace, "prewarm engine stopping");
        let drained = tokio::time::timeout(inner.config.shutdown_grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            let leases: Vec<Lease> = lock(&self.held).drain().map(|(_, l)| l).collect();
            // Bounded: past a lease the jobs return by themselves anyway, so a queue that does
            // not answer cannot hold the host's shutdown.
            let releases = futures::future::join_all(leases.iter().map(|lease| async move {
                match inner.queue.release(lease).await {
                    Ok(()) => tracing::info!(media = %lease.key, "returned to the queue"),
                    Err(e) => {
                        tracing::warn!(media = %lease.key, error = %e, "could not return the job; its lease will lapse")
                    }
                }
            }));
            if tokio::time::timeout(release_deadline(inner.config.lease), releases)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the queue did not take the jobs back in time; their leases will lapse"
                );
            }
        }
        inner.metrics.workers(0, inner.config.concurrency);
        tracing::info!("prewarm engine stopped");
    }
}

/// How long shutdown waits for the queue to take back the jobs it still holds.
pub(crate) fn release_deadline(lease: Duration) -> Duration {
    lease.min(Duration::from_secs(5))
}

/// Backoff after the `attempt`-th failure: `base * 2^(attempt-1)` capped at `max`, of which
/// the upper half is random ("equal jitter"): retries spread out, yet never come sooner than
/// half the nominal delay.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let nominal = base.saturating_mul(1u32 << exp.min(31)).min(max);
    let half = nominal / 2;
    half + Duration::from_nanos(fastrand::u64(..=half.as_nanos() as u64))
}

/// Warms one claimed job and settles it in the queue.
async fn warm(inner: &Inner, held: &Mutex<HashMap<MediaKey, Lease>>, claimed: Claimed) {
    let Claimed { job, lease } = claimed;
    let key = &job.key;
    let pushed = lock(&inner.pushed).remove(key);
    // Released once this worker holds the bytes (or has no use for them).
    let mut pin = Unpin(None);
    let content_type = pushed.and_then(|pushed| {
        inner.metrics.dispatched(pushed.at.elapsed());
        if pushed.pinned {
            pin.0 = Some((&inner.bytes, key.sha256));
        }
        pushed.content_type
    });

    // Past the weak-id limit: dead with the reason, nothing uploaded.
    let buried = lock(&inner.bury).remove(key);
    if let Some(reason) = buried {
        tracing::warn!(%reason, "the media's file_ids keep being rejected; its job is dead");
        if settle(inner, &lease, inner.queue.fail(&lease, &reason).await) {
            inner.metrics.failed();
            inner.flights.publish(key, Err(reason));
        } else {
            // Not recorded: the job comes back when its lease lapses, and must die then.
            lock(&inner.bury).insert(key.clone(), reason);
        }
        return;
    }

    // A duplicate job, a file_id recorded by the bot, or another instance's warm.
    match inner.cache.get(key).await {
        Ok(Some(file_id)) => {
            tracing::debug!("already warm; nothing to upload");
            if settle(inner, &lease, inner.queue.complete(&lease).await) {
                inner.flights.publish(key, Ok(file_id));
            }
            return;
        }
        Ok(None) => {}
        Err(e) => return failed(inner, &job, &lease, e).await,
    }
    let Some(uploader) = inner.uploaders.get(&key.bot) else {
        // A queue shared by engines of different bots: this job is another engine's. Hand it
        // back, out of this engine's way for a lease, without counting an attempt.
        let reason = Error::UnknownBot {
            bot: key.bot.to_string(),
        }
        .to_string();
        tracing::debug!("no uploader here for the media's bot; handing the job back");
        let run_at = inner.clock.now().plus(inner.config.lease);
        let result = inner.queue.retry(&lease, run_at, false, &reason).await;
        settle(inner, &lease, result);
        return;
    };

    // Telegram answered a file_id that this engine could not store: store it now, upload
    // nothing.
    let unsaved = lock(&inner.unsaved).get(key).map(|(id, _)| id.clone());
    if let Some(file_id) = unsaved {
        return record(inner, &job, &lease, file_id).await;
    }

    let mut source = inner.source(key).await;
    drop(pin);
    if let Some(content_type) = content_type {
        // Known from the save: the uploader need not ask the store.
        source = source.with_content_type(content_type);
    }
    let request = UploadRequest {
        key: key.clone(),
        size: job.size,
        source,
    };
    inner.metrics.upload_started();
    let (result, lease) = match keep_lease(inner, held, lease, uploader.upload(request)).await {
        Some(done) => done,
        None => return, // lost the lease: another worker owns the job now
    };
    match result {
        Ok(Uploaded { file_id, .. }) => record(inner, &job, &lease, file_id).await,
        Err(e) => failed(inner, &job, &lease, e).await,
    }
}

/// Releases a pin of the byte cache when dropped.
struct Unpin<'a>(Option<(&'a super::byte_cache::ByteCache, crate::media::Sha256)>);

impl Drop for Unpin<'_> {
    fn drop(&mut self) {
        if let Some((cache, sha)) = self.0.take() {
            cache.unpin(&sha);
        }
    }
}

/// Stores the file_id an upload answered, then finishes the job. When the cache refuses it,
/// the file_id is kept in memory and the job retried later without counting an attempt: the
/// retry stores it and uploads nothing, so a file_id Telegram returned is never dropped for a
/// cache error (it is lost only if this process ends first).
async fn record(inner: &Inner, job: &crate::media::Job, lease: &Lease, file_id: FileId) {
    let key = &job.key;
    if let Err(e) = inner.cache.put(key, &file_id).await {
        let failures = {
            let mut unsaved = lock(&inner.unsaved);
            let entry = unsaved
                .entry(key.clone())
                .or_insert_with(|| (file_id.clone(), 0));
            entry.0 = file_id.clone();
            entry.1 += 1;
            entry.1
        };
        let wait = backoff(
            failures,
            inner.config.backoff_base,
            inner.config.backoff_max,
        );
        tracing::warn!(error = %e, failures, retry_in = ?wait, "could not store the file_id; keeping it to store later");
        // Waiters here need not wait for the cache.
        inner.flights.publish(key, Ok(file_id));
        let message = format!("storing the file_id failed: {e}");
        let run_at = inner.clock.now().plus(wait);
        let result = inner.queue.retry(lease, run_at, false, &message).await;
        settle(inner, lease, result);
        return;
    }
    lock(&inner.unsaved).remove(key);
    // Stored before the queue hears of it: a job claimed after this sees the file_id.
    if settle(inner, lease, inner.queue.complete(lease).await) {
        let now = inner.clock.now();
        inner.metrics.warmed(now.since(job.enqueued_at));
        tracing::info!(file_id = %file_id, "warmed");
        inner.flights.publish(key, Ok(file_id));
    }
}

/// Runs `upload` while keeping its lease: an extension comes half a lease before the lease
/// lapses (so the first is timed from the claim, not from the upload's start), and again
/// soon after an extension fails. Answers the upload's result with the lease as it stands
/// then, or `None` when the lease is lost, or is about to lapse with no extension granted:
/// the upload is then dropped before the queue can hand the job to another worker, so that
/// one media is never uploaded by two workers at once.
async fn keep_lease<F, T>(
    inner: &Inner,
    held: &Mutex<HashMap<MediaKey, Lease>>,
    mut lease: Lease,
    work: F,
) -> Option<(T, Lease)>
where
    F: Future<Output = T>,
{
    let mut work = std::pin::pin!(work);
    let half = inner.config.lease / 2;
    let retry_every = (inner.config.lease / 16).max(Duration::from_millis(50));
    let mut next = inner.clock.instant_at(lease.expires_at) - half;
    loop {
        let expires = inner.clock.instant_at(lease.expires_at);
        // Stop with a margin: the queue's clock (another process's, with a shared database)
        // may run a little ahead of ours.
        let give_up = expires - lease_margin(inner.config.lease);
        tokio::select! {
            biased;
            result = &mut work => return Some((result, lease)),
            () = tokio::time::sleep_until(give_up) => {
                tracing::warn!("the lease could not be extended and is about to lapse; dropping this attempt");
                return None;
            }
            () = tokio::time::sleep_until(next) => {
                match inner.queue.extend(&lease, inner.config.lease, inner.clock.now()).await {
                    Ok(extended) => {
                        lock(held).insert(lease.key.clone(), extended.clone());
                        lease = extended;
                        next = inner.clock.instant_at(lease.expires_at) - half;
                    }
                    Err(Error::LeaseLost { .. }) => {
                        tracing::warn!("lease lost during the upload; dropping this attempt");
                        return None;
                    }
                    Err(e) => {
                        next = tokio::time::Instant::now() + retry_every;
                        tracing::warn!(error = %e, retry_in = ?retry_every, "could not extend the lease");
                    }
                }
            }
        }
    }
}

/// How long before its lease lapses an attempt that could not extend it stops.
fn lease_margin(lease: Duration) -> Duration {
    (lease / 8).max(Duration::from_millis(100))
}

/// Settles a failed attempt: a rate limit waits exactly as asked without counting an attempt,
/// a retryable error backs off until the attempts run out, anything else is final.
async fn failed(inner: &Inner, job: &crate::media::Job, lease: &Lease, error: Error) {
    let key = &job.key;
    let message = error.to_string();
    let now = inner.clock.now();
    if let Some(wait) = error.retry_after() {
        tracing::info!(retry_after = ?wait, "rate limited");
        inner.metrics.retried(true);
        let result = inner
            .queue
            .retry(lease, now.plus(wait), false, &message)
            .await;
        settle(inner, lease, result);
        return;
    }
    let attempts = job.attempts + 1;
    if error.is_retryable() && attempts < inner.config.max_attempts {
        let wait = backoff(
            attempts,
            inner.config.backoff_base,
            inner.config.backoff_max,
        );
        tracing::info!(error = %message, attempts, retry_in = ?wait, "attempt failed; retrying");
        inner.metrics.retried(false);
        let result = inner
            .queue
            .retry(lease, now.plus(wait), true, &message)
            .await;
        settle(inner, lease, result);
        return;
    }
    tracing::warn!(error = %message, attempts, "warm failed for good");
    if settle(inner, lease, inner.queue.fail(lease, &message).await) {
        inner.metrics.failed();
        inner.flights.publish(key, Err(message));
    }
}

/// Logs a queue update that did not apply; answers whether it did.
fn settle(inner: &Inner, lease: &Lease, result: Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(Error::LeaseLost { .. }) => {
            tracing::warn!(media = %lease.key, "the job was reclaimed by another worker; this result is dropped");
            false
        }
        Err(e) => {
            tracing::error!(media = %lease.key, owner = %inner.instance, error = %e, "could not record the job's outcome; it returns when its lease lapses");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_equal_jitter_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10u32 {
            let nominal = (base * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..50 {
                let d = backoff(attempt, base, max);
                assert!(d >= nominal / 2 && d <= nominal, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(u32::MAX, base, max) <= max);
    }
}
