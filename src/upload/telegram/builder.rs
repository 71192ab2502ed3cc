//! [`TelegramUploaderBuilder`]: the uploader's configuration, from code or the environment.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client::{Client, Token};
use super::pool::Bench;
use super::ratelimit::{Limiter, RateLimits};
use super::{Inner, PUBLIC_API, TelegramUploader, stats};
use crate::error::{Error, Result};
use crate::media::{BotId, SizeLimits};
use crate::upload::{RateBudget, UploadJournal};

/// Builds a [`TelegramUploader`]. Setters never fail; [`build`](Self::build) validates.
///
/// ```
/// use prewarm::{SizeLimits, TelegramUploader};
///
/// let uploader = TelegramUploader::builder()
///     .with_token("123456:not-a-real-token")
///     .with_api_base("http://127.0.0.1:8081") // a local Bot API server
///     .with_size_limits(SizeLimits::local_server())
///     .with_warmup_chats([-1001234567890, -1001234567891])
///     .build()?;
/// assert_eq!(uploader.warmup_chats().len(), 2);
/// assert!(!format!("{uploader:?}").contains("not-a-real-token"));
/// # Ok::<(), prewarm::Error>(())
/// ```
#[must_use]
pub struct TelegramUploaderBuilder {
    token: Option<Token>,
    api_base: String,
    bot: Option<String>,
    chats: Vec<i64>,
    limits: SizeLimits,
    rate_limits: RateLimits,
    delete_warmup: bool,
    urls: bool,
    timeout: Duration,
    env_errors: Vec<String>,
    budget: Option<Arc<dyn RateBudget>>,
    journal: Option<Arc<dyn UploadJournal>>,
}

impl Default for TelegramUploaderBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TelegramUploaderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramUploaderBuilder")
            .field("token", &self.token.as_ref().map(|_| "******"))
            .field("api_base", &self.api_base)
            .field("chats", &self.chats)
            .finish_non_exhaustive()
    }
}

impl TelegramUploaderBuilder {
    /// The defaults: the public Bot API, its size limits, [`RateLimits::default`], URL uploads
    /// on, warm-up messages kept, a 5-minute timeout per request. A token and at least one
    /// warm-up chat are required.
    pub fn new() -> Self {
        Self {
            token: None,
            api_base: PUBLIC_API.to_owned(),
            bot: None,
            chats: Vec::new(),
            limits: SizeLimits::bot_api(),
            rate_limits: RateLimits::default(),
            delete_warmup: false,
            urls: true,
            timeout: Duration::from_secs(300),
            env_errors: Vec::new(),
            budget: None,
            journal: None,
        }
    }

    /// The defaults, then `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_BASE` and
    /// `MEDIA_WARMUP_CHAT_IDS` where set. A malformed value is reported by
    /// [`build`](Self::build).
    pub fn from_env() -> Self {
        Self::from_lookup(&crate::env::process)
    }

