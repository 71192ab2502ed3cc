//! Versioned migrations, run under an advisory lock.

use super::*;

/// Versioned migrations, applied in order, each once, recorded in `schema_migrations`.
const MIGRATIONS: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "claims",
        include_str!("../migrations/postgres/0002_claims.sql"),
    ),
    (
        3,
        "claim_log",
        include_str!("../migrations/postgres/0003_claim_log.sql"),
    ),
    (
        4,
        "upload_journal",
        include_str!("../migrations/postgres/0004_upload_journal.sql"),
    ),
];

/// Runs the migrations the schema lacks; answers the database's clock (unix ms).
pub(super) async fn migrate(config: &tokio_postgres::Config, schema: &str) -> Result<i64> {
    let (mut client, conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_err("connecting to PostgreSQL to migrate", e))?;
    let conn = tokio::spawn(conn);
    let result = async {
        // A session lock: instances starting together migrate one after the other, and the
        // lock goes with the connection should this one die.
        let lock_key = format!("prewarm:{schema}");
        client
            .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key])
            .await
            .map_err(|e| pg_err("taking the migration lock", e))?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ( \
                   version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|e| pg_err("creating the schema", e))?;
        let current: i32 = client
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"),
                &[],
            )
            .await
            .map_err(|e| pg_err("reading schema_migrations", e))?
            .get(0);
        let what = format!("schema {schema}");
        for (version, name, sql) in pending(MIGRATIONS, current, &what, "use another schema")? {
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_err("starting a migration", e))?;
            tx.batch_execute(&sql.replace("{schema}", schema))
                .await
                .map_err(|e| pg_err(&format!("applying migration {version} ({name})"), e))?;
            tx.execute(
                &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
                &[version, name],
            )
            .await
            .map_err(|e| pg_err("recording a migration", e))?;
            tx.commit()
                .await
                .map_err(|e| pg_err("committing a migration", e))?;
            tracing::info!(schema, version, name, "postgres migration applied");
        }
        client
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key])
            .await
            .map_err(|e| pg_err("releasing the migration lock", e))?;
        let now: i64 = client
            .query_one(&format!("SELECT {DB_NOW_MS}"), &[])
            .await
            .map_err(|e| pg_err("reading the database's clock", e))?
            .get(0);
        Ok(now)
    }
    .await;
    drop(client);
    let _ = conn.await;
    result
}
