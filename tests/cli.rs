//! The `prewarm` binary end to end, against SQLite and PostgreSQL: `warm` warms a folder in
//! demo mode; `status`, `dead` and `requeue` read and repair a queue another process filled; `metrics` warms it in demo mode
//! and serves every metric the Grafana dashboard (`dashboards/prewarm.json`) queries; exit
//! codes 0, 1 and 2; `--help` on every command.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use prewarm::store::FsStore;
use prewarm::testkit::FakeBotApi;
use prewarm::{
    BotId, Job, MediaKey, MediaKind, MemoryUploader, PrewarmEngine, PriorityQueue, Sha256,
    SqliteStore, TelegramUploader, Timestamp, send_cached,
};
use serde_json::Value;

/// The demo bot's id: the numeric part of the fake Bot API's demo token.
const DEMO_BOT: &str = "100000001";

/// `prewarm ARGS` with only `envs` of the configuration variables set.
fn prewarm(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prewarm"));
    cmd.args(args).stdin(Stdio::null());
    for var in [
        "TELEGRAM_BOT_TOKEN",
        "MEDIA_WARMUP_CHAT_IDS",
        "PREWARM_DB",
        "PREWARM_DB_SCHEMA",
        "PREWARM_DEMO",
        "DATABASE_URL",
        "R2_ENDPOINT",
        "R2_ACCOUNT_ID",
        "R2_BUCKET",
        "PREWARM_MEDIA_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    prewarm(args, envs).output().expect("run prewarm")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("an exit code, not a signal")
}

fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn key(bot: &BotId) -> MediaKey {
    MediaKey::new(
        bot.clone(),
        Sha256::of(&fastrand::u128(..).to_le_bytes()),
        MediaKind::Photo,
    )
}

/// Fills `queue` as a bot's process would leave it: two jobs queued, one claimed and failed
/// for good with an error; answers the dead job's key.
async fn fill(queue: &dyn PriorityQueue, bot: &BotId) -> MediaKey {
    let now = Timestamp::now();
    let dead = key(bot);
    queue
        .push(Job::new(dead.clone(), 1234, now), now)
        .await
        .expect("push");
    let claim = queue
        .claim(
            "test",
            std::slice::from_ref(bot),
            1,
            Duration::from_secs(30),
            now,
        )
        .await
        .expect("claim");
    assert_eq!(claim.jobs.len(), 1);
    queue
        .fail(&claim.jobs[0].lease, "Bad Request: wrong file type")
        .await
        .expect("fail");
    for size in [10, 20] {
        queue
            .push(Job::new(key(bot), size, now), now)
            .await
            .expect("push");
    }
    dead
}

/// `status`, `dead` and `requeue` over the database `envs` name, which `fill` filled.
fn inspect_and_repair(envs: &[(&str, &str)], bot: &str, dead: &MediaKey) {
    let out = run(&["status", "--json"], envs);
    assert_eq!(code(&out), 0, "{out:?}");
    let status = json(&out);
    let row = status["bots"]
        .as_array()
        .and_then(|b| b.iter().find(|r| r["bot"] == bot))
        .unwrap_or_else(|| panic!("{bot} in {status}"))
        .clone();
    assert_eq!(row["queued"], 2, "{row}");
    assert_eq!(row["delayed"], 0, "{row}");
    assert_eq!(row["claimed"], 0, "{row}");
    assert_eq!(row["dead"], 1, "{row}");
    assert_eq!(row["uploads_last_minute"], 1, "{row}");
    let age = row["oldest_job_age_s"].as_f64().expect("an age");
    assert!((0.0..60.0).contains(&age), "{row}");

    let out = run(&["status"], envs);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("queued") && text.contains(bot), "{text}");

    let out = run(&["dead", "--json", "--limit", "10"], envs);
    assert_eq!(code(&out), 0, "{out:?}");
    let listed = json(&out);
    let jobs = listed["dead"].as_array().expect("a list");
    assert_eq!(jobs.len(), 1, "{listed}");
    assert_eq!(jobs[0]["key"], dead.to_string());
    assert_eq!(jobs[0]["kind"], "photo");
    assert_eq!(jobs[0]["size"], 1234);
    assert_eq!(jobs[0]["attempts"], 1, "the failed attempt counts");
    assert_eq!(jobs[0]["last_error"], "Bad Request: wrong file type");

    let key = dead.to_string();
    let out = run(&["requeue", &key, "--json"], envs);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(json(&out)["requeued"], 1);
    let out = run(&["requeue", &key], envs);
    assert_eq!(
        code(&out),
        1,
        "nothing left to requeue is a failure: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no dead job"));
    let out = run(&["requeue", "--all", "--json"], envs);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(json(&out)["requeued"], 0);

    let status = json(&run(&["status", "--json"], envs));
    let row = status["bots"]
        .as_array()
        .and_then(|b| b.iter().find(|r| r["bot"] == bot))
        .expect("the bot")
        .clone();
    assert_eq!(
        (row["queued"].as_u64(), row["dead"].as_u64()),
        (Some(3), Some(0)),
        "{row}"
    );
}