    /// [`from_env`](Self::from_env) over any lookup (tests pass a map).
    pub(crate) fn from_lookup(get: crate::env::Lookup<'_>) -> Self {
        let mut builder = Self::new();
        let read = |builder: &mut Self, name: &str| match get(name) {
            Ok(value) => value,
            Err(e) => {
                builder.env_errors.push(e.to_string());
                None
            }
        };
        if let Some(token) = read(&mut builder, "TELEGRAM_BOT_TOKEN") {
            builder = builder.with_token(token);
        }
        if let Some(base) = read(&mut builder, "TELEGRAM_API_BASE") {
            builder = builder.with_api_base(base);
        }
        if let Some(list) = read(&mut builder, "MEDIA_WARMUP_CHAT_IDS") {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.parse::<i64>() {
                    Ok(id) => builder.chats.push(id),
                    Err(_) => builder.env_errors.push(format!(
                        "MEDIA_WARMUP_CHAT_IDS holds {item:?}, which is not a chat id (expected a \
                         comma list of numbers such as -1001234567890)"
                    )),
                }
            }
        }
        if let Some(share) = read(&mut builder, "PREWARM_USER_SHARE") {
            match share.trim().parse::<u32>() {
                Ok(percent) if percent <= 99 => {
                    builder.rate_limits = builder.rate_limits.with_user_share(percent);
                }
                _ => builder.env_errors.push(format!(
                    "PREWARM_USER_SHARE is {share:?}: expected the percent of the bot-wide rate                      that warms leave to sends to users, a whole number from 0 to 99"
                )),
            }
        }
        builder
    }

    /// The bot token, as BotFather gives it (`<bot id>:<secret>`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token.into()));
        self
    }

    /// The journal of warm-up sends (default none): with one that survives the process,
    /// a media whose upload was cut short by a crash is looked for in its warm-up chat
    /// instead of being uploaded again. `from_env` gives the queue's database.
    pub fn with_journal(mut self, journal: Arc<dyn UploadJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The Bot API's base URL (default `https://api.telegram.org`); a local Bot API server's
    /// address, or a fake's in tests.
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The name the bot's file_ids are kept under (default: the id before the token's `:`).
    pub fn with_bot_id(mut self, bot: impl Into<String>) -> Self {
        self.bot = Some(bot.into());
        self
    }

    /// The warm-up chats, where media are sent to obtain their file_ids.
    pub fn with_warmup_chats(mut self, chats: impl IntoIterator<Item = i64>) -> Self {
        self.chats = chats.into_iter().collect();
        self
    }

    /// Upload size limits (default the public Bot API's; [`SizeLimits::local_server`] for a
    /// local Bot API server).
    pub fn with_size_limits(mut self, limits: SizeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The rate limits to keep to.
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Deletes each warm-up message once its file_id is obtained (default off). The file_id
    /// stays valid.
    pub fn with_delete_warmup_messages(mut self, delete: bool) -> Self {
        self.delete_warmup = delete;
        self
    }

    /// Whether to let Telegram fetch media by URL when the source has one (default on).
    pub fn with_url_uploads(mut self, urls: bool) -> Self {
        self.urls = urls;
        self
    }

    /// The timeout of one request, upload included (default 5 minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The rate budget the sends draw from (default a [`MemoryBudget`](crate::upload::MemoryBudget)
    /// of this process). Give every process of a bot one shared budget
    /// (`db::PostgresBudget`) so that together they keep to the bot's limits, and a 429 seen
    /// by one pauses them all.
    pub fn with_rate_budget(mut self, budget: Arc<dyn RateBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Validates and builds the uploader. It sends nothing: call
    /// [`TelegramUploader::get_me`] to check the token.
    ///
    /// # Errors
    /// [`Error::Config`] naming every problem: no token or a malformed one, an API base that
    /// is not an http(s) URL, no warm-up chat, a malformed environment variable, a bot name
    /// [`BotId::new`] refuses. No message repeats the token.
    pub fn build(self) -> Result<TelegramUploader> {
        let mut problems = self.env_errors;
        let bot = match &self.token {
            None => {
                problems.push("no bot token: set TELEGRAM_BOT_TOKEN or call with_token".to_owned());
                None
            }
            Some(token) => match BotId::from_token(token.expose()) {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            },
        };
        let bot = match (&self.bot, bot) {
            (Some(name), _) => match BotId::new(name) {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            },
            (None, bot) => bot,
        };
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            problems.push(format!(
                "TELEGRAM_API_BASE {:?} is not an http(s) URL (expected e.g. https://api.telegram.org)",
                self.api_base
            ));
        }
        if self.chats.is_empty() {
            problems.push(
                "no warm-up chat: set MEDIA_WARMUP_CHAT_IDS or call with_warmup_chats".to_owned(),
            );
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build();
        let http = match http {
            Ok(http) => Some(http),
            Err(e) => {
                problems.push(format!("cannot build the HTTP client: {}", e.without_url()));
                None
            }
        };
        let (Some(bot), Some(token), Some(http), true) =
            (bot, self.token, http, problems.is_empty())
        else {
            return Err(Error::Config {
                message: problems.join("; "),
            });
        };
        // A bot's user id is its token's id part.
        let user = BotId::from_token(token.expose())
            .ok()
            .and_then(|id| id.as_str().parse().ok());
        let mut chats = self.chats;
        chats.dedup();
        let limiter = Limiter::new(bot.clone(), self.rate_limits, self.budget);
        Ok(TelegramUploader {
            inner: Arc::new(Inner {
                bot,
                user,
                client: Client::new(http, self.api_base, token),
                chats,
                limits: self.limits,
                limiter,
                delete_warmup: self.delete_warmup,
                urls: self.urls,
                bench: Bench::default(),
                stats: stats::Counters::default(),
                journal: self.journal,
                seen: super::recover::Seen::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::Uploader;

    #[test]
    fn build_names_every_problem_and_never_the_token() {
        let err = TelegramUploader::builder()
            .with_token("not-a-token-but-a-secret")
            .with_api_base("ftp://example.org")
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Config { .. }));
        assert!(text.contains("TELEGRAM_BOT_TOKEN"), "{text}");
        assert!(text.contains("TELEGRAM_API_BASE"), "{text}");
        assert!(text.contains("MEDIA_WARMUP_CHAT_IDS"), "{text}");
        assert!(!text.contains("not-a-token-but-a-secret"), "{text}");

        let err = TelegramUploader::builder().build().unwrap_err();
        assert!(err.to_string().contains("no bot token"), "{err}");
    }

    #[test]
    fn the_bot_id_comes_from_the_token_unless_named() {
        let up = TelegramUploader::builder()
            .with_token("4242:secret-part-of-the-token")
            .with_warmup_chats([1, 1, 2])
            .build()
            .unwrap();
        assert_eq!(up.bot().as_str(), "4242");
        assert_eq!(up.warmup_chats(), &[1, 2]);
        let debug = format!("{up:?}");
        assert!(!debug.contains("secret-part"), "{debug}");
        let named = TelegramUploader::builder()
            .with_token("4242:secret-part-of-the-token")
            .with_bot_id("shop_bot")
            .with_warmup_chats([1])
            .build()
            .unwrap();
        assert_eq!(named.bot().as_str(), "shop_bot");
    }

    #[test]
    fn the_user_share_comes_from_the_environment() {
        let env = |share: &'static str| {
            move |name: &str| -> Result<Option<String>> {
                Ok(match name {
                    "TELEGRAM_BOT_TOKEN" => Some("4242:secret".to_owned()),
                    "MEDIA_WARMUP_CHAT_IDS" => Some("1".to_owned()),
                    "PREWARM_USER_SHARE" => Some(share.to_owned()),
                    _ => None,
                })
            }
        };
        let builder = TelegramUploaderBuilder::from_lookup(&env("0"));
        assert_eq!(builder.rate_limits.user_share(), 0);
        builder.build().expect("valid");
        let builder = TelegramUploaderBuilder::from_lookup(&env("40"));
        assert_eq!(builder.rate_limits.user_share(), 40);
        for bad in ["100", "-1", "a quarter"] {
            let err = TelegramUploaderBuilder::from_lookup(&env(bad))
                .build()
                .unwrap_err();
            assert!(err.to_string().contains("PREWARM_USER_SHARE"), "{err}");
        }
        let default = TelegramUploaderBuilder::from_lookup(&|name: &str| {
            Ok((name == "TELEGRAM_BOT_TOKEN").then(|| "4242:secret".to_owned()))
        });
        assert_eq!(default.rate_limits.user_share(), 25);
    }

    #[test]
    fn scrub_removes_the_token_and_its_secret() {
        let token = Token::new("123:ABCDEFGHIJKLMNOP".to_owned());
        assert_eq!(
            token.scrub("GET /bot123:ABCDEFGHIJKLMNOP/getMe and ABCDEFGHIJKLMNOP"),
            "GET /bot******/getMe and ******"
        );
        assert_eq!(format!("{token:?}"), "******");
    }
}
