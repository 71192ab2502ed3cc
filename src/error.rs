//! The crate's one public error type.
//!
//! Backends keep private error types and convert into [`Error`], choosing the variant a caller
//! branches on. No variant carries a secret: clients strip bot tokens (which sit in Telegram's
//! URLs) and storage keys before they build an error.

use std::time::Duration;

use crate::media::{MediaKey, MediaKind};

/// A `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in prewarm, by what the caller can do about it.
///
/// Use [`Error::is_retryable`] and [`Error::retry_after`] rather than matching every variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A media with zero bytes: Telegram refuses it. Check the source of the bytes.
    #[error(
        "the {kind} is empty (0 bytes): Telegram refuses empty files; check where the bytes come from"
    )]
    EmptyMedia {
        /// The kind it was to be sent as.
        kind: MediaKind,
    },

    /// A media over its kind's upload limit.
    #[error(
        "the {kind} is {size} bytes, over the {limit}-byte limit for a {kind}: compress it, send it as \
         another kind, or use a local Bot API server"
    )]
    TooLarge {
        /// The kind it was to be sent as.
        kind: MediaKind,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// A kind name that is not one of the Bot API's media kinds.
    #[error(
        "unknown media kind {name:?}: expected one of photo, video, animation, document, audio, \
         voice, video_note, sticker"
    )]
    UnknownKind {
        /// The name given.
        name: String,
    },

    /// An object key that is not a safe relative path.
    #[error("invalid object key {key:?}: it {reason}")]
    InvalidKey {
        /// The key given (cut to 200 characters).
        key: String,
        /// The rule broken.
        reason: &'static str,
    },

    /// Some other argument that is malformed.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was malformed.
        what: &'static str,
        /// Why, and what is expected.
        reason: String,
    },

    /// Configuration that is missing or malformed (an environment variable, a builder field).
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and the expected form.
        message: String,
    },

    /// The object, job or media does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },

    /// The engine has no uploader for the media's bot.
    #[error(
        "no uploader is registered for bot {bot:?}: add one with PrewarmEngineBuilder::uploader"
    )]
    UnknownBot {
        /// The bot named by the media.
        bot: String,
    },

    /// The service refused our credentials (Telegram 401/403, S3 `AccessDenied`,
    /// `SignatureDoesNotMatch`). Not retried.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The service's reason, with what to check.
        message: String,
    },

    /// The service refused the request itself (Telegram 400, a malformed upload, a chat that
    /// refuses the bot: "bot was blocked by the user", kicked, no rights). Not retried.
    #[error("rejected: {message}")]
    Rejected {
        /// The service's reason.
        message: String,
    },

    /// Telegram no longer accepts a file_id ("wrong file identifier"): invalidate and re-warm.
    #[error("Telegram rejected the file_id for {key}: {message}")]
    WrongFileId {
        /// The media whose file_id was rejected.
        key: MediaKey,
        /// Telegram's description.
        message: String,
    },

    /// Over a rate limit: try again after `retry_after`, not before.
    #[error("rate limited: retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },

    /// A transient failure (5xx, connection reset, timeout): retry with backoff.
    #[error("temporarily unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },

    /// A queue lease is no longer held: the job was reclaimed by another worker after the lease
    /// expired, or already finished. The stale worker's result is dropped.
    #[error("the lease on {key} is no longer held (reclaimed or finished)")]
    LeaseLost {
        /// The job's media.
        key: MediaKey,
    },

    /// Warming the media failed for good; the queue keeps it as a dead job with this reason.
    #[error("warming {key} failed: {reason}")]
    WarmFailed {
        /// The media.
        key: MediaKey,
        /// The last error.
        reason: String,
    },

    /// A wait ran past its deadline.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },

    /// The engine is shutting down and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,

    /// A local I/O error (file store, temporary files).
    #[error("I/O error {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// An error from a backend that fits no other variant.
    #[error("{backend} error: {message}")]
    Backend {
        /// The backend's name (`"postgres"`, `"r2"`, ...).
        backend: &'static str,
        /// What failed, secrets removed.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
}

impl Error {
    /// Whether the same call may succeed later: rate limits, transient outages, timeouts and
    /// retryable backend errors. Bad input, refused credentials and rejected requests are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The wait a server asked for, when it asked for one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifiers() {
        assert!(
            Error::RateLimited {
                retry_after: Duration::from_secs(3)
            }
            .is_retryable()
        );
        assert_eq!(
            Error::RateLimited {
                retry_after: Duration::from_secs(3)
            }
            .retry_after(),
            Some(Duration::from_secs(3))
        );
        assert!(
            !Error::Rejected {
                message: "x".into()
            }
            .is_retryable()
        );
        assert!(
            !Error::Unauthorized {
                message: "x".into()
            }
            .is_retryable()
        );
        assert!(
            Error::Unavailable {
                message: "x".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn too_large_names_the_fix() {
        let e = Error::TooLarge {
            kind: MediaKind::Photo,
            size: 11,
            limit: 10,
        };
        let s = e.to_string();
        assert!(
            s.contains("photo") && s.contains("11") && s.contains("10"),
            "{s}"
        );
    }
}
