//! `examples/warm_dir.rs` end to end in demo mode: the JSON line's counts, the failures named
//! on stderr with exit code 1, an idempotent second run, a SIGKILL then resume, and reruns
//! answered from the file index without reading the files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The example binary `cargo test` built beside this test.
fn warm_dir_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join("warm_dir");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --all-features` builds the examples (a filtered run such as `--test warm_dir` does not: `cargo build --all-features --examples` first)",
        bin.display()
    );
    bin
}

/// A command running warm_dir in demo mode over `dir`, with its own media folder and database.
fn warm_dir(dir: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(warm_dir_bin());
    cmd.arg(dir)
        .arg("--demo")
        .arg("--db")
        .arg(state.join("db.sqlite"))
        .arg("--demo")
        .env("PREWARM_MEDIA_DIR", state.join("media"))
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("PREWARM_DEMO")
        .env_remove("MEDIA_WARMUP_CHAT_IDS")
        .env_remove("PREWARM_DB")
        .env_remove("DATABASE_URL")
        .env_remove("R2_ENDPOINT")
        .env_remove("R2_ACCOUNT_ID")
        .env_remove("R2_BUCKET")
        .stdin(Stdio::null());
    cmd
}

fn json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]))
}

fn bytes(seed: u64, len: usize, magic: &[u8]) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    v[..magic.len()].copy_from_slice(magic);
    v
}

const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0";
const MP4: &[u8] = b"\x00\x00\x00\x18ftypisom";

#[test]
fn warms_a_mixed_folder_names_failures_and_runs_again_idempotently() {
    let dir = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("state");
    let mut good_bytes = 0u64;
    let mut write = |name: &str, data: Vec<u8>, good: bool| {
        if good {
            good_bytes += data.len() as u64;
        }
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    };
    for i in 0..5 {
        write(
            &format!("photos/p{i}.jpg"),
            bytes(i, 20_000 + 1_000 * i as usize, JPEG),
            true,
        );
    }
    write("clips/c1.mp4", bytes(10, 300_000, MP4), true);
    write("clips/c2.bin", bytes(11, 200_000, MP4), true); // a video by its bytes
    write("anim.gif", bytes(12, 50_000, b"GIF89a"), true);
    write("doc.pdf", bytes(13, 40_000, b"%PDF-1.7"), true);
    write(
        "notes.txt",
        b"plain text, sent as a document".to_vec(),
        true,
    );
    write("empty.jpg", Vec::new(), false);
    write("huge.jpg", bytes(14, 10_000_001, JPEG), false);

    let out = warm_dir(dir.path(), state.path()).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 with failures; stderr: {stderr}"
    );
    let j = json_line(&out);
    assert_eq!(j["files"], 12, "{j}");
    assert_eq!(j["ready"], 10, "{j}");
    assert_eq!(j["failed"], 2, "{j}");
    assert_eq!(j["skipped"], 0, "{j}");
    assert_eq!(j["saved"], 10, "{j}");
    assert_eq!(
        j["hashed"], 12,
        "every file read, the two bad ones too: {j}"
    );
    assert_eq!(j["skipped_by_index"], 0, "{j}");
    assert!(j["uploads"].as_u64().unwrap() >= 10, "{j}");
    assert_eq!(j["bytes"].as_u64(), Some(good_bytes), "{j}");
    assert!(
        stderr.contains("empty.jpg") && stderr.contains("empty"),
        "the empty file is named with its reason: {stderr}"
    );
    assert!(
        stderr.contains("huge.jpg") && stderr.contains("10000000"),
        "the oversized file is named with its limit: {stderr}"
    );

    let again = warm_dir(dir.path(), state.path())
        .output()
        .expect("run again");
    assert_eq!(again.status.code(), Some(1));
    let j = json_line(&again);
    assert_eq!(j["skipped"], 10, "everything warm is skipped: {j}");
    assert_eq!(j["ready"], 10, "{j}");
    assert_eq!(j["uploads"], 0, "no Telegram upload on a second run: {j}");
    assert_eq!(j["bytes"], 0, "no store write on a second run: {j}");
    assert_eq!(j["saved"], 0, "{j}");
    assert_eq!(
        j["skipped_by_index"], 10,
        "the good files answered by the index: {j}"
    );
    assert_eq!(j["hashed"], 2, "only the two failed files read again: {j}");
}

/// Writes `data` over `path` and gives it back its modification time: a change `stat` cannot
/// see. Only a read of the file would notice.
fn overwrite_unseen(path: &Path, data: &[u8]) {
    let modified = std::fs::metadata(path)
        .expect("stat")
        .modified()
        .expect("mtime");
    std::fs::write(path, data).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(modified)
        .expect("set mtime");
}

#[test]
fn a_rerun_reads_no_file_whose_index_entry_matches_and_rehash_reads_them_all() {
    let dir = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("state");
    const FILES: u64 = 6;
    let path = |i: u64| dir.path().join(format!("p{i}.jpg"));
    for i in 0..FILES {
        std::fs::write(path(i), bytes(200 + i, 25_000, JPEG)).expect("write");
    }
    let run = |extra: &[&str]| {
        let out = warm_dir(dir.path(), state.path())
            .args(extra)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_line(&out)
    };
    let j = run(&[]);
    assert_eq!(
        (j["saved"].as_u64(), j["hashed"].as_u64()),
        (Some(FILES), Some(FILES)),
        "{j}"
    );

    // p0 now holds other bytes, its size and modification time unchanged. Had the rerun read
    // it, those bytes would be a new media, stored and uploaded.
    overwrite_unseen(&path(0), &bytes(300, 25_000, JPEG));
    let j = run(&[]);
    assert_eq!(j["hashed"], 0, "no file read: {j}");
    assert_eq!(j["skipped_by_index"], FILES, "{j}");
    assert_eq!(j["skipped"], FILES, "{j}");
    assert_eq!(j["uploads"], 0, "{j}");

    // --rehash reads every file and finds p0's new bytes.
    let j = run(&["--rehash"]);
    assert_eq!(j["hashed"], FILES, "{j}");
    assert_eq!(j["skipped_by_index"], 0, "{j}");
    assert_eq!(j["saved"], 1, "p0's new bytes: {j}");
    assert_eq!(j["skipped"], FILES - 1, "{j}");
    assert!(j["uploads"].as_u64().unwrap() >= 1, "{j}");

    // A file changed the ordinary way (new modification time) is hashed again, alone.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(path(1), bytes(301, 26_000, JPEG)).expect("write");
    let j = run(&[]);
    assert_eq!(j["hashed"], 1, "{j}");
    assert_eq!(j["skipped_by_index"], FILES - 1, "{j}");
    assert_eq!(j["saved"], 1, "{j}");
    assert_eq!(j["ready"], FILES, "{j}");
}

#[test]
fn a_run_killed_midway_finishes_the_rest_when_run_again() {
    let dir = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("state");
    const FILES: u64 = 60;
    for i in 0..FILES {
        std::fs::write(
            dir.path().join(format!("p{i:02}.jpg")),
            bytes(100 + i, 30_000, JPEG),
        )
        .expect("write");
    }
    let mut child = warm_dir(dir.path(), state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    // Demo mode warms a few dozen a second at most (Telegram's per-chat limits on 8 chats):
    // after 1 s the run is partway through its 60 files.
    std::thread::sleep(Duration::from_millis(1_000));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let out = warm_dir(dir.path(), state.path()).output().expect("resume");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_line(&out);
    assert_eq!(j["files"], FILES, "{j}");
    assert_eq!(j["ready"], FILES, "nothing lost: {j}");
    assert_eq!(j["failed"], 0, "{j}");
    let skipped = j["skipped"].as_u64().unwrap();
    assert!(
        skipped < FILES,
        "the first run was killed before it finished: {j}"
    );
    // The resumed engine uploads the killed run's queued jobs from its first instant, before
    // the walk looks anything up: counted from before the engine started (an upload begun
    // then and finished after its file was looked up is neither skipped nor, counted from the
    // walk's start, an upload of this run).
    assert!(
        j["uploads"].as_u64().unwrap() >= FILES - skipped,
        "every file not warm at the restart was uploaded by this run: {j}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    let state = tempfile::tempdir().expect("state");
    for args in [
        vec!["/definitely/not/a/folder"],
        vec![".", "--kind", "gif"],
        vec![".", "--concurrency", "0"],
        vec![".", "--frobnicate"],
    ] {
        let out = Command::new(warm_dir_bin())
            .args(&args)
            .env("PREWARM_MEDIA_DIR", state.path().join("media"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "no JSON line on bad arguments");
    }
}
