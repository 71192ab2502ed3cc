//! Weak file_ids: ones Telegram rejects when sent ("wrong file identifier"), and the limit on
//! re-warming a media whose file_ids keep being rejected (`MEDIA_PREWARM_RETRY_WEAK_ID`).
//!
//! The count of a media's rejections is kept by the queue ([`PriorityQueue::record_rejection`],
//! so durably with a durable queue). It is forgiven ([`PriorityQueue::clear_rejections`]) when
//! a send by the media's file_id succeeds after a rejection ([`PrewarmEngine::report_sent`]),
//! and when its dead job is requeued: a file_id that is always rejected therefore runs out of
//! re-warms however often its warms succeed, while one rejected once in a long while (after
//! working) gets its re-warms back.
//!
//! [`PriorityQueue::record_rejection`]: crate::PriorityQueue::record_rejection
//! [`PriorityQueue::clear_rejections`]: crate::PriorityQueue::clear_rejections

use super::{PrewarmEngine, lock};
use crate::error::{Error, Result};
use crate::media::{FileId, Job, MediaKey};

/// Media with rejections this process may forgive, at most (past it, none are forgiven by a
/// send until the set empties: the safe side).
const FORGIVABLE_MAX: usize = 100_000;

impl PrewarmEngine {
    /// Reports that Telegram rejected `file_id` when sending `key` ("wrong file identifier").
    ///
    /// The rejection is counted first. Within the limit (`MEDIA_PREWARM_RETRY_WEAK_ID`, see
    /// [`with_retry_weak_id`](super::PrewarmEngineBuilder::with_retry_weak_id)), the file_id
    /// is invalidated (unless another was stored since) and the media re-warmed ahead of
    /// others. Past it, the file_id is invalidated too, and the media's job goes dead with the
    /// reason, so that no send queues it again ([`wait_ready`](Self::wait_ready) answers
    /// [`Error::WarmFailed`], [`sendable`](Self::sendable) the bytes) until
    /// [`requeue_dead`](Self::requeue_dead).
    ///
    /// # Errors
    /// [`Error::WarmFailed`] saying why, once the limit is passed; the cache's, store's or
    /// queue's error.
    pub async fn report_wrong_file_id(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let inner = &self.inner;
        let rejected = inner.queue.record_rejection(key).await?;
        {
            let mut forgivable = lock(&inner.forgivable);
            if forgivable.len() >= FORGIVABLE_MAX {
                forgivable.clear();
            }
            forgivable.insert(key.clone());
        }
        inner.cache.invalidate(key, Some(file_id)).await?;
        // The uploader must not answer the rejected file_id to the re-warm.
        if let Some(uploader) = inner.uploaders.get(&key.bot) {
            uploader.rejected(key, file_id).await?;
        }
        let limit = inner.config.retry_weak_id;
        let (size, content_type) = self.stored(key).await?;
        let mut job = Job::new(key.clone(), size, inner.clock.now());
        job.demand = true;
        if rejected <= limit {
            self.enqueue_typed(job, content_type, false).await?;
            return Ok(());
        }
        let reason = format!(
            "Telegram rejected {rejected} of its file_ids when sent (\"wrong file identifier\"), \
             more than the {limit} re-warm(s) MEDIA_PREWARM_RETRY_WEAK_ID allows; send its bytes, \
             or requeue it once the cause is fixed"
        );
        // The job's next claim fails it with the reason rather than uploading.
        lock(&inner.bury).insert(key.clone(), reason.clone());
        self.enqueue(job).await?;
        Err(Error::WarmFailed {
            key: key.clone(),
            reason,
        })
    }

    /// Reports that a send by `key`'s file_id succeeded. Forgives the media's earlier
    /// rejections (see [`report_wrong_file_id`](Self::report_wrong_file_id)) when this process
    /// recorded any; otherwise it does nothing and no I/O. [`send_cached`](crate::send_cached)
    /// calls it.
    ///
    /// # Errors
    /// The queue's error.
    pub async fn report_sent(&self, key: &MediaKey) -> Result<()> {
        if !lock(&self.inner.forgivable).contains(key) {
            return Ok(());
        }
        self.inner.queue.clear_rejections(key).await?;
        lock(&self.inner.forgivable).remove(key);
        Ok(())
    }
}
