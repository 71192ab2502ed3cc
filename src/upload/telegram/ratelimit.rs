//! The limiter of a [`TelegramUploader`](crate::upload::TelegramUploader): which chat a send
//! goes to and when, within the bot's [`RateBudget`], a cap on requests in flight per chat,
//! and the chats taken out of the pool.
//!
//! The buckets and pauses live in the budget: [`MemoryBudget`] in the process by default, or
//! a shared one (`db::PostgresBudget`) so that every process of a bot keeps to one budget.
//! What stays here is per process: requests in flight (a request already on the wire when a
//! 429 comes back would arrive inside the pause and prolong it, so a chat has one in flight
//! at a time), chats Telegram refused, and the waiting. A process asks its budget one
//! request at a time (an async mutex): its waiting workers cost one budget call per wake-up
//! between them, not one each.
//!
//! # 429s
//! Telegram answers the same "Too Many Requests: retry after N" whether the chat's limit or
//! the bot's was hit. Every 429 therefore pauses the chat *and the bot* for exactly the
//! `retry_after` given, in the budget, before any other send leaves: a bot-wide ban is
//! honoured by every chat (of every process, with a shared budget) from its first 429, and a
//! chat-only one costs the other chats at most `retry_after`, once. Sends to users wait no
//! longer than Telegram asked: the pause ends when `retry_after` does, and a send that may not
//! wait that long answers [`Error::RateLimited`](crate::Error::RateLimited) at once.
//!
//! # Groups count arrivals
//! A group's limit is 20 messages in any minute, counted as they reach Telegram; the budget
//! counts a send when its slot is taken. Those agree while requests are small. A large
//! upload reaches Telegram when its body has been sent, which can be long after its slot was
//! taken. The budget would then let 20 later sends through within a minute of that late
//! arrival. So, in this process, a group's next send also waits one interval after the
//! previous upload's body was sent ([`Permit::arrived`]). Private chats keep their burst.
//!
//! # What is charged
//! - A send: one slot of the chat and of the bot; a warm also one of the warms' share of the
//!   bot-wide rate ([`RateLimits::with_user_share`]), so that warms leave sends to users room.
//! - An album: one slot per item, taken at once (Telegram has not documented how albums
//!   count; per item is the safe reading).
//! - `deleteMessage` (deleting a warm-up message): one bot-wide slot, none of the chat's,
//!   and never inside a pause. A delete is not a message, and the chat limits are message
//!   limits; the Bot API's maintainers say delete limits are "high enough to cover all
//!   reasonable usages" (tdlib/telegram-bot-api#572), so charging the chat would halve
//!   warming for nothing, while the bot-wide slot keeps the total number of requests within
//!   the bot's rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::Error;
use crate::media::BotId;
use crate::upload::budget::{BudgetRequest, Grant, MemoryBudget, Rate, RateBudget};

/// The rate limits a [`TelegramUploader`](crate::upload::TelegramUploader) keeps to, shared by
/// all its callers.
///
/// The defaults follow Telegram's published limits: 30 messages a second per bot, one a
/// second per private chat (bursts of 3), 20 a minute per group or channel (negative chat
/// ids), and one request in flight per chat (a request already on the wire when a 429 comes
/// back would arrive inside the pause and prolong it). Warms leave a quarter of the bot-wide
/// rate to sends to users ([`with_user_share`](Self::with_user_share)).
///
/// ```
/// use std::time::Duration;
/// use prewarm::upload::{Rate, RateLimits};
///
/// let limits = RateLimits::default()
///     .with_bot(Rate::new(20, Duration::from_secs(1)))
///     .with_max_wait(Duration::from_secs(10));
/// assert_eq!(limits.bot().interval(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    bot: Rate,
    private_chat: Rate,
    group_chat: Rate,
    in_flight_per_chat: u32,
    max_wait: Duration,
    user_share: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            bot: Rate::new(30, Duration::from_secs(1)).with_burst(30),
            private_chat: Rate::new(1, Duration::from_secs(1)).with_burst(3),
            group_chat: Rate::new(20, Duration::from_secs(60)).with_burst(1),
            in_flight_per_chat: 1,
            max_wait: Duration::from_secs(30),
            user_share: DEFAULT_USER_SHARE,
        }
    }
}

