//! Fills a PostgreSQL queue with many jobs at once (`generate_series`), for the query-plan
//! test and `benches/db.rs`. Shared by both (the bench includes this file by path).

/// Queues `n` photo jobs of `bot` in `schema` (already migrated), enqueued just now (within
/// 50 s, under the default 60 s aging bound) or, when `aged`, two hours ago and more; ranks
/// as `PriorityPolicy` gives a small photo. Then ANALYZE, so the planner knows the table.
#[cfg(feature = "postgres")]
pub async fn fill_queue(url: &str, schema: &str, bot: &str, n: i64, aged: bool) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to fill the queue");
    let conn = tokio::spawn(conn);
    // rank_plain: class 0 (a small photo), newest first; rank_demanded: i64::MIN / 2 + the
    // enqueue time (see PriorityPolicy::rank).
    let sql = format!(
        "INSERT INTO {schema}.media_cache (bot_slug, sha256, kind, job_state, enqueued_at, \
           retry_count, demand, rank_plain, rank_demanded, priority) \
         SELECT $1::text, sha256(convert_to($1::text || ':' || i, 'UTF8')), 'photo', 'queued', \
           e, 0, false, (1::bigint << 42) - 1 - e, -(1::bigint << 62) + e, \
           (1::bigint << 42) - 1 - e \
         FROM (SELECT i, (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
                 - CASE WHEN $3 THEN 7200000 + i ELSE i % 50000 END AS e \
               FROM generate_series(1, $2::bigint) i) g"
    );
    client
        .execute(&sql, &[&bot, &n, &aged])
        .await
        .expect("fill the queue");
    client
        .batch_execute(&format!("ANALYZE {schema}.media_cache"))
        .await
        .expect("analyze");
    drop(client);
    let _ = conn.await;
}
