//! [`Progress`]: counters a long bulk run updates, and [`ProgressSnapshot`]s of them with
//! rates and an ETA.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::save_all::Saved;

/// The span the recent rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// Live counts of a bulk run: media saved, warming, ready and failed. [`BulkSaver`] counts
/// the saves; whoever waits for the warms counts those ([`record_ready`](Self::record_ready),
/// [`record_failed`](Self::record_failed)); [`WarmDir`] does both.
///
/// # Clone
/// Clones share the counters: hand one to a task that renders [`snapshot`](Self::snapshot)s.
///
/// [`BulkSaver`]: super::BulkSaver
/// [`WarmDir`]: super::WarmDir
#[derive(Debug, Clone)]
pub struct Progress {
    inner: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    started: Instant,
    total: AtomicU64,
    saved: AtomicU64,
    skipped: AtomicU64,
    indexed: AtomicU64,
    hashed: AtomicU64,
    save_failed: AtomicU64,
    warmed: AtomicU64,
    warm_failed: AtomicU64,
    /// (when, saves answered, media ready) at past snapshots, for the recent rates.
    // A plain lock: pushed and read in one step, never held across an `.await`.
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Counters at zero, the clock started now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Counters {
                started: Instant::now(),
                total: AtomicU64::new(0),
                saved: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                indexed: AtomicU64::new(0),
                hashed: AtomicU64::new(0),
                save_failed: AtomicU64::new(0),
                warmed: AtomicU64::new(0),
                warm_failed: AtomicU64::new(0),
                samples: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// How many media the run holds, once known (the ETA needs it).
    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
    }

    /// Counts one save's answer.
    pub(crate) fn record_save<T>(&self, saved: &Saved<T>) {
        let c = &*self.inner;
        if saved.hashed {
            c.hashed.fetch_add(1, Ordering::Relaxed);
        }
        match &saved.result {
            Err(_) => c.save_failed.fetch_add(1, Ordering::Relaxed),
            Ok(_) if !saved.hashed => c.indexed.fetch_add(1, Ordering::Relaxed),
            Ok(_) => 0,
        };
        match &saved.result {
            Err(_) => {}
            Ok(_) if saved.already_warm => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                c.saved.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a saved media whose warm finished: it has a file_id.
    pub fn record_ready(&self) {
        self.inner.warmed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a saved media whose warm failed for good.
    pub fn record_failed(&self) {
        self.inner.warm_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with rates over the last 30 seconds and an ETA at that pace.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let c = &*self.inner;
        let now = Instant::now();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (saved, skipped, save_failed) =
            (load(&c.saved), load(&c.skipped), load(&c.save_failed));
        let (warmed, warm_failed) = (load(&c.warmed), load(&c.warm_failed));
        let ready = skipped + warmed;
        let answered = saved + skipped + save_failed;
        let mut snap = ProgressSnapshot {
            total: load(&c.total),
            saved,
            skipped,
            skipped_by_index: load(&c.indexed),
            hashed: load(&c.hashed),
            warming: saved.saturating_sub(warmed + warm_failed),
            ready,
            failed: save_failed + warm_failed,
            elapsed: now - c.started,
            saves_per_second: 0.0,
            ready_per_second: 0.0,
            eta: None,
        };
        let oldest = {
            let mut samples = c.samples.lock().unwrap_or_else(|p| p.into_inner());
            while samples.len() > 1 && samples.get(1).is_some_and(|s| now - s.0 >= RATE_WINDOW) {
                samples.pop_front();
            }
            samples.push_back((now, answered, ready));
            *samples.front().unwrap_or(&(now, answered, ready))
        };
        // Until a window's worth of samples exists, the run so far is the window.
        let (since, answered0, ready0) = if now - oldest.0 >= RATE_WINDOW {
            oldest
        } else {
            (c.started, 0, 0)
        };
        let span = (now - since).as_secs_f64();
        if span > 0.0 {
            snap.saves_per_second = (answered - answered0) as f64 / span;
            snap.ready_per_second = (ready - ready0) as f64 / span;
        }
        let left = snap.total.saturating_sub(ready + snap.failed);
        if left == 0 && snap.total > 0 {
            snap.eta = Some(Duration::ZERO);
        } else if snap.ready_per_second > 0.0 {
            snap.eta = Some(Duration::from_secs_f64(left as f64 / snap.ready_per_second));
        }
        snap
    }
}

/// A bulk run's counts at one moment. Its `Display` is one line for a terminal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// Media in the run (0 until known).
    pub total: u64,
    /// Saved and queued to warm by this run.
    pub saved: u64,
    /// Warm before this run: nothing stored, nothing queued.
    pub skipped: u64,
    /// Answered from the file index, without reading the file (some of `saved` and
    /// `skipped`).
    pub skipped_by_index: u64,
    /// Read and hashed.
    pub hashed: u64,
    /// Saved and not yet ready nor failed.
    pub warming: u64,
    /// With a file_id: `skipped` plus those warmed by this run.
    pub ready: u64,
    /// Failed to save or to warm.
    pub failed: u64,
    /// Since the run started.
    pub elapsed: Duration,
    /// Saves answered a second, over the last 30 s.
    pub saves_per_second: f64,
    /// Media becoming ready a second, over the last 30 s.
    pub ready_per_second: f64,
    /// At the recent pace, until every media is ready or failed; `None` while nothing has
    /// become ready in the window.
    pub eta: Option<Duration>,
}

impl fmt::Display for ProgressSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ready, {} warming, {} failed | saved {} ({:.1}/s) | ready {:.1}/s | ETA ",
            self.ready,
            self.total,
            self.warming,
            self.failed,
            self.saved + self.skipped,
            self.saves_per_second,
            self.ready_per_second,
        )?;
        match self.eta {
            Some(eta) => {
                let s = eta.as_secs();
                write!(f, "{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            }
            None => f.write_str("?"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{BotId, MediaKey, MediaKind, Sha256};

    fn saved(already_warm: bool, hashed: bool) -> Saved<()> {
        let key = MediaKey::new(BotId::new("b").unwrap(), Sha256::of(b"x"), MediaKind::Photo);
        Saved {
            tag: (),
            result: Ok(key),
            already_warm,
            hashed,
            elapsed: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counts_rates_over_the_last_30_seconds_and_an_eta_at_that_pace() {
        let p = Progress::new();
        p.set_total(100);
        assert_eq!(p.snapshot().eta, None, "nothing ready yet: no ETA");
        for _ in 0..4 {
            p.record_save(&saved(true, false));
        }
        for _ in 0..76 {
            p.record_save(&saved(false, true));
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..6 {
            p.record_ready();
        }
        let s = p.snapshot();
        assert_eq!((s.total, s.saved, s.skipped, s.ready), (100, 76, 4, 10));
        assert_eq!(
            (s.warming, s.failed, s.hashed, s.skipped_by_index),
            (70, 0, 76, 4)
        );
        assert!((s.ready_per_second - 1.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.eta, Some(Duration::from_secs(90)));

        // 60 more in the next 30 s: the pace is that window's (2/s), not the run's (1.75/s).
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..59 {
            p.record_ready();
        }
        p.record_failed();
        let s = p.snapshot();
        assert_eq!((s.ready, s.failed, s.warming), (69, 1, 10));
        assert!((s.ready_per_second - 59.0 / 30.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.eta, Some(Duration::from_secs_f64(30.0 / (59.0 / 30.0))));
        let line = s.to_string();
        assert!(
            line.starts_with("69/100 ready, 10 warming, 1 failed"),
            "{line}"
        );
    }
}