impl RateLimits {
    /// No limits worth the name (a million a second): for a local Bot API server in tests.
    pub fn unlimited() -> Self {
        let fast = Rate::new(1_000_000, Duration::from_secs(1)).with_burst(1_000_000);
        Self {
            bot: fast,
            private_chat: fast,
            group_chat: fast,
            in_flight_per_chat: 1024,
            max_wait: Duration::from_secs(30),
            user_share: DEFAULT_USER_SHARE,
        }
    }

    /// The bot-wide rate.
    #[must_use]
    pub fn with_bot(mut self, rate: Rate) -> Self {
        self.bot = rate;
        self
    }

    /// The rate per private chat (positive chat ids).
    #[must_use]
    pub fn with_private_chat(mut self, rate: Rate) -> Self {
        self.private_chat = rate;
        self
    }

    /// The rate per group, supergroup or channel (negative chat ids).
    #[must_use]
    pub fn with_group_chat(mut self, rate: Rate) -> Self {
        self.group_chat = rate;
        self
    }

    /// Requests in flight at once per chat (at least 1).
    #[must_use]
    pub fn with_in_flight_per_chat(mut self, n: u32) -> Self {
        self.in_flight_per_chat = n.max(1);
        self
    }

    /// How long an upload waits for a chat's budget before it answers
    /// [`Error::RateLimited`](crate::Error::RateLimited) and frees its worker.
    #[must_use]
    pub fn with_max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The share of the bot-wide rate, in percent (0 to 100, default 25), that warms leave to
    /// sends to users: warms draw at most the rest of it, so that a bot warming a backlog
    /// still answers its users at once. Sends to users may use the whole rate. 100 is taken
    /// as 99: warms always keep at least one send per period.
    #[must_use]
    pub fn with_user_share(mut self, percent: u32) -> Self {
        self.user_share = percent.min(99);
        self
    }

    /// The share of the bot-wide rate, in percent, that warms leave to sends to users.
    pub fn user_share(&self) -> u32 {
        self.user_share
    }

    /// The part of the bot-wide rate warms may use.
    pub fn warm_share(&self) -> Rate {
        self.bot.scaled(f64::from(100 - self.user_share) / 100.0)
    }

    /// The bot-wide rate.
    pub fn bot(&self) -> Rate {
        self.bot
    }

    /// The rate for `chat`.
    pub fn chat(&self, chat: i64) -> Rate {
        if chat < 0 {
            self.group_chat
        } else {
            self.private_chat
        }
    }

    /// Requests in flight at once per chat.
    pub fn in_flight_per_chat(&self) -> u32 {
        self.in_flight_per_chat
    }

    /// How long an upload waits for budget.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

/// Warms leave this share (percent) of the bot-wide rate to sends to users by default.
const DEFAULT_USER_SHARE: u32 = 25;

/// What a send is, for the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A warm of `cost` messages (an album's items) to a warm-up chat.
    Warm(u32),
    /// A message to a user's chat.
    User,
    /// A request that is not a message (`deleteMessage`).
    Delete,
}

#[derive(Debug, Default)]
struct ChatState {
    in_flight: u32,
    /// Set when the chat cannot be used (removed, missing): the reason.
    disabled: Option<String>,
    /// A group's next send waits for this: one interval after the previous send's body
    /// reached Telegram (see [`Permit::arrived`]).
    cool_until: Option<Instant>,
}

/// Why no chat was handed out.
#[derive(Debug)]
pub(crate) enum Denied {
    /// Every candidate is paused or busy past the wait allowed: try again after this long.
    Wait(Duration),
    /// Every candidate chat is disabled; the last reason.
    NoChat(String),
    /// The budget could not be asked (a shared budget's database is unreachable).
    Budget(Error),
}

/// The limiter of one bot's uploader, shared by its clones.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    bot: BotId,
    limits: RateLimits,
    budget: Arc<dyn RateBudget>,
    chats: Arc<Mutex<HashMap<i64, ChatState>>>,
    /// One budget call at a time per process.
    asking: Arc<tokio::sync::Mutex<()>>,
    changed: Arc<Notify>,
}

