//! Every statement, with the schema spliced in once.

use super::*;

/// The statements, with the schema spliced in once.
pub(super) struct Sql {
    pub(super) channel: String,
    pub(super) get: String,
    pub(super) put: String,
    pub(super) invalidate: String,
    pub(super) invalidate_check: String,
    pub(super) push: String,
    pub(super) push_batch: String,
    pub(super) complete_batch: String,
    pub(super) wake: String,
    pub(super) candidates: String,
    pub(super) candidates_fresh: String,
    pub(super) claim: String,
    pub(super) extend: String,
    pub(super) complete: String,
    pub(super) held: String,
    pub(super) retry: String,
    pub(super) fail: String,
    pub(super) release: String,
    pub(super) set_demand: String,
    pub(super) get_job: String,
    pub(super) dead: String,
    pub(super) requeue_select: String,
    pub(super) requeue_update: String,
    pub(super) notify: String,
    pub(super) depth: String,
    pub(super) record_rejection: String,
    pub(super) clear_rejections: String,
}

/// The columns describing one job (`mc` is `media_cache`): 13, read by `job_row_at`.
fn job_columns(s: &str) -> String {
    format!(
        "mc.bot_slug, mc.sha256, mc.kind, \
         coalesce((SELECT ms.size FROM {s}.media_store ms WHERE ms.sha256 = mc.sha256), 0), \
         mc.enqueued_at, mc.retry_count, mc.demand, mc.job_state, mc.next_retry_at, \
         mc.lease_owner, mc.lease_expires_at, mc.last_error, mc.rank_plain"
    )
}

