//! Crash tests that count: children log every save the engine acknowledged, are SIGKILLed
//! mid-run (while saves are in flight, so inside an open group commit of the embedded
//! database), and a last run only drains the queue, saving nothing. Every acknowledged media
//! must then be ready (its file_id cached, one its uploads answered) or dead (the media the
//! uploader refuses), and no job may be left queued, delayed or claimed. A backend that lost
//! an acknowledged push or file_id fails here: nobody saves the media again.
//!
//! PostgreSQL tests read `DATABASE_URL`; each uses its own schema. Unset, they fail when
//! `CI=true` and skip with a notice elsewhere.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use prewarm::queue::JobState;
use prewarm::{MediaKey, MediaKind, Sha256};

use support::child::{bot, is_refused, media_bytes, open_db};
use support::{read_log, spawn_child};

/// The child process of the crash tests (it re-runs this binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests, started by them"]
async fn child_process_entry() {
    assert!(
        std::env::var("PREWARM_CHILD").is_ok(),
        "started by the crash tests with PREWARM_CHILD set, not by hand"
    );
    support::child::run().await;
}

fn key_of(i: usize) -> MediaKey {
    MediaKey::new(bot(), Sha256::of(&media_bytes(i)), MediaKind::Photo)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// The save log, per run: the media whose save started, and those acknowledged.
#[derive(Debug, Default, Clone)]
struct Saves {
    started: HashSet<usize>,
    acked: HashSet<usize>,
}

fn read_saves(path: &Path) -> HashMap<String, Saves> {
    let mut runs: HashMap<String, Saves> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let mut parts = line.split(' ');
        let (Some(run), Some(what), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue; // a line cut by the kill
        };
        let Ok(i) = i.parse() else { continue };
        let saves = runs.entry(run.to_owned()).or_default();
        match what {
            "start" => saves.started.insert(i),
            "ack" => saves.acked.insert(i),
            _ => false,
        };
    }
    runs
}

