//! Single flight: everyone waiting for one media learns the outcome of its one warm.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::media::{FileId, MediaKey};

/// The final outcome of warming one media: its file_id, or why it failed for good.
pub(crate) type Outcome = Result<FileId, String>;

/// A waiter's view of one media's flight.
pub(crate) type Receiver = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    // A std mutex: map updates only, never held across an `.await`.
    waiting: Mutex<HashMap<MediaKey, watch::Sender<Option<Outcome>>>>,
}

impl Flights {
    /// A receiver that sees the next final outcome for `key`.
    pub(crate) fn subscribe(&self, key: &MediaKey) -> Receiver {
        self.lock()
            .entry(key.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Tells every waiter of `key` the outcome. The worker stores a file_id in the cache
    /// before it publishes, and a waiter subscribes before it reads the cache, so a waiter
    /// either finds the file_id in the cache or receives it here.
    pub(crate) fn publish(&self, key: &MediaKey, outcome: Outcome) {
        if let Some(tx) = self.lock().remove(key) {
            tx.send_replace(Some(outcome));
        }
    }

    /// Forgets `key` once its last waiter has left; answers whether this was the last.
    pub(crate) fn unsubscribe(&self, key: &MediaKey, rx: Receiver) -> bool {
        drop(rx);
        let mut waiting = self.lock();
        match waiting.get(key) {
            Some(tx) if tx.receiver_count() == 0 => {
                waiting.remove(key);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Whether anyone in this process waits for `key`.
    pub(crate) fn is_waited(&self, key: &MediaKey) -> bool {
        self.lock().contains_key(key)
    }

    /// How many media have waiters.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MediaKey, watch::Sender<Option<Outcome>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