#[tokio::test]
async fn status_dead_and_requeue_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("queue.sqlite");
    let bot = BotId::new("shop_bot").expect("bot");
    let store = SqliteStore::open(&db).await.expect("open");
    let dead = fill(&store, &bot).await;
    drop(store);
    let db = db.to_str().expect("utf-8");
    tokio::task::spawn_blocking({
        let db = db.to_owned();
        move || inspect_and_repair(&[("PREWARM_DB", &db)], "shop_bot", &dead)
    })
    .await
    .expect("the checks");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn status_dead_and_requeue_on_postgres() {
    let Some(url) = support::database_url("status_dead_and_requeue_on_postgres") else {
        return;
    };
    let schema = support::unique_schema("cli");
    let store = prewarm::PostgresStore::builder(&url)
        .with_schema(&schema)
        .connect()
        .await
        .expect("connect");
    let bot = BotId::new("pg_bot").expect("bot");
    let dead = fill(&store, &bot).await;
    drop(store);
    let envs = [
        ("PREWARM_DB", url.clone()),
        ("PREWARM_DB_SCHEMA", schema.clone()),
    ];
    let result = tokio::task::spawn_blocking(move || {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        inspect_and_repair(&envs, "pg_bot", &dead)
    })
    .await;
    support::drop_schema(&url, &schema).await;
    result.expect("the checks");
}

