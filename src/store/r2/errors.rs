//! What went wrong with an S3 request: the retry policy, one attempt's failure, and the
//! public [`Error`] it becomes (naming the object and what to check, never a secret).

use std::time::Duration;

use reqwest::StatusCode;

use super::client::Client;
use crate::error::Error;

/// When and how often to retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    /// The longest a request may take over all its attempts and waits.
    pub(crate) max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Full jitter (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>):
    /// a uniform wait in `0..=min(max, base * 2^(attempt-1))`, so that clients that failed
    /// together do not retry together. A server's `Retry-After` is honoured as sent: retrying
    /// sooner would only be refused again.
    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let jittered = exp.mul_f64(fastrand::f64());
        match retry_after {
            Some(ra) => ra.max(jittered),
            None => jittered,
        }
    }

    /// The wait before the next attempt, or `None` when it would take the request past
    /// [`max_elapsed`](Self::max_elapsed): then the failure goes to the caller, a 429 as
    /// [`Error::RateLimited`] with the server's wait, which the engine's queue honours
    /// without holding a worker.
    pub(super) fn wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Option<Duration> {
        let wait = self.backoff(attempt, retry_after);
        (elapsed.saturating_add(wait) <= self.max_elapsed).then_some(wait)
    }
}

/// What went wrong with one attempt.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server answered with an error.
    Status {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout, a body cut short.
    Transport { message: String, timeout: bool },
}

impl Failure {
    pub(super) fn retryable(&self) -> bool {
        match self {
            Failure::Transport { .. } => true,
            Failure::Status { status, code, .. } => {
                // 501: R2 does not implement the request (chunked uploads): never retried.
                (status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED)
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            // A conditional write raced another one: S3 asks to try again.
                            | "ConditionalRequestConflict"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "RequestTimeout"
                            | "RequestTimeTooSkewed"
                    )
            }
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            Failure::Transport { .. } => None,
        }
    }

    pub(super) fn transport(e: reqwest::Error) -> Self {
        let timeout = e.is_timeout();
        // Our URLs hold no secret, but strip them anyway: errors never carry URLs.
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Failure::Transport { message, timeout }
    }

    pub(super) fn is_status(&self, s: StatusCode) -> bool {
        matches!(self, Failure::Status { status, .. } if *status == s)
    }

    /// The public error, naming the object or operation and what to check.
    pub(super) fn into_error(self, client: &Client, what: &str, key: &str) -> Error {
        let object = if key.is_empty() {
            format!("bucket {}", client.bucket)
        } else {
            format!("object {key} in bucket {}", client.bucket)
        };
        match self {
            Failure::Transport { message, timeout } => Error::Unavailable {
                message: format!(
                    "{what} {object} at {}: {}{message}",
                    client.base,
                    if timeout { "timed out: " } else { "" }
                ),
            },
            Failure::Status {
                status,
                code,
                message,
                retry_after,
            } => {
                let detail = if message.is_empty() {
                    format!("HTTP {}", status.as_u16())
                } else {
                    format!("HTTP {} {code}: {message}", status.as_u16())
                };
                match code.as_str() {
                    "NoSuchBucket" => Error::Config {
                        message: format!(
                            "bucket {} does not exist at {} ({detail}): check R2_BUCKET",
                            client.bucket, client.base
                        ),
                    },
                    "SignatureDoesNotMatch" => Error::Unauthorized {
                        message: format!(
                            "{what} {object}: the server refused our signature ({detail}): check \
                             R2_SECRET_ACCESS_KEY and the clock"
                        ),
                    },
                    "InvalidAccessKeyId" => Error::Unauthorized {
                        message: format!(
                            "{what} {object}: unknown access key ({detail}): check R2_ACCESS_KEY_ID"
                        ),
                    },
                    "RequestTimeTooSkewed" => Error::Unauthorized {
                        message: format!(
                            "{what} {object}: the clock is too far from the server's ({detail}): \
                             check the system clock"
                        ),
                    },
                    "NoSuchKey" | "NoSuchUpload" => Error::NotFound {
                        what: format!("{object} ({detail})"),
                    },
                    _ if status == StatusCode::NOT_FOUND => Error::NotFound { what: object },
                    "AccessDenied" => Error::Unauthorized {
                        message: format!(
                            "{what} {object}: access denied ({detail}): check that the API token \
                             in R2_ACCESS_KEY_ID may read and write bucket {}",
                            client.bucket
                        ),
                    },
                    // A HEAD answer has no body to say why.
                    _ if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED => {
                        Error::Unauthorized {
                            message: format!(
                                "{what} {object}: refused ({detail}): check R2_SECRET_ACCESS_KEY \
                                 and the clock, and that the API token in R2_ACCESS_KEY_ID may \
                                 read and write bucket {}",
                                client.bucket
                            ),
                        }
                    }
                    _ if code == "SlowDown" || status == StatusCode::TOO_MANY_REQUESTS => {
                        match retry_after {
                            Some(retry_after) => Error::RateLimited { retry_after },
                            None => Error::Unavailable {
                                message: format!("{what} {object}: rate limited ({detail})"),
                            },
                        }
                    }
                    _ if self_retryable(status, &code) => Error::Unavailable {
                        message: format!("{what} {object}: {detail}"),
                    },
                    _ => Error::Rejected {
                        message: format!("{what} {object}: {detail}"),
                    },
                }
            }
        }
    }
}

