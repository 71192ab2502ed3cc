//! The fake's rate limits: its own model of Telegram's, taken from Telegram's documentation,
//! not from the client it tests (<https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>):
//! "avoid sending more than one message per second" in a chat, "no more than 20 messages per
//! minute" in a group, "about 30 messages per second" in all; over them a 429 with
//! `retry_after`, and a request inside that wait prolongs the ban.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// A rate the fake enforces, in one of two shapes:
/// - [`new`](Self::new): `count` sends per `per`, evenly paced (one each `per / count`),
///   with [`with_burst`](Self::with_burst) sends allowed back to back after a quiet spell;
/// - [`window`](Self::window): at most `count` sends in any rolling window of `per`, however
///   they bunch (Telegram's "no more than 20 messages per minute" in a group).
///
/// ```
/// use std::time::Duration;
/// use prewarm::testkit::FakeRate;
///
/// // 20 in any minute (a group's limit).
/// let group = FakeRate::window(20, Duration::from_secs(60));
/// // One a second, bursts of three (a private chat's).
/// let private = FakeRate::new(1, Duration::from_secs(1)).with_burst(3);
/// assert_eq!(group.count(), 20);
/// assert_eq!(private.burst(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeRate {
    count: u32,
    per: Duration,
    burst: u32,
    window: bool,
}

impl FakeRate {
    /// `count` (at least 1) sends per `per`, paced evenly, with a burst of 1.
    pub fn new(count: u32, per: Duration) -> Self {
        Self {
            count: count.max(1),
            per,
            burst: 1,
            window: false,
        }
    }

    /// At most `count` (at least 1) sends in any rolling window of `per`.
    pub fn window(count: u32, per: Duration) -> Self {
        let count = count.max(1);
        Self {
            count,
            per,
            burst: count,
            window: true,
        }
    }

    /// Lets up to `burst` (at least 1) paced sends go back to back after a quiet spell (a
    /// window rate bunches freely already).
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// The sends allowed per `per`.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The sends allowed back to back.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn interval(&self) -> Duration {
        self.per / self.count
    }
}

/// The rate limits the fake enforces.
///
/// ```
/// use std::time::Duration;
/// use prewarm::testkit::{FakeLimits, FakeRate};
///
/// // Telegram's own, but ten times faster, so that tests run quickly.
/// let fast = FakeLimits::telegram()
///     .with_private_chat(FakeRate::new(10, Duration::from_secs(1)).with_burst(3))
///     .with_chat(-100_7, FakeRate::new(2, Duration::from_secs(1)));
/// # let _ = fast;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLimits {
    pub(super) bot: Option<FakeRate>,
    private_chat: Option<FakeRate>,
    group_chat: Option<FakeRate>,
    per_chat: HashMap<i64, FakeRate>,
}

impl FakeLimits {
    /// Telegram's published limits: 30 sends a second per bot (bursts of 30), one a second
    /// per private chat (bursts of 3), 20 in any minute per group or channel.
    pub fn telegram() -> Self {
        Self {
            bot: Some(FakeRate::new(30, Duration::from_secs(1)).with_burst(30)),
            private_chat: Some(FakeRate::new(1, Duration::from_secs(1)).with_burst(3)),
            group_chat: Some(FakeRate::window(20, Duration::from_secs(60))),
            per_chat: HashMap::new(),
        }
    }

    /// No rate limits at all.
    pub fn off() -> Self {
        Self {
            bot: None,
            private_chat: None,
            group_chat: None,
            per_chat: HashMap::new(),
        }
    }

    /// The bot-wide rate (`None`: unlimited).
    #[must_use]
    pub fn with_bot(mut self, rate: impl Into<Option<FakeRate>>) -> Self {
        self.bot = rate.into();
        self
    }

    /// The rate of every private chat (positive ids).
    #[must_use]
    pub fn with_private_chat(mut self, rate: impl Into<Option<FakeRate>>) -> Self {
        self.private_chat = rate.into();
        self
    }

    /// The rate of every group or channel (negative ids).
    #[must_use]
    pub fn with_group_chat(mut self, rate: impl Into<Option<FakeRate>>) -> Self {
        self.group_chat = rate.into();
        self
    }

    /// A rate for one chat, overriding the general one.
    #[must_use]
    pub fn with_chat(mut self, chat: i64, rate: FakeRate) -> Self {
        self.per_chat.insert(chat, rate);
        self
    }

    pub(super) fn chat(&self, chat: i64) -> Option<FakeRate> {
        self.per_chat.get(&chat).copied().or(if chat < 0 {
            self.group_chat
        } else {
            self.private_chat
        })
    }
}