#[test]
fn bad_arguments_and_configuration_exit_2_and_failures_exit_1() {
    for args in [&["status"][..], &["dead"], &["requeue", "--all"]] {
        let out = run(args, &[]);
        assert_eq!(code(&out), 2, "{args:?} without PREWARM_DB: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("PREWARM_DB"),
            "the fix is named: {out:?}"
        );
    }
    for args in [
        &["frobnicate"][..],
        &["dead", "--limit", "many"],
        &["requeue"],
        &["requeue", "x/photo/00", "--all"],
        &["metrics"],
        &["metrics", "--listen", "nowhere"],
        &["warm"],
        &["warm", "/definitely/not/a/folder"],
        &["warm", ".", "--kind", "gif"],
        &["warm", ".", "--concurrency", "0"],
    ] {
        assert_eq!(code(&run(args, &[])), 2, "{args:?}");
    }
    // Arguments clap refuses are reported as JSON too when `--json` was asked for.
    let out = run(&["dead", "--limit", "many", "--json"], &[]);
    assert_eq!(code(&out), 2, "{out:?}");
    let report = json(&out);
    assert_eq!(report["exit_code"], 2, "{report}");
    assert!(
        report["error"].as_str().is_some_and(|e| e.contains("many")),
        "the bad value is named: {report}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("q.sqlite");
    let db = db.to_str().expect("utf-8");
    let out = run(
        &["requeue", "shop_bot/photo/00", "--json"],
        &[("PREWARM_DB", db)],
    );
    assert_eq!(code(&out), 2, "{out:?}");
    assert_eq!(json(&out)["exit_code"], 2, "--json reports the error too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("BOT/KIND/SHA256"));
    let out = run(
        &["status"],
        &[
            ("PREWARM_DB", "postgres://postgres@127.0.0.1:5432/test"),
            ("PREWARM_DB_SCHEMA", "Bad-Name"),
        ],
    );
    assert_eq!(
        code(&out),
        2,
        "a malformed schema is configuration: {out:?}"
    );

    // A database that cannot be reached: a failure (1), and the password stays secret.
    #[cfg(feature = "postgres")]
    {
        let out = run(
            &["status"],
            &[(
                "PREWARM_DB",
                "postgres://ops:hunter2-secret@127.0.0.1:1/none",
            )],
        );
        assert_eq!(code(&out), 1, "{out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("hunter2-secret"),
            "{out:?}"
        );
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["dead", "--help"],
        &["requeue", "--help"],
        &["metrics", "--help"],
        &["warm", "--help"],
    ] {
        let out = run(args, &[]);
        assert_eq!(code(&out), 0, "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--json") && text.contains("Usage"),
            "{args:?}: {text}"
        );
    }
}

/// One GET of `url`'s path on its loopback address.
fn scrape(addr: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample `series` (name and labels as exposed), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Every metric name in the dashboard's PromQL expressions: identifiers that start with
/// `media_`, the prefix of every metric the crate exports.
fn dashboard_metrics() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/prewarm.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
            .expect("JSON");
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            let mut rest = expr;
            while let Some(at) = rest.find("media_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.push(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Metrics of the send path: exported by the bot's own process, the one that sends to users
/// with `send_cached`, not by `prewarm metrics`, which only warms.
fn sent_by_the_bot(name: &str) -> bool {
    name.starts_with("media_prewarm_send_")
}

/// Whether the Prometheus text `body` has a sample of `name`.
fn exported(body: &str, name: &str) -> bool {
    body.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{']))
    })
}

#[tokio::test]
async fn metrics_warms_the_queue_and_serves_what_the_dashboard_queries() {
    const MEDIA: usize = 6;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("queue.sqlite");
    let media = dir.path().join("media");
    // A bot's process saved media and stopped before warming them.
    {
        let bot = BotId::new(DEMO_BOT).expect("bot");
        let sqlite = Arc::new(SqliteStore::open(&db).await.expect("open"));
        let engine = PrewarmEngine::builder()
            .with_store(Arc::new(FsStore::open(&media).await.expect("media dir")))
            .with_cache(sqlite.clone())
            .with_queue(sqlite)
            .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
            .build()
            .expect("engine");
        for i in 0..MEDIA {
            let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
            jpeg.extend_from_slice(&(i as u64).to_le_bytes());
            jpeg.resize(2_000 + i, 7);
            engine
                .save(&bot, Bytes::from(jpeg), MediaKind::Photo)
                .await
                .expect("save");
        }
    }
    let (db, media) = (
        db.to_str().expect("utf-8").to_owned(),
        media.to_str().expect("utf-8").to_owned(),
    );
    let names = dashboard_metrics();
    assert!(names.len() >= 6, "the dashboard queries metrics: {names:?}");
    tokio::task::spawn_blocking(move || {
        let mut child = prewarm(
            &["metrics", "--listen", "127.0.0.1:0", "--json"],
            &[
                ("PREWARM_DB", &db),
                ("PREWARM_MEDIA_DIR", &media),
                ("PREWARM_DEMO", "1"),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prewarm metrics");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        let started: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(started["demo"], true, "{started}");
        let url = started["listening"].as_str().expect("a URL");
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let body = loop {
            let body = scrape(&addr);
            if sample(&body, "media_prewarm_warmed_total") == Some(MEDIA as f64) {
                break body;
            }
            assert!(Instant::now() < deadline, "not all warmed in 60 s:\n{body}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            sample(&body, "media_prewarm_uploads_total"),
            Some(MEDIA as f64),
            "{body}"
        );
        let queued = format!("media_prewarm_jobs{{bot=\"{DEMO_BOT}\",state=\"queued\"}}");
        assert_eq!(sample(&body, &queued), Some(0.0), "{body}");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !sent_by_the_bot(n) && !exported(&body, n))
            .collect();
        assert!(
            missing.is_empty(),
            "the dashboard queries {missing:?}, not exported:\n{body}"
        );
    })
    .await
    .expect("the checks");
}

/// The dashboard's send-path panels read what a bot's process exports: a send by upload, one
/// by file_id and a failed one, through `send_cached` against the fake Bot API, scraped from
/// this process's own Prometheus recorder.
#[tokio::test]
async fn a_bot_process_exports_the_send_path_metrics_the_dashboard_queries() {
    const TOKEN: &str = "424242:dashboard-token-not-a-secret";
    const WARMUP: i64 = -100_777;
    const USER: i64 = 5_001;
    const STRANGER: i64 = 5_002; // a chat the fake does not know: "chat not found"
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.001, 0.05, 0.15, 1.0],
        )
        .and_then(PrometheusBuilder::install_recorder)
        .expect("the recorder");
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([WARMUP, USER])
        .start()
        .await
        .expect("fake");
    let telegram = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats([WARMUP])
        .build()
        .expect("uploader");
    let bot = prewarm::Uploader::bot(&telegram).clone();
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(telegram.clone()))
        .build()
        .expect("engine");
    let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
    jpeg.resize(3_000, 9);
    // Saved while no worker runs: the first send finds no file_id and uploads.
    let key = engine
        .save(&bot, Bytes::from(jpeg), MediaKind::Photo)
        .await
        .expect("save");
    send_cached(&engine, &telegram, USER, &key, Duration::ZERO)
        .await
        .expect("a send by upload");
    send_cached(&engine, &telegram, USER, &key, Duration::ZERO)
        .await
        .expect("a send by the file_id the first one answered");
    send_cached(&engine, &telegram, STRANGER, &key, Duration::ZERO)
        .await
        .expect_err("an unknown chat");
    let m = engine.metrics().await.expect("metrics");
    assert_eq!(
        (m.sent_by_upload, m.sent_by_file_id, m.send_failures),
        (1, 1, 1),
        "{m:?}"
    );
    assert_eq!(m.send_latency.count, 2, "{m:?}");

    let body = handle.render();
    let names: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|n| sent_by_the_bot(n))
        .collect();
    assert!(names.len() >= 3, "the dashboard's send panels: {names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !exported(&body, n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, not exported:\n{body}"
    );
    for via in ["file_id", "upload"] {
        let count = format!("media_prewarm_send_latency_seconds_count{{via=\"{via}\"}}");
        assert_eq!(sample(&body, &count), Some(1.0), "{body}");
    }
    fake.shutdown().await;
}

