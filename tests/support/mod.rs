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

pub mod child;
pub mod pg_fill;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};

/// Starts this test binary again as a child running `child_process_entry`.
pub fn spawn_child(envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PREWARM_CHILD", "1")
    .stdout(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn the child")
}

/// The upload log: for each sha256 (hex), the file_ids uploaded, in log order.
pub fn read_log(path: &Path) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let (sha, id) = line.split_once(' ').expect("log line");
        out.entry(sha.to_owned()).or_default().push(id.to_owned());
    }
    out
}