/// A chat's send slot: the request may go now. Dropping it ends the request's time in flight.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Limiter,
    pub(crate) chat: i64,
    arrived: Option<Instant>,
}

impl Permit {
    /// The request's body was all sent at `at`: Telegram counts the message about then, not
    /// when the slot was taken. A group (20 in any minute, counted as messages arrive) then
    /// takes its next send one interval after `at` at the earliest: a large upload that
    /// arrived late would otherwise share a minute with 20 later sends that the budget,
    /// counting from the slots taken, let through.
    pub(crate) fn arrived(&mut self, at: Instant) {
        self.arrived = Some(at);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut chats = self.limiter.lock();
        if let Some(c) = chats.get_mut(&self.chat) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if let Some(at) = self.arrived.filter(|_| self.chat < 0) {
                let until = at + self.limiter.limits.chat(self.chat).interval();
                c.cool_until = Some(c.cool_until.map_or(until, |u| u.max(until)));
            }
            let cooling = c.cool_until.is_some_and(|u| u > Instant::now());
            if c.in_flight == 0 && c.disabled.is_none() && !cooling {
                chats.remove(&self.chat);
            }
        }
        drop(chats);
        self.limiter.changed.notify_waiters();
    }
}

/// What the local state allows of the candidates.
enum Local {
    /// These chats, least busy first.
    Open(Vec<(i64, Rate)>),
    /// Every open chat has its requests in flight.
    Busy,
    /// No chat is free now, and some wait for a group's interval after their last arrival:
    /// the first until this instant (a busy one may free up before).
    Cooling(Instant),
    /// No chat is open: the last reason.
    NoChat(String),
}