impl Default for FakeLimits {
    fn default() -> Self {
        Self::telegram()
    }
}

/// One bot's or chat's record: recent sends, the pacing, and the ban a 429 gave.
#[derive(Debug, Default, Clone)]
pub(super) struct Gate {
    /// GCRA's theoretical arrival time (paced rates).
    tat: Option<Instant>,
    /// The sends of the last window, oldest first (window rates).
    recent: VecDeque<Instant>,
    banned_until: Option<Instant>,
    /// How long the running ban was given for: a send inside it starts it again.
    ban: Duration,
}

impl Gate {
    /// How long until a send conforms to `rate` (zero: it does now).
    fn wait(&mut self, rate: FakeRate, now: Instant) -> Duration {
        if rate.window {
            while self
                .recent
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= rate.per)
            {
                self.recent.pop_front();
            }
            return match self.recent.len().checked_sub(rate.count as usize) {
                Some(i) => (self.recent[i] + rate.per).saturating_duration_since(now),
                None => Duration::ZERO,
            };
        }
        let tolerance = rate.interval() * (rate.burst - 1);
        match self.tat {
            Some(tat) => (tat.checked_sub(tolerance).unwrap_or(now)).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// Counts `cost` sends arriving at `now` (an album's items: the first must conform, the
    /// rest are owed, so that what follows waits for them).
    fn take(&mut self, rate: FakeRate, now: Instant, cost: u32) {
        if rate.window {
            self.recent.extend(std::iter::repeat_n(now, cost as usize));
        } else {
            self.tat = Some(self.tat.unwrap_or(now).max(now) + rate.interval() * cost);
        }
    }

    /// Inside a ban: starts it again from `now` (Telegram prolongs a ban a request arrives
    /// in) and answers the wait left.
    fn inside_ban(&mut self, now: Instant) -> Option<Duration> {
        self.banned_until.filter(|&u| u > now)?;
        let until = now + self.ban;
        self.banned_until = Some(until);
        Some(until - now)
    }

    fn ban_for(&mut self, secs: u64, now: Instant) {
        self.ban = Duration::from_secs(secs);
        self.banned_until = Some(now + self.ban);
    }
}

/// Telegram's retry_after: whole seconds, at least one.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

/// Whether a send may go.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit {
    Go,
    /// 429 with this many seconds; whether the send arrived inside a ban (which it prolonged).
    Limited(u64, bool),
}

/// Every bot's and chat's gate.
#[derive(Debug, Default)]
pub(super) struct Gates {
    bots: HashMap<String, Gate>,
    chats: HashMap<(String, i64), Gate>,
}

impl Gates {
    /// A request of `bot` that is not a message (`deleteMessage`) arriving at `now`: not
    /// counted against any rate, but refused inside a running bot-wide ban, which it
    /// prolongs (Telegram bans the bot's requests, not only its messages).
    pub(super) fn admit_other(&mut self, bot: &str, now: Instant) -> Admit {
        match self.bots.entry(bot.to_owned()).or_default().inside_ban(now) {
            Some(left) => Admit::Limited(whole_seconds(left), true),
            None => Admit::Go,
        }
    }

    /// Counts a send of `bot` to `chat` arriving at `now`, or says why it is refused.
    #[cfg(test)]
    pub(super) fn admit(
        &mut self,
        limits: &FakeLimits,
        bot: &str,
        chat: i64,
        now: Instant,
    ) -> Admit {
        self.admit_messages(limits, bot, chat, now, 1)
    }

