//! Rate limits shared by every worker of one bot: a bucket for the bot, one per chat, the
//! pauses Telegram's 429s ask for, and a cap on requests in flight per chat.
//!
//! Buckets are GCRA ("generic cell rate algorithm", a token bucket kept as one timestamp):
//! a send at `t` conforms when `t >= tat - tolerance`, and moves `tat` to `max(tat, t) + T`.
//! The state sits behind one std mutex, never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A rate: `count` requests per `per`, with bursts of up to `burst` back to back.
///
/// ```
/// use std::time::Duration;
/// use prewarm::upload::Rate;
///
/// let groups = Rate::new(20, Duration::from_secs(60)).with_burst(1);
/// assert_eq!(groups.interval(), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `count` requests per `per`, with a burst of 1. A zero `count` is taken as 1.
    pub const fn new(count: u32, per: Duration) -> Self {
        Self {
            count: if count == 0 { 1 } else { count },
            per,
            burst: 1,
        }
    }

    /// Lets up to `burst` requests go back to back after a quiet spell (at least 1). The
    /// uploader's limiter keeps a margin of a quarter of the burst's span (at most 250 ms)
    /// before its edge, as requests reach Telegram a little after they leave and not always
    /// in order; the sustained rate is unchanged.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = if burst == 0 { 1 } else { burst };
        self
    }

    /// The spacing between requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }

    /// The burst size.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    fn tolerance(&self) -> Duration {
        self.interval() * (self.burst - 1)
    }

    /// The tolerance this side keeps to: the burst's, less a margin (a quarter of it, at most
    /// [`EDGE_MARGIN`]). Telegram counts a request when it arrives, a few to a hundred
    /// milliseconds after the limiter counted it (more for a large body), and requests may
    /// arrive in another order than they left: a limiter sending right at the burst's edge
    /// would see some of them refused. The margin shortens bursts only; the sustained rate
    /// stays the configured one.
    fn kept_tolerance(&self) -> Duration {
        let t = self.tolerance();
        t - (t / 4).min(EDGE_MARGIN)
    }
}

/// The most a bucket's tolerance is shortened by; see `Rate::kept_tolerance`.
const EDGE_MARGIN: Duration = Duration::from_millis(250);

/// The rate limits a [`TelegramUploader`](crate::upload::TelegramUploader) keeps to, shared by
/// all its callers.
///
/// The defaults follow Telegram's published limits: 30 messages a second per bot, one a
/// second per private chat (bursts of 3), 20 a minute per group or channel (negative chat
/// ids), and one request in flight per chat (a request already on the wire when a 429 comes
/// back would arrive inside the pause and prolong it).
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
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            bot: Rate::new(30, Duration::from_secs(1)).with_burst(30),
            private_chat: Rate::new(1, Duration::from_secs(1)).with_burst(3),
            group_chat: Rate::new(20, Duration::from_secs(60)).with_burst(1),
            in_flight_per_chat: 1,
            max_wait: Duration::from_secs(30),
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

/// After a 429 a bucket sends this much slower at most...
const MAX_SLOWDOWN: f64 = 16.0;
/// ...and each send after it takes back this share of the slowdown (about 70 sends halve it).
const RECOVERY: f64 = 0.99;

/// A bucket's theoretical arrival time, the pause a 429 set, and how much slower than its
/// configured rate it runs since then.
///
/// Telegram's limits are approximate and undocumented in detail: a 429 shows that the
/// configured rate is too fast for this chat right now, so the bucket halves its rate
/// (multiplicative decrease) and creeps back to the configured rate with each send.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: Rate,
    tat: Instant,
    paused_until: Option<Instant>,
    slowdown: f64,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tat: now,
            paused_until: None,
            slowdown: 1.0,
        }
    }

    fn interval(&self) -> Duration {
        self.rate.interval().mul_f64(self.slowdown)
    }

    fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.slowdown = (self.slowdown * 2.0).min(MAX_SLOWDOWN);
    }

    /// The earliest instant a request conforms.
    fn ready_at(&self, now: Instant) -> Instant {
        let by_rate = self
            .tat
            .checked_sub(self.rate.kept_tolerance())
            .unwrap_or(now)
            .max(now);
        match self.paused_until {
            Some(until) if until > by_rate => until,
            _ => by_rate,
        }
    }

    fn paused(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&u| u > now)
    }

    fn take(&mut self, now: Instant) {
        self.tat = self.tat.max(now) + self.interval();
        self.slowdown = (self.slowdown * RECOVERY).max(1.0);
    }
}