impl Limiter {
    pub(crate) fn new(bot: BotId, limits: RateLimits, budget: Option<Arc<dyn RateBudget>>) -> Self {
        Self {
            bot,
            limits,
            budget: budget.unwrap_or_else(|| Arc::new(MemoryBudget::new())),
            chats: Arc::new(Mutex::new(HashMap::new())),
            asking: Arc::new(tokio::sync::Mutex::new(())),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, ChatState>> {
        // Every update is a few field writes: a poisoned lock still holds a usable state.
        self.chats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a send slot in one of `chats` (the first with budget, earliest first, ties to
    /// the least busy), up to the configured wait, or `wait` when shorter.
    pub(crate) async fn acquire(
        &self,
        chats: &[i64],
        purpose: Purpose,
        wait: Option<Duration>,
    ) -> Result<Permit, Denied> {
        let wait = wait.map_or(self.limits.max_wait, |w| w.min(self.limits.max_wait));
        let deadline = Instant::now() + wait;
        loop {
            // Registered before the look, so that a release between the look and the wait
            // still wakes us.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let asking = self.asking.lock().await;
                match self.local(chats, purpose) {
                    Local::NoChat(reason) => return Err(Denied::NoChat(reason)),
                    Local::Busy => None,
                    Local::Cooling(at) => {
                        if at > deadline {
                            return Err(Denied::Wait(at.saturating_duration_since(Instant::now())));
                        }
                        Some(at)
                    }
                    Local::Open(open) => {
                        let request = self.request(&open, purpose);
                        let grant = self.budget.take(&request).await.map_err(Denied::Budget)?;
                        match grant {
                            Grant::Go(chat) => {
                                self.lock().entry(chat).or_default().in_flight += 1;
                                drop(asking);
                                return Ok(Permit {
                                    limiter: self.clone(),
                                    chat,
                                    arrived: None,
                                });
                            }
                            Grant::Wait(d) => {
                                let at = Instant::now() + d;
                                if at > deadline {
                                    return Err(Denied::Wait(d));
                                }
                                Some(at)
                            }
                        }
                    }
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut changed => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            return Err(Denied::Wait(Duration::from_secs(1)));
                        }
                        () = &mut changed => {}
                    }
                }
            }
        }
    }

    fn local(&self, chats: &[i64], purpose: Purpose) -> Local {
        let state = self.lock();
        let now = Instant::now();
        let mut open = Vec::with_capacity(chats.len());
        let mut any_open = false;
        let mut cooling: Option<Instant> = None;
        let mut last_reason = None;
        for &chat in chats {
            let (in_flight, disabled, cool_until) = state.get(&chat).map_or((0, None, None), |c| {
                (c.in_flight, c.disabled.as_ref(), c.cool_until)
            });
            if let Some(reason) = disabled {
                last_reason = Some(reason.clone());
                continue;
            }
            any_open = true;
            // A delete follows its own send: it may share the chat's slot in flight, and it
            // is not a message (no group interval).
            if purpose == Purpose::Delete {
                open.push((in_flight, chat));
                continue;
            }
            if in_flight >= self.limits.in_flight_per_chat {
                continue;
            }
            if let Some(until) = cool_until.filter(|&u| u > now) {
                cooling = Some(cooling.map_or(until, |c| c.min(until)));
                continue;
            }
            open.push((in_flight, chat));
        }
        if !any_open {
            return Local::NoChat(last_reason.unwrap_or_else(|| "no warm-up chat".to_owned()));
        }
        if open.is_empty() {
            // A busy chat frees up with a wake-up; a cooling one with time.
            return match cooling {
                Some(at) => Local::Cooling(at),
                None => Local::Busy,
            };
        }
        // Stable: among equally busy chats the caller's order holds.
        open.sort_by_key(|&(in_flight, _)| in_flight);
        Local::Open(
            open.into_iter()
                .map(|(_, chat)| (chat, self.limits.chat(chat)))
                .collect(),
        )
    }

    fn request<'a>(&'a self, chats: &'a [(i64, Rate)], purpose: Purpose) -> BudgetRequest<'a> {
        let request = BudgetRequest::new(&self.bot, self.limits.bot(), chats);
        match purpose {
            Purpose::Warm(cost) => request.warm(self.limits.warm_share()).cost(cost),
            Purpose::User => request,
            Purpose::Delete => request.charge_chat(false),
        }
    }

    /// Records a 429 from `chat`: the chat and the bot pause for `retry_after`, in the budget
    /// (on every process sharing it).
    pub(crate) async fn pause(&self, chat: i64, retry_after: Duration) -> Result<(), Error> {
        let result = self.budget.pause(&self.bot, chat, retry_after).await;
        self.changed.notify_waiters();
        result
    }

    /// Takes `chat` out of the pool for good, with the reason.
    pub(crate) fn disable(&self, chat: i64, reason: String) {
        self.lock().entry(chat).or_default().disabled = Some(reason);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::default()
            .with_bot(Rate::new(100, Duration::from_secs(1)).with_burst(100))
            .with_private_chat(Rate::new(1, Duration::from_secs(1)).with_burst(2))
            .with_group_chat(Rate::new(20, Duration::from_secs(60)))
            .with_in_flight_per_chat(8)
            .with_max_wait(Duration::from_secs(60))
    }

    fn limiter(limits: RateLimits) -> Limiter {
        Limiter::new(BotId::new("limits").expect("bot"), limits, None)
    }

    const WARM: Purpose = Purpose::Warm(1);

    async fn go(limiter: &Limiter, chats: &[i64], purpose: Purpose) -> i64 {
        limiter
            .acquire(chats, purpose, None)
            .await
            .expect("a permit")
            .chat
    }

    /// A group counts messages as they arrive: a send whose body reached Telegram late (a
    /// large upload) holds the group's next send for an interval after that arrival, where
    /// the budget alone, counting from the slot taken, would let it go sooner. A private
    /// chat keeps its pace.
    #[tokio::test(start_paused = true)]
    async fn a_group_waits_an_interval_after_a_late_arrival() {
        let limiter = limiter(limits().with_in_flight_per_chat(1));
        let start = Instant::now();
        let mut first = limiter.acquire(&[-5], WARM, None).await.expect("a permit");
        tokio::time::sleep(Duration::from_secs(10)).await;
        first.arrived(Instant::now());
        drop(first);
        go(&limiter, &[-5], WARM).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(13) && waited <= Duration::from_millis(13_001),
            "3 s after the arrival at 10 s, not at once: {waited:?}"
        );
        let start = Instant::now();
        let mut private = limiter.acquire(&[7], WARM, None).await.expect("a permit");
        private.arrived(Instant::now());
        drop(private);
        go(&limiter, &[7], WARM).await;
        assert!(
            start.elapsed() <= Duration::from_millis(251),
            "a private chat's burst is kept: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_chat_sends_its_burst_then_one_per_interval() {
        let limiter = limiter(limits());
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            go(&limiter, &[7], WARM).await;
            at.push(start.elapsed());
        }
        // A burst of 2 (the second a margin of 250 ms inside the burst's edge), then 1/s.
        assert_eq!(
            at,
            [0, 250, 1250, 2250].map(Duration::from_millis).to_vec(),
            "burst of 2 then 1/s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturated_bucket_keeps_its_rate_and_a_margin_before_the_burst_edge() {
        // 30 a second, bursts of 30: the tolerance is 29 intervals (967 ms), of which the
        // limiter keeps a quarter (241 ms) as a margin.
        let limiter = limiter(
            limits()
                .with_bot(Rate::new(30, Duration::from_secs(1)).with_burst(30))
                .with_private_chat(Rate::new(1000, Duration::from_secs(1)).with_burst(1000)),
        );
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..120 {
            go(&limiter, &[7], Purpose::User).await;
            at.push(start.elapsed());
        }
        let interval = Duration::from_secs(1) / 30;
        let tolerance = interval * 29;
        let margin = tolerance / 4;
        for (n, t) in at.iter().enumerate() {
            // Tokio's timer wakes on whole milliseconds.
            let expected = (interval * n as u32 + margin).saturating_sub(tolerance);
            assert!(
                *t >= expected && *t <= expected + Duration::from_millis(1),
                "send {n} at {t:?}, expected {expected:?}"
            );
        }
        let span = at[119] - at[59];
        assert!(
            span.abs_diff(interval * 60) <= Duration::from_millis(1),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn groups_get_twenty_a_minute() {
        let limiter = limiter(limits());
        let start = Instant::now();
        for _ in 0..3 {
            go(&limiter, &[-100], WARM).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_chat_for_exactly_its_retry_after() {
        // Telegram's 429 does not say whether the chat's or the bot's limit was hit: the
        // very next send, to any chat, waits the pause out.
        let limiter = limiter(limits());
        go(&limiter, &[1], WARM).await;
        limiter.pause(1, Duration::from_secs(5)).await.unwrap();
        let start = Instant::now();
        assert_eq!(go(&limiter, &[2, 3], WARM).await, 2);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "another chat waited"
        );
        // A user's chat too, and no longer than asked.
        limiter.pause(2, Duration::from_secs(2)).await.unwrap();
        let start = Instant::now();
        assert_eq!(go(&limiter, &[42], Purpose::User).await, 42);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn two_chats_limited_at_once_pause_the_bot_until_the_later_ends_only() {
        let limiter = limiter(limits());
        limiter.pause(1, Duration::from_secs(3)).await.unwrap();
        limiter.pause(2, Duration::from_secs(4)).await.unwrap();
        let start = Instant::now();
        assert_eq!(go(&limiter, &[42], Purpose::User).await, 42);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_may_not_wait_the_pause_out_is_answered_at_once() {
        let limiter = limiter(limits());
        limiter.pause(1, Duration::from_secs(10)).await.unwrap();
        let start = Instant::now();
        let denied = limiter
            .acquire(&[42], Purpose::User, Some(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(
            matches!(denied, Denied::Wait(d) if d == Duration::from_secs(10)),
            "{denied:?}"
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "no time spent waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_chat_rate_then_it_recovers() {
        let fast = Rate::new(10, Duration::from_secs(1)).with_burst(1);
        let limiter = limiter(limits().with_private_chat(fast));
        go(&limiter, &[1], WARM).await;
        limiter.pause(1, Duration::from_secs(1)).await.unwrap();
        let start = Instant::now();
        go(&limiter, &[1], WARM).await;
        go(&limiter, &[1], WARM).await;
        // Resumed at 1 s, then 200 ms apart instead of 100.
        assert_eq!(start.elapsed(), Duration::from_millis(1200));
        for _ in 0..500 {
            go(&limiter, &[1], WARM).await;
        }
        let t = Instant::now();
        go(&limiter, &[1], WARM).await;
        assert_eq!(
            t.elapsed(),
            Duration::from_millis(100),
            "back to the configured rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn warms_leave_their_share_to_sends_to_users() {
        // 10 a second bot-wide, bursts of 1; warms may take half of it.
        let limiter = limiter(
            limits()
                .with_bot(Rate::new(10, Duration::from_secs(1)))
                .with_private_chat(Rate::new(100, Duration::from_secs(1)).with_burst(100))
                .with_user_share(50),
        );
        let start = Instant::now();
        for _ in 0..6 {
            go(&limiter, &[1], WARM).await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "warms at 5 a second"
        );
        // Meanwhile a user's send finds its slot within one bot interval (100 ms), not a
        // warm interval.
        let t = Instant::now();
        go(&limiter, &[42], Purpose::User).await;
        assert!(
            t.elapsed() <= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // Users alone may use the whole rate.
        let t = Instant::now();
        for _ in 0..10 {
            go(&limiter, &[42], Purpose::User).await;
        }
        assert!(
            t.elapsed() <= Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_album_counts_one_send_per_item() {
        let limiter = limiter(limits().with_private_chat(Rate::new(1, Duration::from_secs(1))));
        go(&limiter, &[1], Purpose::Warm(4)).await;
        let start = Instant::now();
        go(&limiter, &[1], WARM).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_takes_no_chat_slot_but_waits_out_a_pause() {
        let limiter = limiter(limits().with_private_chat(Rate::new(1, Duration::from_secs(1))));
        let sent = limiter.acquire(&[1], WARM, None).await.unwrap();
        let start = Instant::now();
        let delete = limiter.acquire(&[1], Purpose::Delete, None).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "no chat slot, no wait");
        drop((sent, delete));
        // The chat's next message is not delayed by the delete either.
        go(&limiter, &[1], WARM).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        limiter.pause(1, Duration::from_secs(3)).await.unwrap();
        let start = Instant::now();
        drop(limiter.acquire(&[1], Purpose::Delete, None).await.unwrap());
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "not inside the pause"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_wait_it_answers_how_long() {
        let limiter = limiter(limits().with_max_wait(Duration::from_secs(2)));
        limiter.pause(1, Duration::from_secs(10)).await.unwrap();
        assert!(matches!(
            limiter.acquire(&[1], WARM, None).await.unwrap_err(),
            Denied::Wait(d) if d == Duration::from_secs(10)
        ));
        limiter.disable(1, "chat not found".into());
        assert!(
            matches!(limiter.acquire(&[1], WARM, None).await, Err(Denied::NoChat(r)) if r == "chat not found")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_cap_holds_until_a_permit_drops() {
        let limiter = limiter(
            limits()
                .with_in_flight_per_chat(1)
                .with_private_chat(Rate::new(1000, Duration::from_secs(1)).with_burst(1000)),
        );
        let first = limiter.acquire(&[1], WARM, None).await.unwrap();
        let l2 = limiter.clone();
        let second =
            tokio::spawn(async move { l2.acquire(&[1], WARM, None).await.map(|p| p.chat) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished());
        drop(first);
        assert_eq!(second.await.unwrap().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn limiters_sharing_a_budget_keep_to_it_in_sum() {
        // Two uploaders of one bot (two processes, say) on one budget: the chat's 1/s holds
        // for both together, and one's 429 pauses the other.
        let budget: Arc<dyn RateBudget> = Arc::new(MemoryBudget::new());
        let bot = BotId::new("limits").expect("bot");
        let limits = limits().with_private_chat(Rate::new(1, Duration::from_secs(1)));
        let a = Limiter::new(bot.clone(), limits, Some(budget.clone()));
        let b = Limiter::new(bot, limits, Some(budget));
        let start = Instant::now();
        for _ in 0..3 {
            go(&a, &[1], WARM).await;
            go(&b, &[1], WARM).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5), "6 sends at 1/s");
        a.pause(1, Duration::from_secs(7)).await.unwrap();
        let t = Instant::now();
        go(&b, &[2], WARM).await;
        assert_eq!(t.elapsed(), Duration::from_secs(7));
    }
}
