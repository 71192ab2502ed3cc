//! The rate budget of a bot: how many sends Telegram allows it, bot-wide and per chat, and the
//! pauses its 429s asked for. [`RateBudget`] is the state; [`MemoryBudget`] keeps it in the
//! process (the default), `db::PostgresBudget` (feature `postgres`) in PostgreSQL, shared by
//! every process of the bot.
//!
//! Telegram's limits belong to the bot token, not to a process: K processes of one bot that
//! each keep to 30 messages a second send 30·K. Every send therefore takes its slot from one
//! budget that all of them share, and a 429 seen by any of them pauses the chat and the bot
//! for all of them.
//!
//! Buckets are GCRA ("generic cell rate algorithm", a token bucket kept as one timestamp, the
//! *theoretical arrival time* `tat`): a send at `t` conforms when `t >= tat - tolerance`, and
//! moves `tat` to `max(tat, t) + interval`. One timestamp per bucket is what makes a shared
//! bucket cheap: taking a slot is one read-modify-write of a row.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::Result;
use crate::media::BotId;

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

    /// The requests per `per`.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period `count` is given for.
    pub const fn per(&self) -> Duration {
        self.per
    }

    fn tolerance(&self) -> Duration {
        self.interval() * (self.burst - 1)
    }

    /// The tolerance a budget keeps to: the burst's, less a margin (a quarter of it, at most
    /// 250 ms). Telegram counts a request when it arrives, a few to a hundred milliseconds
    /// after the budget counted it (more for a large body), and requests may arrive in
    /// another order than they left: a budget sending right at the burst's edge would see
    /// some of them refused. The margin shortens bursts only; the sustained rate stays the
    /// configured one.
    pub fn kept_tolerance(&self) -> Duration {
        let t = self.tolerance();
        t - (t / 4).min(EDGE_MARGIN)
    }

    /// This rate scaled by `share` (0 to 1): the count and the burst, each at least 1.
    #[must_use]
    pub fn scaled(&self, share: f64) -> Self {
        let share = share.clamp(0.0, 1.0);
        let scale = |n: u32| ((f64::from(n) * share).floor() as u32).max(1);
        Self {
            count: scale(self.count),
            per: self.per,
            burst: scale(self.burst),
        }
    }
}

/// The most a bucket's tolerance is shortened by; see [`Rate::kept_tolerance`].
const EDGE_MARGIN: Duration = Duration::from_millis(250);

/// After a 429 a bucket sends this much slower at most...
pub(crate) const MAX_SLOWDOWN: f64 = 16.0;
/// ...and each send after it takes back this share of the slowdown (about 70 sends halve it).
pub(crate) const RECOVERY: f64 = 0.99;

/// One send asking for a slot: the bot, its rates, and the chats it may go to.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BudgetRequest<'a> {
    /// The bot whose budget it draws from.
    pub bot: &'a BotId,
    /// The bot-wide rate.
    pub bot_rate: Rate,
    /// For a warm: the share of the bot-wide rate warms may use (a second bucket, so that
    /// warms leave the rest to sends to users); `None` for a send to a user.
    pub warm_share: Option<Rate>,
    /// The chats it may go to, each with its rate, in order of preference: the budget picks
    /// the one whose slot comes first (the first on ties).
    pub chats: &'a [(i64, Rate)],
    /// Messages the send counts as: 1, or the items of an album.
    pub cost: u32,
    /// Whether it counts against the chat's rate; `false` for requests that are not
    /// messages (`deleteMessage`), which still count bot-wide and wait out pauses.
    pub charge_chat: bool,
}

impl<'a> BudgetRequest<'a> {
    /// A request for one message to one of `chats`, counted against the chat and the bot.
    pub fn new(bot: &'a BotId, bot_rate: Rate, chats: &'a [(i64, Rate)]) -> Self {
        Self {
            bot,
            bot_rate,
            warm_share: None,
            chats,
            cost: 1,
            charge_chat: true,
        }
    }

    /// Draws from the warms' share of the bot-wide rate too.
    #[must_use]
    pub fn warm(mut self, share: Rate) -> Self {
        self.warm_share = Some(share);
        self
    }

    /// Counts as `cost` messages (at least 1).
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost.max(1);
        self
    }

    /// Counts against the chat's rate or not.
    #[must_use]
    pub fn charge_chat(mut self, charge: bool) -> Self {
        self.charge_chat = charge;
        self
    }
}

/// What a [`RateBudget`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The send may go to this chat now; its slot is taken.
    Go(i64),
    /// No chat has a slot now: the earliest comes after this long (a pause included).
    Wait(Duration),
}