fn self_retryable(status: StatusCode, code: &str) -> bool {
    Failure::Status {
        status,
        code: code.to_owned(),
        message: String::new(),
        retry_after: None,
    }
    .retryable()
}

/// The text of the first `<tag>...</tag>` in `xml`, entities decoded.
pub(super) fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let raw: &'a str = &xml[start..end];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Escapes text for an XML element.
pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn default_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "NoSuchKey",
        StatusCode::PRECONDITION_FAILED => "PreconditionFailed",
        StatusCode::TOO_MANY_REQUESTS => "SlowDown",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        s if s.is_server_error() => "InternalError",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_as_sent_within_the_total_time() {
        let p = RetryPolicy {
            max_elapsed: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        // Longer than max_delay (5 s): waited as sent, not cut.
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(12)), Duration::ZERO),
            Some(Duration::from_secs(12))
        );
        // Past the total time: the caller gets the failure now instead.
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(12)), Duration::from_secs(20)),
            None
        );
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(3600)), Duration::ZERO),
            None
        );
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        };
        for attempt in 1..10 {
            let d = p.backoff(attempt, None);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(d <= cap, "{attempt}: {d:?}");
        }
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert!(p.backoff(1, Some(Duration::from_millis(500))) >= Duration::from_millis(500));
    }

    #[test]
    fn classifies_failures() {
        let st = |s: u16, c: &str| Failure::Status {
            status: StatusCode::from_u16(s).unwrap(),
            code: c.into(),
            message: String::new(),
            retry_after: None,
        };
        assert!(st(503, "SlowDown").retryable());
        assert!(st(500, "InternalError").retryable());
        assert!(st(200, "InternalError").retryable());
        assert!(st(429, "").retryable());
        assert!(!st(403, "SignatureDoesNotMatch").retryable());
        assert!(!st(403, "AccessDenied").retryable());
        assert!(!st(404, "NoSuchKey").retryable());
        assert!(!st(501, "NotImplemented").retryable());
        assert!(st(403, "RequestTimeTooSkewed").retryable());
    }

    #[test]
    fn xml() {
        let x = "<Error><Code>SlowDown</Code><Message>a &amp; b</Message></Error>";
        assert_eq!(xml_tag(x, "Code").as_deref(), Some("SlowDown"));
        assert_eq!(xml_tag(x, "Message").as_deref(), Some("a & b"));
        assert_eq!(xml_tag(x, "UploadId"), None);
        assert_eq!(xml_escape("a<&>\""), "a&lt;&amp;&gt;&quot;");
    }
}
