//! The SQL of [`PriorityQueue::summary`](crate::PriorityQueue::summary) on SQLite, and the
//! claim log it reads (see [`super::status`]).

use rusqlite::{Connection, params};

use super::ms;
use super::status::{fold, horizon_ms};
use crate::error::Result;
use crate::media::Timestamp;
use crate::queue::{BotSummary, Claimed};

/// Records `jobs`, claimed at `now`, and forgets claims older than the summary window.
pub(crate) fn log_claims(c: &Connection, jobs: &[Claimed], now: Timestamp) -> rusqlite::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    c.prepare_cached("DELETE FROM claim_log WHERE claimed_at < ?1")?
        .execute([horizon_ms(now)])?;
    let mut insert =
        c.prepare_cached("INSERT INTO claim_log (bot_slug, claimed_at) VALUES (?1, ?2)")?;
    for j in jobs {
        insert.execute(params![j.job.key.bot.as_str(), ms(now)])?;
    }
    Ok(())
}

/// Per bot: jobs by state, the oldest unfinished job, claims in the window up to `now`.
pub(crate) fn summary(c: &Connection, now: Timestamp) -> rusqlite::Result<Result<Vec<BotSummary>>> {
    let states = c
        .prepare_cached(
            "SELECT bot_slug, job_state, count(*), \
             min(CASE WHEN job_state <> 'dead' THEN enqueued_at END) \
             FROM media_cache WHERE job_state IS NOT NULL GROUP BY bot_slug, job_state",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let claims = c
        .prepare_cached(
            "SELECT bot_slug, count(*) FROM claim_log \
             WHERE claimed_at >= ?1 AND claimed_at <= ?2 GROUP BY bot_slug",
        )?
        .query_map([horizon_ms(now), ms(now)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(fold(states, claims, now))
}
