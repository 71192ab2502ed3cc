//! [`PriorityQueue::summary`](crate::PriorityQueue::summary) for the durable backends: what
//! both read from their tables, folded into [`BotSummary`] rows the same way.
//!
//! Both keep a `claim_log` table (migration 3): one row per claim, the bot and the time,
//! trimmed to [`SUMMARY_WINDOW`] by every claim that writes to it, so it holds about a minute
//! of claims.

use std::collections::BTreeMap;

use super::state::{CLAIMED, DEAD, DELAYED, QUEUED};
use super::{corrupt, ts};
use crate::error::Result;
use crate::media::{BotId, Timestamp};
use crate::queue::{BotSummary, SUMMARY_WINDOW};

/// The oldest claim time [`PriorityQueue::summary`](crate::PriorityQueue::summary) counts at
/// `now`, in the tables' unit (unix ms).
pub(crate) fn horizon_ms(now: Timestamp) -> i64 {
    let window = i64::try_from(SUMMARY_WINDOW.as_millis()).unwrap_or(i64::MAX);
    super::ms(now).saturating_sub(window)
}

/// Builds the summaries from `(bot, job_state, count, oldest unfinished enqueued_at)` rows
/// and `(bot, claims)` rows.
pub(crate) fn fold(
    states: impl IntoIterator<Item = (String, String, i64, Option<i64>)>,
    claims: impl IntoIterator<Item = (String, i64)>,
    as_of: Timestamp,
) -> Result<Vec<BotSummary>> {
    let mut bots: BTreeMap<String, BotSummary> = BTreeMap::new();
    for (bot, state, n, oldest) in states {
        let s = entry(&mut bots, bot, as_of)?;
        let n = u64::try_from(n).unwrap_or(0);
        match state.as_str() {
            QUEUED => s.depth.queued = n,
            DELAYED => s.depth.delayed = n,
            CLAIMED => s.depth.claimed = n,
            DEAD => s.depth.dead = n,
            _ => {
                return Err(corrupt(
                    "a job_state is not one of queued, delayed, claimed, dead",
                ));
            }
        }
        if let Some(at) = oldest.map(ts) {
            s.oldest_enqueued_at = Some(s.oldest_enqueued_at.map_or(at, |o| o.min(at)));
        }
    }
    for (bot, n) in claims {
        entry(&mut bots, bot, as_of)?.claims_last_minute = u64::try_from(n).unwrap_or(0);
    }
    Ok(bots.into_values().collect())
}

fn entry(
    bots: &mut BTreeMap<String, BotSummary>,
    bot: String,
    as_of: Timestamp,
) -> Result<&mut BotSummary> {
    use std::collections::btree_map::Entry;
    match bots.entry(bot) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(e) => {
            let bot =
                BotId::new(e.key()).map_err(|_| corrupt("a bot_slug is not a valid bot id"))?;
            Ok(e.insert(BotSummary::empty(bot, as_of)))
        }
    }
}
