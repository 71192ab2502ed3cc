//! The engine's own counters and latency samples, mirrored to the `metrics` facade.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::queue::QueueDepth;

/// Latency samples kept per histogram: the most recent ones, enough for a stable p99.
const SAMPLES: usize = 8192;

/// The seed's metric names and ours, as recorded through the [`metrics`] facade.
pub mod names {
    /// Histogram: jobs claimed in one dispatch round (the seed's name).
    pub const BATCH_SIZE: &str = "media_prewarm_batch_size";
    /// Gauge: uploads running now (the seed's name).
    pub const ACTIVE_WORKERS: &str = "media_prewarm_active_workers";
    /// Gauge: running uploads over the concurrency limit, 0 to 1 (the seed's name).
    pub const QUEUE_UTILIZATION: &str = "media_prewarm_queue_utilization";
    /// Counter: dispatch rounds that found every worker busy (the seed's name).
    pub const CONCURRENCY_BLOCKED: &str = "media_prewarm_concurrency_blocked";
    /// Gauge: jobs waiting to be claimed.
    pub const QUEUE_SIZE: &str = "media_prewarm_queue_size";
    /// Counter: media warmed (file_id stored).
    pub const WARMED: &str = "media_prewarm_warmed_total";
    /// Counter: media that failed for good.
    pub const FAILED: &str = "media_prewarm_failed_total";
    /// Counter: attempts that will be retried (labelled `reason`: `rate_limited` or `error`).
    pub const RETRIED: &str = "media_prewarm_retried_total";
    /// Counter: uploads started.
    pub const UPLOADS: &str = "media_prewarm_uploads_total";
    /// Counter: bytes written to the store (new objects only).
    pub const STORED_BYTES: &str = "media_prewarm_stored_bytes_total";
    /// Counter: file_id lookups answered from the cache.
    pub const CACHE_HITS: &str = "media_cache_hits_total";
    /// Counter: file_id lookups that missed.
    pub const CACHE_MISSES: &str = "media_cache_misses_total";
    /// Histogram (seconds): from queueing to file_id stored.
    pub const TIME_TO_READY: &str = "media_prewarm_time_to_ready_seconds";
    /// Histogram (seconds): from a push to its upload starting.
    pub const DISPATCH_DELAY: &str = "media_prewarm_dispatch_delay_seconds";
    /// Histogram (seconds, labelled `via`: `file_id` or `upload`): a cache-first send to a
    /// user ([`send_cached`](crate::send_cached)), from its call to Telegram's answer, waits
    /// for a warm in flight and a re-warm after a rejected file_id included: what the bot's
    /// users feel.
    pub const SEND_LATENCY: &str = "media_prewarm_send_latency_seconds";
    /// Counter: cache-first sends that failed (labelled `reason`: `rate_limited` or `error`).
    pub const SEND_FAILURES: &str = "media_prewarm_send_failures_total";
}

/// How a cache-first send to a user went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// By the cached file_id.
    FileId,
    /// By uploading the bytes (no file_id in time).
    Upload,
}

/// Percentiles of a latency distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples the figures are over.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// A point-in-time view of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Jobs in each queue state.
    pub queue: QueueDepth,
    /// Uploads running now.
    pub in_flight: u64,
    /// Media warmed by this engine.
    pub warmed: u64,
    /// Media that failed for good in this engine.
    pub failed: u64,
    /// Attempts retried after an error (rate limits not counted).
    pub retried: u64,
    /// Attempts paused by a rate limit.
    pub rate_limited: u64,
    /// Uploads started.
    pub uploads: u64,
    /// Bytes written to the store by saves (objects already there cost nothing).
    pub stored_bytes: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Lookups that missed.
    pub cache_misses: u64,
    /// Queueing to file_id stored, over recent media.
    pub time_to_ready: Percentiles,
    /// Push to upload start, over recent jobs pushed by this engine.
    pub dispatch_delay: Percentiles,
    /// Cache-first sends to users that went out by file_id.
    pub sent_by_file_id: u64,
    /// Cache-first sends to users that uploaded the bytes (no file_id in time).
    pub sent_by_upload: u64,
    /// Cache-first sends to users that failed.
    pub send_failures: u64,
    /// Call to Telegram's answer, over recent successful cache-first sends of either kind.
    pub send_latency: Percentiles,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) in_flight: AtomicU64,
    pub(crate) warmed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) uploads: AtomicU64,
    pub(crate) stored_bytes: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) sent_by_file_id: AtomicU64,
    pub(crate) sent_by_upload: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    time_to_ready: Samples,
    dispatch_delay: Samples,
    send_latency: Samples,
}

