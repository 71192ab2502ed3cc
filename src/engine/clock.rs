use tokio::time::Instant;

use crate::media::Timestamp;

/// The engine's clock: wall-clock milliseconds for the queue, read off tokio's clock.
///
/// Anchored once at a whole millisecond, so that a paused tokio clock (in tests) drives the
/// queue's timestamps too, and a timestamp converts back to the instant to sleep until.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall: Timestamp,
    instant: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            wall: Timestamp::now(),
            instant: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp(self.wall.as_millis() + self.instant.elapsed().as_millis() as u64)
    }

    /// The tokio instant at which `at` comes (now, for a time already past).
    pub(crate) fn instant_at(&self, at: Timestamp) -> Instant {
        self.instant + at.since(self.wall)
    }
}