    /// Counts `messages` sends of `bot` to `chat` arriving at `now` at once (an album makes
    /// one message per item, and each is counted: Telegram does not document how albums
    /// count, and per item is the strict reading), or says why they are refused.
    pub(super) fn admit_messages(
        &mut self,
        limits: &FakeLimits,
        bot: &str,
        chat: i64,
        now: Instant,
        messages: u32,
    ) -> Admit {
        let bot_gate = self.bots.entry(bot.to_owned()).or_default();
        if let Some(left) = bot_gate.inside_ban(now) {
            return Admit::Limited(whole_seconds(left), true);
        }
        let chat_gate = self.chats.entry((bot.to_owned(), chat)).or_default();
        if let Some(left) = chat_gate.inside_ban(now) {
            return Admit::Limited(whole_seconds(left), true);
        }
        if let Some(rate) = limits.bot {
            let bot_gate = self.bots.get_mut(bot).expect("inserted above");
            let wait = bot_gate.wait(rate, now);
            if !wait.is_zero() {
                let secs = whole_seconds(wait);
                bot_gate.ban_for(secs, now);
                return Admit::Limited(secs, false);
            }
        }
        let chat_gate = self
            .chats
            .get_mut(&(bot.to_owned(), chat))
            .expect("inserted above");
        if let Some(rate) = limits.chat(chat) {
            let wait = chat_gate.wait(rate, now);
            if !wait.is_zero() {
                let secs = whole_seconds(wait);
                chat_gate.ban_for(secs, now);
                return Admit::Limited(secs, false);
            }
            chat_gate.take(rate, now, messages);
        }
        if let Some(rate) = limits.bot {
            self.bots
                .get_mut(bot)
                .expect("inserted above")
                .take(rate, now, messages);
        }
        Admit::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: i64 = -1_001_234_567_890;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_ban_is_prolonged_by_a_send_inside_it_and_rates_refill() {
        let limits = FakeLimits::off().with_private_chat(FakeRate::new(1, secs(1)).with_burst(2));
        let mut gates = Gates::default();
        let t0 = Instant::now();
        assert_eq!(gates.admit(&limits, "1", 5, t0), Admit::Go);
        assert_eq!(gates.admit(&limits, "1", 5, t0), Admit::Go);
        assert_eq!(gates.admit(&limits, "1", 5, t0), Admit::Limited(1, false));
        // Inside the 1 s ban: refused, and the ban starts again from here.
        let t1 = t0 + Duration::from_millis(900);
        assert_eq!(gates.admit(&limits, "1", 5, t1), Admit::Limited(1, true));
        assert_eq!(
            gates.admit(&limits, "1", 5, t0 + Duration::from_millis(1500)),
            Admit::Limited(1, true),
            "the first ban would have ended at 1 s; the send at 0.9 s prolonged it"
        );
        // Another chat is not touched by this chat's ban.
        assert_eq!(gates.admit(&limits, "1", 6, t0), Admit::Go);
        assert_eq!(gates.admit(&limits, "1", 5, t0 + secs(3)), Admit::Go);
    }

    /// Telegram's group limit at its real value: 20 sends in a minute, one a second, pass;
    /// the 21st inside the minute is answered 429 with the wait until the first leaves the
    /// window.
    #[test]
    fn a_group_takes_20_a_minute_and_refuses_the_21st() {
        let limits = FakeLimits::telegram();
        let mut gates = Gates::default();
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(
                gates.admit(&limits, "1", GROUP, t0 + secs(i)),
                Admit::Go,
                "send {}",
                i + 1
            );
        }
        assert_eq!(
            gates.admit(&limits, "1", GROUP, t0 + secs(20)),
            Admit::Limited(40, false)
        );
        // After the ban, a minute after the first send, the group takes sends again.
        assert_eq!(gates.admit(&limits, "1", GROUP, t0 + secs(61)), Admit::Go);
    }

    /// An album's items are counted one by one: after an album of 10, a group has room for
    /// 10 more sends in the minute, not 19.
    #[test]
    fn an_album_counts_each_item() {
        let limits = FakeLimits::telegram();
        let mut gates = Gates::default();
        let t0 = Instant::now();
        assert_eq!(gates.admit_messages(&limits, "1", GROUP, t0, 10), Admit::Go);
        for i in 1..=10 {
            assert_eq!(gates.admit(&limits, "1", GROUP, t0 + secs(i)), Admit::Go);
        }
        assert!(matches!(
            gates.admit(&limits, "1", GROUP, t0 + secs(11)),
            Admit::Limited(_, false)
        ));
    }

    #[test]
    fn a_private_chat_takes_a_burst_of_three_then_one_a_second() {
        let limits = FakeLimits::telegram();
        let mut gates = Gates::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(gates.admit(&limits, "1", 7, t0), Admit::Go);
        }
        assert!(matches!(
            gates.admit(&limits, "1", 7, t0),
            Admit::Limited(_, false)
        ));
        let mut gates = Gates::default();
        for i in 0..10 {
            assert_eq!(gates.admit(&limits, "1", 7, t0 + secs(i)), Admit::Go);
        }
    }

    #[test]
    fn the_bot_takes_30_a_second() {
        let limits = FakeLimits::telegram().with_private_chat(None);
        let mut gates = Gates::default();
        let t0 = Instant::now();
        for chat in 0..30 {
            assert_eq!(gates.admit(&limits, "1", chat, t0), Admit::Go);
        }
        assert_eq!(gates.admit(&limits, "1", 99, t0), Admit::Limited(1, false));
        // The bot's ban covers every chat, and a send inside it prolongs it.
        assert_eq!(
            gates.admit(&limits, "1", 98, t0 + Duration::from_millis(500)),
            Admit::Limited(1, true)
        );
    }
}
