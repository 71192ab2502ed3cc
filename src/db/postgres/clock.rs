//! Which clock leases and aging follow.

use super::*;

/// The database server's clock in unix milliseconds, as SQL.
pub(super) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Which clock a [`PostgresStore`]'s leases and aging follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueClock {
    /// The database server's clock (default), so that instances on hosts whose clocks
    /// disagree still agree on when a lease lapses and when a job has aged. Every claim reads
    /// it; between claims the store adds its own monotonic time to the last reading. The
    /// `now` passed to the queue's methods, and a pushed job's `enqueued_at`, are then
    /// replaced by this time.
    #[default]
    Database,
    /// The `now` each caller passes, as the other backends do: for tests that drive time,
    /// or hosts whose clocks are known to agree.
    Caller,
}

/// The store's view of time (see [`QueueClock`]).
#[derive(Debug)]
pub(super) struct Clock {
    pub(super) mode: QueueClock,
    /// The last reading of the database's clock (unix ms) and when it was taken.
    pub(super) base: std::sync::Mutex<(i64, std::time::Instant)>,
}

impl Clock {
    /// The time an operation called with the caller's `now` runs at.
    pub(super) fn now(&self, caller: Timestamp) -> Timestamp {
        match self.mode {
            QueueClock::Caller => caller,
            QueueClock::Database => {
                // A plain lock: two reads of a copy, never held across an await.
                let (ms, at) = *self.base.lock().unwrap_or_else(|p| p.into_inner());
                let elapsed = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
                ts(ms.saturating_add(elapsed))
            }
        }
    }

    /// The caller's time for SQL, or `None` where the database's clock rules.
    pub(super) fn param(&self, caller: Timestamp) -> Option<i64> {
        (self.mode == QueueClock::Caller).then(|| ms(caller))
    }

    /// Records a reading of the database's clock.
    pub(super) fn set(&self, db_ms: i64) {
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) = (db_ms, std::time::Instant::now());
    }
}