#[derive(Debug, Default)]
struct Samples(Mutex<VecDeque<Duration>>);

impl Samples {
    fn record(&self, d: Duration) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back(d);
    }

    fn percentiles(&self) -> Percentiles {
        let mut v: Vec<Duration> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            count: v.len() as u64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

fn bump(counter: &AtomicU64, name: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(name).increment(1);
}

impl Metrics {
    pub(crate) fn cache_hit(&self) {
        bump(&self.cache_hits, names::CACHE_HITS);
    }

    pub(crate) fn cache_miss(&self) {
        bump(&self.cache_misses, names::CACHE_MISSES);
    }

    pub(crate) fn upload_started(&self) {
        bump(&self.uploads, names::UPLOADS);
    }

    pub(crate) fn stored(&self, bytes: u64) {
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!(names::STORED_BYTES).increment(bytes);
    }

    pub(crate) fn warmed(&self, time_to_ready: Duration) {
        bump(&self.warmed, names::WARMED);
        self.time_to_ready.record(time_to_ready);
        metrics::histogram!(names::TIME_TO_READY).record(time_to_ready.as_secs_f64());
    }

    pub(crate) fn failed(&self) {
        bump(&self.failed, names::FAILED);
    }

    pub(crate) fn retried(&self, rate_limited: bool) {
        if rate_limited {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(names::RETRIED, "reason" => "rate_limited").increment(1);
        } else {
            self.retried.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(names::RETRIED, "reason" => "error").increment(1);
        }
    }

    pub(crate) fn dispatched(&self, delay: Duration) {
        self.dispatch_delay.record(delay);
        metrics::histogram!(names::DISPATCH_DELAY).record(delay.as_secs_f64());
    }

    /// A cache-first send that went out, by file_id or by upload, after `latency`.
    pub(crate) fn sent(&self, via: Via, latency: Duration) {
        let (counter, via) = match via {
            Via::FileId => (&self.sent_by_file_id, "file_id"),
            Via::Upload => (&self.sent_by_upload, "upload"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.send_latency.record(latency);
        metrics::histogram!(names::SEND_LATENCY, "via" => via).record(latency.as_secs_f64());
    }

    /// A cache-first send that failed.
    pub(crate) fn send_failed(&self, rate_limited: bool) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
        let reason = if rate_limited {
            "rate_limited"
        } else {
            "error"
        };
        metrics::counter!(names::SEND_FAILURES, "reason" => reason).increment(1);
    }

    pub(crate) fn workers(&self, active: u64, concurrency: usize) {
        self.in_flight.store(active, Ordering::Relaxed);
        metrics::gauge!(names::ACTIVE_WORKERS).set(active as f64);
        metrics::gauge!(names::QUEUE_UTILIZATION).set(active as f64 / concurrency.max(1) as f64);
    }

    pub(crate) fn batch(&self, size: usize) {
        metrics::histogram!(names::BATCH_SIZE).record(size as f64);
    }

    pub(crate) fn blocked(&self) {
        metrics::counter!(names::CONCURRENCY_BLOCKED).increment(1);
    }

    pub(crate) fn snapshot(&self, queue: QueueDepth) -> MetricsSnapshot {
        metrics::gauge!(names::QUEUE_SIZE).set(queue.queued as f64);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            queue,
            in_flight: get(&self.in_flight),
            warmed: get(&self.warmed),
            failed: get(&self.failed),
            retried: get(&self.retried),
            rate_limited: get(&self.rate_limited),
            uploads: get(&self.uploads),
            stored_bytes: get(&self.stored_bytes),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            time_to_ready: self.time_to_ready.percentiles(),
            dispatch_delay: self.dispatch_delay.percentiles(),
            sent_by_file_id: get(&self.sent_by_file_id),
            sent_by_upload: get(&self.sent_by_upload),
            send_failures: get(&self.send_failures),
            send_latency: self.send_latency.percentiles(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Samples::default();
        for ms in 1..=100 {
            s.record(Duration::from_millis(ms));
        }
        let p = s.percentiles();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p95, Duration::from_millis(95));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(Samples::default().percentiles(), Percentiles::default());
    }
}
