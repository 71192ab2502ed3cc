//! Counters of how the uploader sent media, for tests, dashboards and the load test.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a [`TelegramUploader`](super::TelegramUploader) sent media so far (shared by its
/// clones). Also exported through the `metrics` facade as `prewarm_telegram_sent_total`
/// (label `via`: `url` or `upload`) and `prewarm_telegram_url_fallbacks_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploaderStats {
    /// Media Telegram fetched by URL.
    pub sent_by_url: u64,
    /// Media sent as multipart uploads (the bytes through this process).
    pub sent_by_upload: u64,
    /// Sends by URL Telegram refused ("failed to get HTTP URL content", "wrong type of the
    /// web page content", ...), each followed by an upload.
    pub url_fallbacks: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    by_url: AtomicU64,
    by_upload: AtomicU64,
    url_fallbacks: AtomicU64,
}

impl Counters {
    pub(super) fn sent(&self, by_url: bool) {
        let (counter, via) = if by_url {
            (&self.by_url, "url")
        } else {
            (&self.by_upload, "upload")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("prewarm_telegram_sent_total", "via" => via).increment(1);
    }

    pub(super) fn url_fallback(&self) {
        self.url_fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("prewarm_telegram_url_fallbacks_total").increment(1);
    }

    pub(super) fn snapshot(&self) -> UploaderStats {
        UploaderStats {
            sent_by_url: self.by_url.load(Ordering::Relaxed),
            sent_by_upload: self.by_upload.load(Ordering::Relaxed),
            url_fallbacks: self.url_fallbacks.load(Ordering::Relaxed),
        }
    }
}
