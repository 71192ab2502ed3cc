//! Waiting for a media's file_id, and what to send meanwhile.

use std::time::Duration;

use std::sync::Arc;

use super::flight::Receiver;
use super::{Inner, PrewarmEngine, Sendable, deadline_after};
use crate::error::{Error, Result};
use crate::media::{FileId, Job, MediaKey};
use crate::queue::{JobInfo, JobState};

/// The longest a waiter goes between looks at the durable cache.
const MAX_WAIT_POLL: Duration = Duration::from_secs(30);

impl PrewarmEngine {
    /// Waits until `key` has a file_id, for at most `timeout`, and answers it. While it waits,
    /// the media's job goes ahead of every job nobody waits for; a media in the store with no
    /// job (its file_id was evicted, say) is queued again.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the deadline (the warm goes on); [`Error::WarmFailed`] when the
    /// media failed for good; [`Error::NotFound`] when it is neither cached nor stored.
    pub async fn wait_ready(&self, key: &MediaKey, timeout: Duration) -> Result<FileId> {
        if let Some(id) = self.lookup(key) {
            return Ok(id);
        }
        if timeout.is_zero() {
            return self.look_once(key).await;
        }
        let inner = &self.inner;
        let deadline = deadline_after(timeout);
        // Subscribed before the cache is read: a file_id stored after the read is published
        // to us. Dropped with this future, however it ends (a caller's timeout included).
        let mut waiting = Waiting::new(self.inner.clone(), key);
        if let Some(id) = inner.cache.get(key).await? {
            return Ok(id);
        }
        if !inner.queue.promote(key, inner.clock.now()).await? {
            if let Some(JobInfo {
                state: JobState::Dead,
                last_error,
                ..
            }) = inner.queue.get(key).await?
            {
                return Err(dead_error(key, last_error));
            }
            let (size, content_type) = self.stored(key).await?;
            let mut job = Job::new(key.clone(), size, inner.clock.now());
            job.demand = true;
            self.enqueue_typed(job, content_type, false).await?;
        }
        waiting.demanded = true;
        inner.wake.notify_one();
        let mut poll = inner.config.poll_interval;
        loop {
            let rx = waiting.rx.as_mut().expect("held until drop");
            tokio::select! {
                changed = rx.changed() => {
                    let outcome = rx.borrow_and_update().clone();
                    match outcome {
                        Some(Ok(id)) => {
                            waiting.satisfied = true;
                            return Ok(id);
                        }
                        Some(Err(reason)) => {
                            return Err(Error::WarmFailed { key: key.clone(), reason });
                        }
                        None if changed.is_err() => waiting.resubscribe(),
                        None => {}
                    }
                }
                () = tokio::time::sleep(poll) => {
                    // Another process may have warmed it: its workers cannot tell ours.
                    // Each look doubles the next wait (to 30 s), so that many waiters
                    // do not load the database.
                    poll = (poll * 2).min(inner.config.poll_interval.max(MAX_WAIT_POLL));
                    if let Some(id) = inner.cache.get(key).await? {
                        waiting.satisfied = true;
                        return Ok(id);
                    }
                    if let Some(JobInfo { state: JobState::Dead, last_error, .. }) =
                        inner.queue.get(key).await?
                    {
                        return Err(dead_error(key, last_error));
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(timed_out(key, timeout));
                }
            }
        }
    }

    /// A zero wait: one look at the cache and the queue, no demand marked (nobody will be
    /// waiting). A stored media with no job is queued again, with no demand.
    async fn look_once(&self, key: &MediaKey) -> Result<FileId> {
        let inner = &self.inner;
        if let Some(id) = inner.cache.get(key).await? {
            return Ok(id);
        }
        match inner.queue.get(key).await? {
            Some(JobInfo {
                state: JobState::Dead,
                last_error,
                ..
            }) => return Err(dead_error(key, last_error)),
            Some(_) => {}
            None => {
                let (size, content_type) = self.stored(key).await?;
                let job = Job::new(key.clone(), size, inner.clock.now());
                self.enqueue_typed(job, content_type, false).await?;
            }
        }
        Err(timed_out(key, Duration::ZERO))
    }

    /// What to send for `key` right now: its file_id when warm, or when it warms within
    /// `wait`; otherwise its bytes, to upload directly. A media that exists is always
    /// sendable: there is no "not ready" error.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the media is neither cached nor stored; the store's error.
    pub async fn sendable(&self, key: &MediaKey, wait: Duration) -> Result<Sendable> {
        match self.wait_ready(key, wait).await {
            Ok(id) => Ok(Sendable::FileId(id)),
            Err(e @ Error::NotFound { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(media = %key, error = %e, "not warm in time; sending the bytes");
                Ok(Sendable::Upload(self.source(key).await?))
            }
        }
    }

    /// Records a file_id obtained outside the engine (a direct upload after
    /// [`Sendable::Upload`]): it is cached, waiters get it, and a queued warm of the media
    /// finds it and uploads nothing.
    ///
    /// # Errors
    /// The cache's error.
    pub async fn record_file_id(&self, key: &MediaKey, file_id: FileId) -> Result<()> {
        self.inner.cache.put(key, &file_id).await?;
        self.inner.flights.publish(key, Ok(file_id));
        Ok(())
    }
}

fn dead_error(key: &MediaKey, last_error: Option<String>) -> Error {
    Error::WarmFailed {
        key: key.clone(),
        reason: last_error.unwrap_or_else(|| "failed for good".to_owned()),
    }
}

fn timed_out(key: &MediaKey, waited: Duration) -> Error {
    Error::Timeout {
        what: format!("the file_id of {key}"),
        waited,
    }
}

/// One waiter of a media: subscribed to its flight until dropped, however the wait ends.
struct Waiting {
    inner: Arc<Inner>,
    key: MediaKey,
    rx: Option<Receiver>,
    /// Whether this wait marked the media's job as demanded.
    demanded: bool,
    /// Whether the wait got its file_id (the job is done: no demand to clear).
    satisfied: bool,
}

impl Waiting {
    fn new(inner: Arc<Inner>, key: &MediaKey) -> Self {
        let rx = Some(inner.flights.subscribe(key));
        Self {
            inner,
            key: key.clone(),
            rx,
            demanded: false,
            satisfied: false,
        }
    }

    /// A new subscription, after the flight ended without a word to us.
    fn resubscribe(&mut self) {
        if let Some(rx) = self.rx.take() {
            self.inner.flights.unsubscribe(&self.key, rx);
        }
        self.rx = Some(self.inner.flights.subscribe(&self.key));
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(rx) = self.rx.take() else { return };
        let last = self.inner.flights.unsubscribe(&self.key, rx);
        if !(last && self.demanded && !self.satisfied) {
            return;
        }
        // The last waiter here left before the warm: the job stops going ahead of others. A
        // drop cannot wait, so a task tells the queue; it looks again first, since a waiter
        // may have come meanwhile. (Demand is one flag per job: a waiter in another process
        // sharing the queue loses it too, and its own wait marks it again on its next look.)
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (inner, key) = (self.inner.clone(), self.key.clone());
        runtime.spawn(async move {
            if inner.flights.is_waited(&key) {
                return;
            }
            if let Err(e) = inner.queue.clear_demand(&key).await {
                tracing::debug!(media = %key, error = %e, "could not clear the demand of a job nobody waits for");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::{BotId, MediaKind, MemoryUploader, PrewarmEngine};

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_no_flight_entry() {
        let bot = BotId::new("leaky").unwrap();
        let uploader = MemoryUploader::new(bot.clone())
            .with_latency(Duration::from_secs(60)..Duration::from_secs(60));
        let engine = PrewarmEngine::builder()
            .with_uploader(Arc::new(uploader))
            .build()
            .unwrap();
        let running = engine.spawn();
        let key = engine
            .save(&bot, Bytes::from_static(b"slow media"), MediaKind::Photo)
            .await
            .unwrap();
        // The caller gives up first: the wait's future is dropped mid-way.
        let gave_up = tokio::time::timeout(
            Duration::from_secs(1),
            engine.wait_ready(&key, Duration::MAX),
        )
        .await;
        assert!(gave_up.is_err());
        assert_eq!(engine.inner.flights.len(), 0, "the flight entry leaked");
        running.shutdown().await.unwrap();
    }
}
