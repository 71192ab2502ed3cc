//! The SQL of [`PriorityQueue::summary`](crate::PriorityQueue::summary) on PostgreSQL, and
//! the claim log it reads (see [`crate::db::status`]). Free functions over a client and the
//! schema name, so that the store's impl calls them in one line.

use deadpool_postgres::Client;

use super::pg_err as pg;
use crate::db::ms;
use crate::db::status::{fold, horizon_ms};
use crate::error::Result;
use crate::media::Timestamp;
use crate::queue::{BotSummary, Claimed};

/// Records `jobs`, claimed at `now`, and forgets claims older than the summary window, in
/// one statement.
pub(crate) async fn log_claims(
    client: &Client,
    schema: &str,
    jobs: &[Claimed],
    now: Timestamp,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let bots: Vec<&str> = jobs.iter().map(|j| j.job.key.bot.as_str()).collect();
    let sql = format!(
        "WITH gone AS (DELETE FROM {schema}.claim_log WHERE claimed_at < $3) \
         INSERT INTO {schema}.claim_log (bot_slug, claimed_at) SELECT unnest($1::text[]), $2"
    );
    let stmt = client
        .prepare_cached(&sql)
        .await
        .map_err(|e| pg("logging claims", e))?;
    client
        .execute(&stmt, &[&bots, &ms(now), &horizon_ms(now)])
        .await
        .map_err(|e| pg("logging claims", e))?;
    Ok(())
}

/// Per bot: jobs by state, the oldest unfinished job, claims in the window up to `now`.
pub(crate) async fn summary(
    client: &Client,
    schema: &str,
    now: Timestamp,
) -> Result<Vec<BotSummary>> {
    let what = "summarising the queue";
    let states = client
        .query(
            &format!(
                "SELECT bot_slug, job_state, count(*), \
                 min(CASE WHEN job_state <> 'dead' THEN enqueued_at END) \
                 FROM {schema}.media_cache WHERE job_state IS NOT NULL \
                 GROUP BY bot_slug, job_state"
            ),
            &[],
        )
        .await
        .map_err(|e| pg(what, e))?;
    let claims = client
        .query(
            &format!(
                "SELECT bot_slug, count(*) FROM {schema}.claim_log \
                 WHERE claimed_at >= $1 AND claimed_at <= $2 GROUP BY bot_slug"
            ),
            &[&horizon_ms(now), &ms(now)],
        )
        .await
        .map_err(|e| pg(what, e))?;
    fold(
        states
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
        claims.iter().map(|r| (r.get(0), r.get(1))),
        now,
    )
}