/// The rate budget of bots: bot-wide and per-chat GCRA buckets and the pauses 429s set.
///
/// # Contract
/// - [`take`](RateBudget::take) takes a slot from the bot's bucket, from the warm share's
///   bucket when the request has one, and from the picked chat's bucket when it charges the
///   chat, all or none, atomically with respect to every other caller of the same budget
///   (other processes included for a shared one). It picks, among the request's chats, the
///   one whose slot comes first, the first on ties; a chat or the bot inside a pause has no
///   slot until the pause ends. With none now, it answers how long until the first.
/// - Buckets use each rate's [`Rate::kept_tolerance`]; each send moves a bucket's `tat` by
///   its interval times `cost`, slowed after a 429 (twice slower per 429, at most 16 times,
///   recovering 1% a send).
/// - [`pause`](RateBudget::pause) pauses the chat *and the bot* for `retry_after` from now
///   (a later end wins over an earlier one) and slows both: Telegram's 429 does not say
///   whether the chat's limit or the bot's was hit, and a send inside a running bot-wide
///   ban prolongs it (reportedly up to hours), while a needless pause costs `retry_after`
///   once.
/// - Times are the budget's own clock (the database's for a shared one), so callers on
///   hosts with skewed clocks agree.
#[async_trait]
pub trait RateBudget: Send + Sync + Debug + 'static {
    /// Takes a slot for one send, or answers how long until one.
    async fn take(&self, request: &BudgetRequest<'_>) -> Result<Grant>;

    /// Records a 429 from `chat`: the chat and the bot send nothing for `retry_after`.
    async fn pause(&self, bot: &BotId, chat: i64, retry_after: Duration) -> Result<()>;
}

/// A GCRA bucket: its theoretical arrival time, the pause a 429 set, and how much slower
/// than its rate it runs since.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tat: Instant,
    paused_until: Option<Instant>,
    slowdown: f64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tat: now,
            paused_until: None,
            slowdown: 1.0,
        }
    }

    /// The earliest instant a send conforms to `rate` (`None`: the rate is not charged,
    /// only the pause counts).
    fn ready_at(&self, rate: Option<Rate>, now: Instant) -> Instant {
        let by_rate = match rate {
            Some(rate) => self
                .tat
                .checked_sub(rate.kept_tolerance())
                .unwrap_or(now)
                .max(now),
            None => now,
        };
        match self.paused_until {
            Some(until) if until > by_rate => until,
            _ => by_rate,
        }
    }

    fn take(&mut self, rate: Rate, cost: u32, now: Instant) {
        let interval = rate.interval().mul_f64(self.slowdown) * cost;
        self.tat = self.tat.max(now) + interval;
        self.slowdown = (self.slowdown * RECOVERY.powi(cost as i32)).max(1.0);
    }

    fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.slowdown = (self.slowdown * 2.0).min(MAX_SLOWDOWN);
    }

    fn idle(&self, now: Instant) -> bool {
        self.tat <= now && self.paused_until.is_none_or(|u| u <= now)
    }
}

/// Which bucket of a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Bot,
    WarmShare,
    Chat(i64),
}

/// Idle buckets are forgotten past this many (chats of users come and go).
const MAX_REMEMBERED: usize = 10_000;

/// The in-process [`RateBudget`]: right for one process per bot, the default of
/// [`TelegramUploader`](crate::TelegramUploader). Its clock is tokio's, so tests can pause it.
///
/// # Clone
/// Clones share the buckets. The state sits behind one std mutex, never held across an
/// `.await`.
#[derive(Debug, Clone, Default)]
pub struct MemoryBudget {
    state: Arc<Mutex<HashMap<(BotId, Scope), Bucket>>>,
}

impl MemoryBudget {
    /// An empty budget: every bucket full.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(BotId, Scope), Bucket>> {
        // Every update is a few field writes: a poisoned lock still holds a usable state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl RateBudget for MemoryBudget {
    async fn take(&self, r: &BudgetRequest<'_>) -> Result<Grant> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.len() > MAX_REMEMBERED {
            state.retain(|_, b| !b.idle(now));
        }
        let mut bucket = |scope| {
            *state
                .entry((r.bot.clone(), scope))
                .or_insert_with(|| Bucket::new(now))
        };
        let mut gate = bucket(Scope::Bot).ready_at(Some(r.bot_rate), now);
        if let Some(share) = r.warm_share {
            gate = gate.max(bucket(Scope::WarmShare).ready_at(Some(share), now));
        }
        let chat_rate = |rate: Rate| r.charge_chat.then_some(rate);
        let best = r
            .chats
            .iter()
            .map(|&(chat, rate)| {
                (
                    bucket(Scope::Chat(chat)).ready_at(chat_rate(rate), now),
                    chat,
                    rate,
                )
            })
            .min_by_key(|c| c.0);
        let Some((ready, chat, rate)) = best else {
            return Ok(Grant::Wait(Duration::from_secs(1)));
        };
        let at = ready.max(gate);
        if at > now {
            return Ok(Grant::Wait(at - now));
        }
        let mut charge = |scope, rate| {
            if let Some(b) = state.get_mut(&(r.bot.clone(), scope)) {
                b.take(rate, r.cost, now);
            }
        };
        charge(Scope::Bot, r.bot_rate);
        if let Some(share) = r.warm_share {
            charge(Scope::WarmShare, share);
        }
        if r.charge_chat {
            charge(Scope::Chat(chat), rate);
        }
        Ok(Grant::Go(chat))
    }

    async fn pause(&self, bot: &BotId, chat: i64, retry_after: Duration) -> Result<()> {
        let now = Instant::now();
        let until = now + retry_after;
        let mut state = self.lock();
        for scope in [Scope::Bot, Scope::Chat(chat)] {
            state
                .entry((bot.clone(), scope))
                .or_insert_with(|| Bucket::new(now))
                .pause(until);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_scales_count_and_burst_at_least_to_one() {
        let bot = Rate::new(30, Duration::from_secs(1)).with_burst(30);
        let warm = bot.scaled(0.75);
        assert_eq!((warm.count(), warm.burst()), (22, 22));
        assert_eq!(bot.scaled(0.0).count(), 1);
    }
}