/// Waits until `run` has `acks` acknowledged saves, then SIGKILLs it at once, saves still in
/// flight. Answers how many saves were started but not acknowledged when it died.
fn kill_while_saving(child: &mut Child, saves: &Path, run: &str, acks: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = read_saves(saves).remove(run).unwrap_or_default();
        if now.acked.len() >= acks {
            break;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{run} exited before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "{run} acknowledged no save in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    let at_kill = read_saves(saves).remove(run).unwrap_or_default();
    at_kill.started.difference(&at_kill.acked).count()
}

fn wait_success(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not finish in 180 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks every acknowledged media: ready with a file_id one of its uploads answered, or dead
/// when the uploader refuses it; no job left unfinished. Answers (ready, dead).
async fn check_acknowledged(
    db: &str,
    acked: &HashSet<usize>,
    uploads: &HashMap<String, Vec<String>>,
) -> (usize, usize) {
    let (cache, queue) = open_db(db).await;
    let depth = queue.depth().await.expect("depth");
    assert_eq!(
        (depth.queued, depth.delayed, depth.claimed),
        (0, 0, 0),
        "jobs left unfinished: {depth:?}"
    );
    let (mut ready, mut dead) = (0, 0);
    for &i in acked {
        let key = key_of(i);
        let cached = cache.get(&key).await.expect("cache get");
        let job = queue.get(&key).await.expect("queue get");
        if is_refused(i) {
            assert!(
                matches!(&job, Some(info) if info.state == JobState::Dead),
                "media {i} (refused) was acknowledged but its job is {job:?}"
            );
            assert!(cached.is_none(), "media {i} is refused yet has a file_id");
            dead += 1;
            continue;
        }
        let cached = cached.unwrap_or_else(|| {
            panic!("media {i} was acknowledged and is lost: no file_id, job {job:?}")
        });
        let ids = uploads
            .get(&key.sha256.to_hex())
            .unwrap_or_else(|| panic!("media {i} is ready but was never uploaded"));
        assert!(
            ids.iter().any(|id| id == cached.as_str()),
            "media {i}: the cached file_id {cached} is none of its uploads' {ids:?}"
        );
        assert!(job.is_none(), "media {i} is ready but kept a job: {job:?}");
        ready += 1;
    }
    assert_eq!(
        depth.dead as usize,
        queue.dead(10_000).await.expect("dead").len()
    );
    for info in queue.dead(10_000).await.expect("dead") {
        let i = (0..10_000).find(|&i| key_of(i) == info.job.key);
        assert!(
            i.is_some_and(is_refused),
            "a media the uploader accepts died: {info:?}"
        );
    }
    (ready, dead)
}

/// Three runs in a child process on `db`, each saving 200 new media and SIGKILLed mid-way;
/// then a last run that saves nothing and drains the queue; then the count.
async fn crash_and_count(db: &str, dir: &Path) {
    const PER_RUN: usize = 200;
    let (uploads, saves) = (dir.join("uploads.log"), dir.join("saves.log"));
    let envs = |run: &str, range: String| {
        vec![
            ("CHILD_DB", db.to_owned()),
            ("CHILD_STORE", dir.join("media").display().to_string()),
            ("CHILD_UPLOADS", uploads.display().to_string()),
            ("CHILD_SAVES", saves.display().to_string()),
            ("CHILD_RUN", run.to_owned()),
            ("CHILD_SAVE", range),
            ("CHILD_CONCURRENCY", "4".to_owned()),
        ]
    };
    let mut in_flight = Vec::new();
    for round in 0..3 {
        let run = format!("killed{round}");
        let range = format!("{}..{}", round * PER_RUN, (round + 1) * PER_RUN);
        let mut child = spawn_child(&envs(&run, range));
        let acks = fastrand::usize(20..150);
        in_flight.push(kill_while_saving(&mut child, &saves, &run, acks));
    }
    let uploads_before = lines(&uploads);
    let mut child = spawn_child(&envs("drain", "0..0".to_owned()));
    wait_success(&mut child, "the draining run");

    let runs = read_saves(&saves);
    assert!(
        !runs.contains_key("drain"),
        "the last run saved something: it must only drain"
    );
    let acked: HashSet<usize> = runs
        .values()
        .flat_map(|s| s.acked.iter().copied())
        .collect();
    let drained = lines(&uploads) - uploads_before;
    eprintln!(
        "{db}: {} saves acknowledged by the killed runs, {in_flight:?} in flight at the kills, \
         {uploads_before} uploads before the drain, {drained} by it",
        acked.len()
    );
    assert!(
        in_flight.iter().any(|&n| n > 0),
        "no kill landed while saves were in flight (inside an open group commit)"
    );
    assert!(
        drained > 0,
        "the killed runs left no acknowledged work: the kills came too late"
    );
    let (ready, dead) = check_acknowledged(db, &acked, &read_log(&uploads)).await;
    assert_eq!(ready + dead, acked.len());
    assert!(
        dead > 0,
        "no refused media among the acknowledged: the test is too small"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_save_across_sigkills() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("prewarm.db").display());
    crash_and_count(&db, dir.path()).await;
}

#[cfg(feature = "postgres")]
mod pg {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::support::{database_url, drop_schema, unique_schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_keeps_every_acknowledged_save_across_sigkills() {
        let Some(url) = database_url("postgres_keeps_every_acknowledged_save") else {
            return;
        };
        let schema = unique_schema("crash");
        let dir = tempfile::tempdir().expect("temp dir");
        crash_and_count(&format!("pg:{schema}"), dir.path()).await;
        drop_schema(&url, &schema).await;
    }

    /// Three engines in three processes share one schema, each saving its own 300 of 900
    /// media; one is SIGKILLed mid-way through its saves. The two others finish theirs and
    /// drain the queue, the killed one's acknowledged media included, which nobody saves
    /// again. Only an upload the killed instance made and could not record is ever repeated.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_instances_share_postgres_and_keep_a_killed_ones_acknowledged_saves() {
        const N: usize = 900;
        const CONCURRENCY: usize = 8;
        let Some(url) = database_url("three_instances_share_postgres") else {
            return;
        };
        let schema = unique_schema("many");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("pg:{schema}");
        // Migrate once up front so the children start on an existing schema.
        drop(open_db(&db).await);
        // Each instance has its own media folder (an FsStore belongs to one process; instances
        // on many machines would share R2), holding every media's bytes before any starts:
        // another instance may claim a media's job. A put is no save: nothing is queued.
        for i in 0..3 {
            let store = prewarm::store::FsStore::open(dir.path().join(format!("media{i}")))
                .await
                .expect("fs store");
            for m in 0..N {
                prewarm::MediaStoreExt::put_bytes(&store, media_bytes(m))
                    .await
                    .expect("prefill");
            }
        }
        let barrier = dir.path().join("go");
        let saves = dir.path().join("saves.log");
        let logs: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("uploads{i}.log")))
            .collect();
        let mut children: Vec<_> = (0..3)
            .map(|i| {
                spawn_child(&[
                    ("CHILD_DB", db.clone()),
                    (
                        "CHILD_STORE",
                        dir.path().join(format!("media{i}")).display().to_string(),
                    ),
                    ("CHILD_UPLOADS", logs[i].display().to_string()),
                    ("CHILD_SAVES", saves.display().to_string()),
                    ("CHILD_RUN", format!("instance{i}")),
                    ("CHILD_SAVE", format!("{}..{}", i * N / 3, (i + 1) * N / 3)),
                    ("CHILD_CONCURRENCY", CONCURRENCY.to_string()),
                    ("CHILD_BARRIER", barrier.display().to_string()),
                ])
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while (0..3).any(|i| !dir.path().join(format!("go.instance{i}")).exists()) {
            assert!(Instant::now() < deadline, "the instances did not get ready");
            for c in &mut children {
                assert!(
                    c.try_wait().expect("try_wait").is_none(),
                    "an instance died early"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(&barrier, b"go").expect("go");
        let in_flight = kill_while_saving(
            &mut children[0],
            &saves,
            "instance0",
            fastrand::usize(30..150),
        );
        wait_success(&mut children[1], "instance 1");
        wait_success(&mut children[2], "instance 2");

        let runs = read_saves(&saves);
        let killed_acked = runs["instance0"].acked.len();
        let acked: HashSet<usize> = runs
            .values()
            .flat_map(|s| s.acked.iter().copied())
            .collect();
        let per_log: Vec<_> = logs.iter().map(|l| read_log(l)).collect();
        let mut all: HashMap<String, Vec<String>> = HashMap::new();
        for log in &per_log {
            for (sha, ids) in log {
                all.entry(sha.clone())
                    .or_default()
                    .extend(ids.iter().cloned());
            }
        }
        let (ready, dead) = check_acknowledged(&db, &acked, &all).await;
        assert_eq!(ready + dead, acked.len());
        assert!(
            killed_acked < N / 3,
            "the killed instance finished its saves"
        );
        assert!(
            lines(&logs[1]) > 0 && lines(&logs[2]) > 0,
            "the work was shared"
        );
        let mut repeated = 0;
        for i in acked.iter().copied().filter(|&i| !is_refused(i)) {
            let sha = key_of(i).sha256.to_hex();
            let count = |l: &HashMap<String, Vec<String>>| l.get(&sha).map_or(0, Vec::len);
            let (killed, survivors) = (count(&per_log[0]), count(&per_log[1]) + count(&per_log[2]));
            assert!(
                survivors <= 1,
                "media {i} was uploaded {survivors} times by live instances"
            );
            assert!(
                killed <= 1,
                "media {i} was uploaded twice by the killed instance"
            );
            if killed + survivors > 1 {
                repeated += 1;
            }
        }
        eprintln!(
            "acknowledged {} ({killed_acked} by the killed instance, {in_flight} of its saves in \
             flight at the kill); ready {ready}, dead {dead}; {repeated} media uploaded twice",
            acked.len()
        );
        // Only uploads in flight in the killed instance (at most its concurrency) repeat.
        assert!(
            repeated <= CONCURRENCY,
            "{repeated} media were uploaded twice; at most {CONCURRENCY} were in flight"
        );
        drop_schema(&url, &schema).await;
    }
}
