//! Helpers shared by the database tests.
#![allow(dead_code)]

/// The PostgreSQL URL tests use, from `DATABASE_URL`. Unset: a failure in CI (`CI=true`),
/// elsewhere `None` after a printed notice, and the test skips.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{test}: DATABASE_URL is not set, and CI=true: PostgreSQL tests must run in CI \
                 (export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
            );
            eprintln!(
                "NOTICE: skipping {test}: DATABASE_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema name of its own for one test, so tests run in parallel.
pub fn unique_schema(tag: &str) -> String {
    format!("t_{tag}_{}_{:08x}", std::process::id(), fastrand::u32(..))
}

/// Drops a test's schema.
#[cfg(feature = "postgres")]
pub async fn drop_schema(url: &str, schema: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to drop the schema");
    let conn = tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop schema");
    drop(client);
    let _ = conn.await;
}