#[test]
fn warm_warms_a_folder_names_failures_and_skips_on_a_rerun() {
    let state = tempfile::tempdir().expect("state");
    let db = state.path().join("db.sqlite");
    let db = db.to_str().expect("utf-8");
    warm_a_folder_twice(db, &[("PREWARM_DB", db)], state.path());
}

#[tokio::test]
async fn warm_on_postgres_warms_a_folder_and_skips_on_a_rerun() {
    let Some(url) = support::database_url("warm_on_postgres_warms_a_folder_and_skips_on_a_rerun")
    else {
        return;
    };
    let schema = support::unique_schema("cliwarm");
    let (u, sch) = (url.clone(), schema.clone());
    let result = tokio::task::spawn_blocking(move || {
        // The file index beside a PostgreSQL queue is a local file, under the working folder.
        let cwd = tempfile::tempdir().expect("cwd");
        warm_a_folder_twice(
            &u,
            &[
                ("PREWARM_DB", u.as_str()),
                ("PREWARM_DB_SCHEMA", sch.as_str()),
            ],
            cwd.path(),
        );
    })
    .await;
    support::drop_schema(&url, &schema).await;
    result.expect("the checks");
}

/// `prewarm warm` over a folder of 4 photos and an empty file, on the database `db` (which
/// `db_envs` name for `status`), run in `cwd`: the empty file fails and is named, the rest
/// is warm; a second run skips all and uploads nothing.
fn warm_a_folder_twice(db: &str, db_envs: &[(&str, &str)], cwd: &Path) {
    let dir = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("state");
    for i in 0..4u8 {
        let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
        jpeg.resize(3_000 + usize::from(i), i);
        std::fs::write(dir.path().join(format!("p{i}.jpg")), jpeg).expect("write");
    }
    std::fs::write(dir.path().join("empty.jpg"), b"").expect("write");
    let media = state.path().join("media");
    let media = media.to_str().expect("utf-8");
    let folder = dir.path().to_str().expect("utf-8");
    let mut envs = vec![("PREWARM_MEDIA_DIR", media), ("PREWARM_DEMO", "1")];
    envs.extend(db_envs.iter().filter(|(k, _)| *k != "PREWARM_DB"));
    let warm = |envs: &[(&str, &str)]| {
        prewarm(&["warm", folder, "--db", db, "--json"], envs)
            .current_dir(cwd)
            .output()
            .expect("run prewarm warm")
    };
    let first = warm(&envs);
    assert_eq!(code(&first), 1, "one file failed: {first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("empty.jpg"),
        "the failed file is named: {stderr}"
    );
    let report = json(&first);
    assert_eq!(report["files"], 5, "{report}");
    assert_eq!(report["ready"], 4, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["uploads"], 4, "{report}");

    let status = json(&run(&["status", "--json"], db_envs));
    let pending: u64 = status["bots"]
        .as_array()
        .expect("bots")
        .iter()
        .map(|b| b["queued"].as_u64().unwrap_or(0) + b["claimed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(pending, 0, "nothing left to warm: {status}");

    std::fs::remove_file(dir.path().join("empty.jpg")).expect("remove");
    let again = warm(&envs);
    assert_eq!(code(&again), 0, "{again:?}");
    let report = json(&again);
    assert_eq!(report["skipped"], 4, "all warm before: {report}");
    assert_eq!(report["uploads"], 0, "{report}");
}