impl Sql {
    pub(super) fn new(s: &str) -> Self {
        let key = "bot_slug = $1 AND sha256 = $2 AND kind = $3";
        let held =
            format!("{key} AND job_state = 'claimed' AND lease_owner = $4 AND fencing_token = $5");
        let cached =
            format!("{key} AND file_id IS NOT NULL AND ($4::text IS NULL OR file_id = $4::text)");
        let cols = job_columns(s);
        let channel = format!("prewarm_{s}");
        Self {
            get: format!("SELECT file_id FROM {s}.media_cache WHERE {key} AND status = 'ready'"),
            put: format!(
                "INSERT INTO {s}.media_cache (bot_slug, sha256, kind, file_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (bot_slug, sha256, kind) \
                 DO UPDATE SET file_id = EXCLUDED.file_id, updated_at = now()"
            ),
            // The two statements touch disjoint rows (with or without a job): one of them
            // removes the file_id, and a row left with neither file_id nor job goes.
            invalidate: format!(
                "WITH d AS (DELETE FROM {s}.media_cache WHERE {cached} AND job_state IS NULL \
                   RETURNING 1), \
                 u AS (UPDATE {s}.media_cache SET file_id = NULL, updated_at = now() \
                   WHERE {cached} AND job_state IS NOT NULL RETURNING 1) \
                 SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u)"
            ),
            invalidate_check: format!("SELECT count(*) FROM {s}.media_cache WHERE {cached}"),
            // One upsert. In DO UPDATE, `mc.` is the row as it was: every SET sees the old
            // state, and the outcome is kept in `last_push` for RETURNING.
            push: format!(
                "WITH ms AS ( \
                   INSERT INTO {s}.media_store (sha256, object_key, size) \
                   VALUES ($2, $15::text, $4::bigint) ON CONFLICT (sha256) DO NOTHING), \
                 up AS ( \
                   INSERT INTO {s}.media_cache AS mc (bot_slug, sha256, kind, job_state, \
                     enqueued_at, retry_count, demand, rank_plain, rank_demanded, priority, last_push) \
                   VALUES ($1, $2, $3, 'queued', $5::bigint, $6::integer, $7::boolean, $8::bigint, \
                     $9::bigint, $10::bigint, 'queued') \
                   ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET \
                     last_push = CASE WHEN mc.job_state IS NULL THEN 'queued' \
                       WHEN mc.job_state = 'dead' THEN 'revived' ELSE 'merged' END, \
                     enqueued_at = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.enqueued_at \
                       WHEN mc.job_state = 'dead' THEN $11::bigint ELSE mc.enqueued_at END, \
                     retry_count = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.retry_count \
                       WHEN mc.job_state = 'dead' THEN 0 ELSE mc.retry_count END, \
                     demand = CASE WHEN mc.job_state IS NULL OR mc.job_state = 'dead' \
                       THEN EXCLUDED.demand ELSE (mc.demand OR EXCLUDED.demand) END, \
                     rank_plain = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_plain \
                       WHEN mc.job_state = 'dead' THEN $12::bigint ELSE mc.rank_plain END, \
                     rank_demanded = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_demanded \
                       WHEN mc.job_state = 'dead' THEN $13::bigint ELSE mc.rank_demanded END, \
                     priority = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.priority \
                       WHEN mc.job_state = 'dead' THEN $14::bigint \
                       WHEN mc.demand OR EXCLUDED.demand THEN mc.rank_demanded \
                       ELSE mc.rank_plain END, \
                     dead_seq = NULL, \
                     rerun = CASE WHEN mc.job_state = 'claimed' THEN true \
                       WHEN mc.job_state IN ('queued', 'delayed') THEN mc.rerun ELSE false END, \
                     job_state = CASE WHEN mc.job_state IS NULL OR mc.job_state = 'dead' \
                       THEN 'queued' ELSE mc.job_state END, \
                     updated_at = now() \
                   RETURNING mc.last_push), \
                 n AS (SELECT pg_notify($16::text, '') FROM up WHERE up.last_push <> 'merged') \
                 SELECT up.last_push, (SELECT count(*) FROM n) FROM up"
            ),
            // The batch form for media without a dead job (those are left out of RETURNING and
            // go one by one). Rows are sorted by key by the caller, for a stable lock order.
            push_batch: format!(
                "WITH input AS ( \
                   SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], \
                     $5::bigint[], $6::integer[], $7::boolean[], $8::bigint[], $9::bigint[], \
                     $10::bigint[], $11::text[]) WITH ORDINALITY \
                   AS i(bot_slug, sha256, kind, size, enqueued_at, retry_count, demand, \
                     rank_plain, rank_demanded, priority, object_key, n)), \
                 ms AS ( \
                   INSERT INTO {s}.media_store (sha256, object_key, size) \
                   SELECT DISTINCT ON (sha256) sha256, object_key, size FROM input \
                   ORDER BY sha256 ON CONFLICT (sha256) DO NOTHING), \
                 up AS ( \
                   INSERT INTO {s}.media_cache AS mc (bot_slug, sha256, kind, job_state, \
                     enqueued_at, retry_count, demand, rank_plain, rank_demanded, priority, last_push) \
                   SELECT bot_slug, sha256, kind, 'queued', enqueued_at, retry_count, demand, \
                     rank_plain, rank_demanded, priority, 'queued' FROM input ORDER BY n \
                   ON CONFLICT (bot_slug, sha256, kind) DO UPDATE SET \
                     last_push = CASE WHEN mc.job_state IS NULL THEN 'queued' ELSE 'merged' END, \
                     enqueued_at = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.enqueued_at \
                       ELSE mc.enqueued_at END, \
                     retry_count = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.retry_count \
                       ELSE mc.retry_count END, \
                     demand = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.demand \
                       ELSE (mc.demand OR EXCLUDED.demand) END, \
                     rank_plain = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_plain \
                       ELSE mc.rank_plain END, \
                     rank_demanded = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.rank_demanded \
                       ELSE mc.rank_demanded END, \
                     priority = CASE WHEN mc.job_state IS NULL THEN EXCLUDED.priority \
                       WHEN mc.demand OR EXCLUDED.demand THEN mc.rank_demanded \
                       ELSE mc.rank_plain END, \
                     rerun = CASE WHEN mc.job_state = 'claimed' THEN true \
                       WHEN mc.job_state IN ('queued', 'delayed') THEN mc.rerun ELSE false END, \
                     job_state = coalesce(mc.job_state, 'queued'), \
                     updated_at = now() \
                   WHERE mc.job_state IS DISTINCT FROM 'dead' \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.last_push), \
                 n AS (SELECT pg_notify($12::text, '') \
                   WHERE EXISTS (SELECT 1 FROM up WHERE up.last_push <> 'merged')) \
                 SELECT up.*, (SELECT count(*) FROM n) FROM up"
            ),
            complete_batch: format!(
                "WITH input AS ( \
                   SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], \
                     $5::bigint[]) AS i(bot_slug, sha256, kind, owner, token)), \
                 d AS (DELETE FROM {s}.media_cache mc USING input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.file_id IS NULL AND NOT mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 u AS (UPDATE {s}.media_cache mc SET job_state = NULL, lease_owner = NULL, \
                   lease_expires_at = NULL, next_retry_at = NULL, demand = false, \
                   updated_at = now() FROM input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.file_id IS NOT NULL AND NOT mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 r AS (UPDATE {s}.media_cache mc SET job_state = 'queued', rerun = false, \
                   retry_count = 0, lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = now() FROM input i \
                   WHERE mc.bot_slug = i.bot_slug AND mc.sha256 = i.sha256 AND mc.kind = i.kind \
                   AND mc.job_state = 'claimed' AND mc.lease_owner = i.owner \
                   AND mc.fencing_token = i.token AND mc.rerun \
                   RETURNING mc.bot_slug, mc.sha256, mc.kind, mc.fencing_token), \
                 n AS (SELECT pg_notify($6::text, '') WHERE EXISTS (SELECT 1 FROM r)) \
                 SELECT * FROM d UNION ALL SELECT * FROM u UNION ALL \
                 SELECT r.* FROM r LEFT JOIN n ON true"
            ),
            // Due retries and lapsed leases return to the queue; rows another claimer is
            // moving are skipped, not waited for.
            // $1: the caller's time, or NULL for the database's clock; answers the time
            // used.
            wake: format!(
                "WITH t AS (SELECT coalesce($1::bigint, {DB_NOW_MS}) AS now), \
                 d AS (UPDATE {s}.media_cache SET job_state = 'queued', next_retry_at = NULL \
                   WHERE id IN (SELECT id FROM {s}.media_cache WHERE job_state = 'delayed' \
                     AND next_retry_at <= (SELECT now FROM t) FOR UPDATE SKIP LOCKED) \
                   RETURNING 1), \
                 l AS (UPDATE {s}.media_cache SET job_state = 'queued', lease_owner = NULL, \
                   lease_expires_at = NULL \
                   WHERE id IN (SELECT id FROM {s}.media_cache WHERE job_state = 'claimed' \
                     AND lease_expires_at <= (SELECT now FROM t) FOR UPDATE SKIP LOCKED) \
                   RETURNING 1) \
                 SELECT (SELECT now FROM t), (SELECT count(*) FROM d) + (SELECT count(*) FROM l)"
            ),
            // One bot's list per LATERAL branch, each an index range scan with its own LIMIT
            // (ix_media_cache_demanded, _aged, _fresh), locked so that concurrent claimers
            // skip each other's candidates. $1 the bots, $2 the aging cutoff, $3 the limit.
            candidates: format!(
                "WITH b AS (SELECT * FROM unnest($1::text[]) WITH ORDINALITY AS b(slug, i)), \
                 d AS (SELECT b.i, 0 AS branch, c.id, c.ord FROM b CROSS JOIN LATERAL ( \
                   SELECT id, priority AS ord FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND demand \
                   ORDER BY priority, id LIMIT $3 FOR UPDATE SKIP LOCKED) c), \
                 a AS (SELECT b.i, 1 AS branch, c.id, c.ord FROM b CROSS JOIN LATERAL ( \
                   SELECT id, enqueued_at AS ord FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND NOT demand \
                   AND enqueued_at <= $2::bigint \
                   ORDER BY enqueued_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c) \
                 SELECT * FROM d UNION ALL SELECT * FROM a"
            ),
            // Fresh jobs, read only for the bots whose demanded and aged lists cannot fill
            // the claim: behind a backlog older than the aging bound, this never runs.
            candidates_fresh: format!(
                "SELECT b.i, 2, c.id, c.priority \
                 FROM unnest($1::text[]) WITH ORDINALITY AS b(slug, i) \
                 CROSS JOIN LATERAL ( \
                   SELECT id, priority FROM {s}.media_cache \
                   WHERE bot_slug = b.slug AND job_state = 'queued' AND NOT demand \
                   AND enqueued_at > $2::bigint \
                   ORDER BY priority, id LIMIT $3 FOR UPDATE SKIP LOCKED) c"
            ),
            // $1 the picked ids in claim order.
            claim: format!(
                "WITH claimed AS ( \
                   UPDATE {s}.media_cache mc SET job_state = 'claimed', lease_owner = $2, \
                     lease_expires_at = $3, fencing_token = nextval('{s}.fencing_seq'), \
                     updated_at = now() \
                   FROM unnest($1::bigint[]) WITH ORDINALITY AS p(id, n) WHERE mc.id = p.id \
                   RETURNING p.n, mc.id, {cols}, mc.fencing_token), \
                 due AS (SELECT LEAST( \
                   (SELECT min(next_retry_at) FROM {s}.media_cache WHERE job_state = 'delayed'), \
                   (SELECT min(lease_expires_at) FROM {s}.media_cache WHERE job_state = 'claimed') \
                 ) AS t) \
                 SELECT c.*, due.t FROM due LEFT JOIN claimed c ON true"
            ),
            extend: format!(
                "WITH u AS (UPDATE {s}.media_cache SET lease_expires_at = $6, updated_at = now() \
                   WHERE {held} RETURNING 1) SELECT count(*) FROM u"
            ),
            // A push merged while the job was held (`rerun`) queues it again.
            complete: format!(
                "WITH d AS (DELETE FROM {s}.media_cache WHERE {held} AND file_id IS NULL \
                   AND NOT rerun RETURNING 1), \
                 u AS (UPDATE {s}.media_cache SET job_state = NULL, lease_owner = NULL, \
                   lease_expires_at = NULL, next_retry_at = NULL, demand = false, \
                   updated_at = now() WHERE {held} AND file_id IS NOT NULL AND NOT rerun \
                   RETURNING 1), \
                 r AS (UPDATE {s}.media_cache SET job_state = 'queued', rerun = false, \
                   retry_count = 0, lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = now() WHERE {held} AND rerun RETURNING 1), \
                 n AS (SELECT pg_notify($6::text, '') FROM r) \
                 SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u) \
                   + (SELECT count(*) FROM r), (SELECT count(*) FROM n)"
            ),
            held: format!("SELECT count(*) FROM {s}.media_cache WHERE {held}"),
            retry: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'delayed', next_retry_at = $6, \
                   retry_count = retry_count + $7, last_error = $8, lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, updated_at = now() \
                   WHERE {held} RETURNING 1), \
                 n AS (SELECT pg_notify($9::text, '') FROM u) \
                 SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"
            ),
            fail: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'dead', \
                   retry_count = retry_count + 1, last_error = $6, lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, dead_seq = nextval('{s}.media_cache_dead_seq'), \
                   updated_at = now() WHERE {held} RETURNING 1) SELECT count(*) FROM u"
            ),
            release: format!(
                "WITH u AS (UPDATE {s}.media_cache SET job_state = 'queued', lease_owner = NULL, \
                   lease_expires_at = NULL, rerun = false, updated_at = now() \
                   WHERE {held} RETURNING 1), \
                 n AS (SELECT pg_notify($6::text, '') FROM u) \
                 SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"
            ),
            // $4: the demand to set (promote, clear_demand).
            set_demand: format!(
                "UPDATE {s}.media_cache SET demand = $4, \
                 priority = CASE WHEN $4 THEN rank_demanded ELSE rank_plain END, \
                 updated_at = now() WHERE {key} AND job_state IN ('queued', 'delayed', 'claimed')"
            ),
            get_job: format!(
                "SELECT {cols} FROM {s}.media_cache mc WHERE mc.bot_slug = $1 AND mc.sha256 = $2 \
                 AND mc.kind = $3 AND mc.job_state IS NOT NULL"
            ),
            dead: format!(
                "SELECT {cols} FROM {s}.media_cache mc WHERE mc.job_state = 'dead' \
                 ORDER BY mc.dead_seq LIMIT $1"
            ),
            requeue_select: format!(
                "SELECT mc.id, {cols} FROM {s}.media_cache mc WHERE mc.job_state = 'dead' \
                 AND ($1::text IS NULL OR (mc.bot_slug = $1::text AND mc.sha256 = $2::bytea \
                 AND mc.kind = $3::text)) \
                 FOR UPDATE"
            ),
            requeue_update: format!(
                "UPDATE {s}.media_cache SET job_state = 'queued', retry_count = 0, \
                 enqueued_at = $2, rank_plain = $3, rank_demanded = $4, \
                 priority = CASE WHEN demand THEN $4::bigint ELSE $3::bigint END, dead_seq = NULL, \
                 updated_at = now() WHERE id = $1 AND job_state = 'dead'"
            ),
            notify: "SELECT pg_notify($1::text, '')::text".to_owned(),
            depth: depth_sql(&format!("{s}.media_cache"), "demand", "NOT demand"),
            record_rejection: format!(
                "INSERT INTO {s}.media_rejections AS r (bot_slug, sha256, kind, count) \
                 VALUES ($1, $2, $3, 1) ON CONFLICT (bot_slug, sha256, kind) \
                 DO UPDATE SET count = r.count + 1 RETURNING r.count"
            ),
            clear_rejections: format!("DELETE FROM {s}.media_rejections WHERE {key}"),
            channel,
        }
    }
}