#[derive(Debug)]
struct ChatState {
    bucket: Bucket,
    in_flight: u32,
    /// Set when the chat cannot be used (removed, missing): the reason.
    disabled: Option<String>,
}

#[derive(Debug)]
struct State {
    bot: Bucket,
    chats: HashMap<i64, ChatState>,
}

/// Why no chat was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Every candidate is paused or busy past the wait allowed: try again after this long.
    Wait(Duration),
    /// Every candidate chat is disabled; the last reason.
    NoChat(String),
}

/// The shared limiter of one bot.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    limits: RateLimits,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

/// A chat's send slot: the request may go now. Dropping it ends the request's time in flight.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Limiter,
    pub(crate) chat: i64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        if let Some(c) = state.chats.get_mut(&self.chat) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        drop(state);
        self.limiter.changed.notify_waiters();
    }
}

/// Chats outside the warm-up pool are remembered for their budgets; past this many, idle ones
/// are forgotten.
const MAX_REMEMBERED_CHATS: usize = 10_000;

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        let now = Instant::now();
        Self {
            limits,
            state: Arc::new(Mutex::new(State {
                bot: Bucket::new(limits.bot, now),
                chats: HashMap::new(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few field writes: a poisoned lock still holds a usable state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a send slot in one of `chats` (the first with budget, earliest first, ties to
    /// the least used), up to the configured wait, or `wait` when shorter.
    pub(crate) async fn acquire(
        &self,
        chats: &[i64],
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
                let now = Instant::now();
                let mut state = self.lock();
                match self.pick(&mut state, chats, now) {
                    Pick::Go(chat) => {
                        return Ok(Permit {
                            limiter: self.clone(),
                            chat,
                        });
                    }
                    Pick::NoChat(reason) => return Err(Denied::NoChat(reason)),
                    Pick::Paused(until) if until > deadline => {
                        return Err(Denied::Wait(until - now));
                    }
                    Pick::At(at) if at > deadline => return Err(Denied::Wait(at - now)),
                    Pick::Paused(at) | Pick::At(at) => Some(at),
                    Pick::Busy => None,
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

    fn pick(&self, state: &mut State, chats: &[i64], now: Instant) -> Pick {
        if state.chats.len() > MAX_REMEMBERED_CHATS {
            state.chats.retain(|_, c| {
                c.in_flight > 0 || c.disabled.is_some() || c.bucket.ready_at(now) > now
            });
        }
        let bot_ready = state.bot.ready_at(now);
        let bot_paused = state.bot.paused(now);
        let mut best: Option<(Instant, u32, i64)> = None;
        let mut any_open = false;
        let mut all_paused_until: Option<Instant> = None;
        let mut last_reason = None;
        for &chat in chats {
            let c = state.chats.entry(chat).or_insert_with(|| ChatState {
                bucket: Bucket::new(self.limits.chat(chat), now),
                in_flight: 0,
                disabled: None,
            });
            if let Some(reason) = &c.disabled {
                last_reason = Some(reason.clone());
                continue;
            }
            any_open = true;
            if let Some(until) = c.bucket.paused(now) {
                all_paused_until = Some(all_paused_until.map_or(until, |u: Instant| u.min(until)));
                continue;
            }
            all_paused_until = Some(now);
            if c.in_flight >= self.limits.in_flight_per_chat {
                continue;
            }
            let at = c.bucket.ready_at(now).max(bot_ready);
            let candidate = (at, c.in_flight, chat);
            if best.is_none_or(|b| (candidate.0, candidate.1) < (b.0, b.1)) {
                best = Some(candidate);
            }
        }
        if !any_open {
            return Pick::NoChat(last_reason.unwrap_or_else(|| "no warm-up chat".to_owned()));
        }
        if let Some(until) = bot_paused {
            return Pick::Paused(until);
        }
        match (best, all_paused_until) {
            (Some((at, _, chat)), _) if at <= now => {
                state.bot.take(now);
                let c = state.chats.get_mut(&chat).expect("inserted above");
                c.bucket.take(now);
                c.in_flight += 1;
                Pick::Go(chat)
            }
            (Some((at, _, _)), _) => Pick::At(at),
            (None, Some(until)) if until > now => Pick::Paused(until),
            (None, _) => Pick::Busy,
        }
    }

    /// Records a 429 from `chat`: no request goes there for `retry_after`, and the chat's
    /// rate halves for a while. A second chat
    /// limited while another's pause still runs means the bot-wide limit was hit: then the
    /// whole bot pauses too. Answers whether the bot was paused.
    pub(crate) fn pause(&self, chat: i64, retry_after: Duration) -> bool {
        let now = Instant::now();
        let until = now + retry_after;
        let mut state = self.lock();
        let other_paused = state
            .chats
            .iter()
            .any(|(&id, c)| id != chat && c.bucket.paused(now).is_some());
        let c = state.chats.entry(chat).or_insert_with(|| ChatState {
            bucket: Bucket::new(self.limits.chat(chat), now),
            in_flight: 0,
            disabled: None,
        });
        c.bucket.pause(until);
        if other_paused {
            state.bot.pause(until);
        }
        drop(state);
        self.changed.notify_waiters();
        other_paused
    }

    /// Charges `extra` more sends to `chat` and the bot, as an album of `extra + 1` items
    /// does: the sends after it wait as if each item had been sent alone.
    pub(crate) fn charge(&self, chat: i64, extra: u32) {
        let now = Instant::now();
        let mut state = self.lock();
        for _ in 0..extra {
            state.bot.take(now);
            if let Some(c) = state.chats.get_mut(&chat) {
                c.bucket.take(now);
            }
        }
    }

    /// Takes `chat` out of the pool for good, with the reason.
    pub(crate) fn disable(&self, chat: i64, reason: String) {
        if let Some(c) = self.lock().chats.get_mut(&chat) {
            c.disabled = Some(reason);
        }
        self.changed.notify_waiters();
    }

    /// How long until some chat of `chats` is out of its pause (zero if one is now).
    pub(crate) fn pause_left(&self, chats: &[i64]) -> Duration {
        let now = Instant::now();
        let state = self.lock();
        let bot = state.bot.paused(now).map_or(Duration::ZERO, |u| u - now);
        let chat = chats
            .iter()
            .filter_map(|id| state.chats.get(id))
            .filter(|c| c.disabled.is_none())
            .map(|c| c.bucket.paused(now).map_or(Duration::ZERO, |u| u - now))
            .min()
            .unwrap_or(Duration::ZERO);
        bot.max(chat)
    }
}

enum Pick {
    Go(i64),
    At(Instant),
    Paused(Instant),
    Busy,
    NoChat(String),
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

    #[tokio::test(start_paused = true)]
    async fn a_chat_sends_its_burst_then_one_per_interval() {
        let limiter = Limiter::new(limits());
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            let p = limiter.acquire(&[7], None).await.unwrap();
            at.push(start.elapsed());
            drop(p);
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
        let limiter = Limiter::new(
            limits()
                .with_bot(Rate::new(30, Duration::from_secs(1)).with_burst(30))
                .with_private_chat(Rate::new(1000, Duration::from_secs(1)).with_burst(1000)),
        );
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..120 {
            drop(limiter.acquire(&[7], None).await.unwrap());
            at.push(start.elapsed());
        }
        let interval = Duration::from_secs(1) / 30;
        let tolerance = interval * 29;
        let margin = tolerance / 4;
        // A GCRA send n conforms at n*T - tolerance; this limiter sends at n*T - tolerance +
        // margin, never sooner.
        for (n, t) in at.iter().enumerate() {
            // Tokio's timer wakes on whole milliseconds.
            let expected = (interval * n as u32 + margin).saturating_sub(tolerance);
            assert!(
                *t >= expected && *t <= expected + Duration::from_millis(1),
                "send {n} at {t:?}, expected {expected:?}"
            );
        }
        // The sustained rate is untouched: the last 60 sends span 2 s.
        let span = at[119] - at[59];
        assert!(
            span.abs_diff(interval * 60) <= Duration::from_millis(1),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn groups_get_twenty_a_minute() {
        let limiter = Limiter::new(limits());
        let start = Instant::now();
        for _ in 0..3 {
            drop(limiter.acquire(&[-100], None).await.unwrap());
        }
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_moves_sends_to_other_chats_and_holds_its_own() {
        let limiter = Limiter::new(limits());
        drop(limiter.acquire(&[1], None).await.unwrap());
        assert!(!limiter.pause(1, Duration::from_secs(5)));
        let start = Instant::now();
        let p = limiter.acquire(&[1, 2], None).await.unwrap();
        assert_eq!((p.chat, start.elapsed()), (2, Duration::ZERO));
        drop(p);
        // Chat 1 alone: nothing before its pause ends.
        let p = limiter.acquire(&[1], None).await.unwrap();
        assert_eq!(p.chat, 1);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_chat_rate_then_it_recovers() {
        let fast = Rate::new(10, Duration::from_secs(1)).with_burst(1);
        let limiter = Limiter::new(limits().with_private_chat(fast));
        drop(limiter.acquire(&[1], None).await.unwrap());
        limiter.pause(1, Duration::from_secs(1));
        let start = Instant::now();
        drop(limiter.acquire(&[1], None).await.unwrap());
        drop(limiter.acquire(&[1], None).await.unwrap());
        // Resumed at 1 s, then 200 ms apart instead of 100.
        assert_eq!(start.elapsed(), Duration::from_millis(1200));
        for _ in 0..500 {
            drop(limiter.acquire(&[1], None).await.unwrap());
        }
        let t = Instant::now();
        drop(limiter.acquire(&[1], None).await.unwrap());
        assert_eq!(
            t.elapsed(),
            Duration::from_millis(100),
            "back to the configured rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_limited_chats_pause_the_bot() {
        let limiter = Limiter::new(limits());
        limiter.pause(1, Duration::from_secs(3));
        assert!(limiter.pause(2, Duration::from_secs(4)));
        let start = Instant::now();
        let p = limiter.acquire(&[3], None).await.unwrap();
        assert_eq!((p.chat, start.elapsed()), (3, Duration::from_secs(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_wait_it_answers_how_long() {
        let limiter = Limiter::new(limits().with_max_wait(Duration::from_secs(2)));
        limiter.pause(1, Duration::from_secs(10));
        assert_eq!(
            limiter.acquire(&[1], None).await.unwrap_err(),
            Denied::Wait(Duration::from_secs(10))
        );
        limiter.disable(1, "chat not found".into());
        assert!(
            matches!(limiter.acquire(&[1], None).await, Err(Denied::NoChat(r)) if r == "chat not found")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_cap_holds_until_a_permit_drops() {
        let limiter = Limiter::new(
            limits()
                .with_in_flight_per_chat(1)
                .with_private_chat(Rate::new(1000, Duration::from_secs(1)).with_burst(1000)),
        );
        let first = limiter.acquire(&[1], None).await.unwrap();
        let l2 = limiter.clone();
        let second = tokio::spawn(async move { l2.acquire(&[1], None).await.map(|p| p.chat) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished());
        drop(first);
        assert_eq!(second.await.unwrap().unwrap(), 1);
    }
}
