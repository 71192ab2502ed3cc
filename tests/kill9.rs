//! `prewarm warm` killed with SIGKILL while Telegram handles its uploads, then run again:
//! every file_id acknowledged before the kill survives, every media ends warm, and nothing
//! is uploaded to Telegram twice. The fake Bot API runs in this process, so it outlives the
//! killed one and counts every upload of both runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::upload::UploadJournal;
use prewarm::{BotId, FileIdCache, MediaKey, MediaKind, Sha256, SqliteStore};
use serde_json::Value;

const TOKEN: &str = "123456:AAE-fake-secret-token-0123456789";
/// Six private chats, which share the bot's message counter, and two supergroups, which
/// count their own.
const CHATS: [i64; 8] = [
    201,
    202,
    203,
    204,
    205,
    206,
    -1_001_000_000_201,
    -1_001_000_000_202,
];
const FILES: usize = 48;

fn warm(folder: &Path, state: &Path, api: &str) -> Command {
    let chats: Vec<String> = CHATS.iter().map(i64::to_string).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prewarm"));
    cmd.args(["warm", folder.to_str().expect("utf-8"), "--json", "--db"])
        .arg(state.join("db.sqlite"))
        .stdin(Stdio::null())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_BASE", api)
        .env("MEDIA_WARMUP_CHAT_IDS", chats.join(","))
        .env("PREWARM_MEDIA_DIR", state.join("media"));
    cmd
}

fn key(bytes: &[u8]) -> MediaKey {
    MediaKey::new(
        BotId::new("123456").expect("bot"),
        Sha256::of(bytes),
        MediaKind::Photo,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_killed_mid_upload_uploads_nothing_twice() {
    // Telegram takes 0.6 to 1.2 s over each upload: at any instant several messages exist
    // whose replies have not arrived.
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(CHATS)
        .with_limits(FakeLimits::telegram())
        .with_latency(Latency::uniform(
            Duration::from_millis(600)..Duration::from_millis(1_200),
        ))
        .start()
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let state = tempfile::tempdir().expect("state");
    let mut keys = Vec::new();
    for i in 0..FILES {
        let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
        jpeg.extend_from_slice(format!("photo {i}").as_bytes());
        jpeg.resize(4_000 + i, b'.');
        std::fs::write(dir.path().join(format!("p{i:02}.jpg")), &jpeg).expect("write");
        keys.push(key(&jpeg));
    }

    let mut child = warm(dir.path(), state.path(), &fake.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prewarm warm");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.stats().messages < 16 {
        assert!(Instant::now() < deadline, "the first run made no progress");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the first run ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    // What the killed run acknowledged, and what it left in flight.
    let db = SqliteStore::open(state.path().join("db.sqlite"))
        .await
        .expect("open the killed run's database");
    let mut acknowledged = Vec::new();
    for k in &keys {
        if let Some(file_id) = db.get(k).await.expect("cache") {
            acknowledged.push((k.clone(), file_id));
        }
    }
    let pending = db.pending(&keys[0].bot).await.expect("journal");
    assert!(
        !pending.is_empty(),
        "the kill caught uploads in flight (else this test proves nothing)"
    );
    assert!(acknowledged.len() < FILES, "the kill came before the end");
    drop(db);

    let out = warm(dir.path(), state.path(), &fake.base_url())
        .output()
        .expect("run again");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON report"),
    )
    .expect("JSON");
    assert_eq!(report["ready"], FILES, "every media warm: {report}");

    let db = SqliteStore::open(state.path().join("db.sqlite"))
        .await
        .expect("open");
    for (k, file_id) in &acknowledged {
        assert_eq!(
            db.get(k).await.expect("cache").as_ref(),
            Some(file_id),
            "{k}: acknowledged before the kill, kept after it"
        );
    }
    for k in &keys {
        let uploads = fake.uploads_of(&k.sha256);
        assert_eq!(
            uploads.succeeded,
            1,
            "{k}: uploaded to Telegram once ({uploads:?}); {} sends were pending at the kill",
            pending.len()
        );
    }
    let stats = fake.stats();
    assert!(
        stats.forwards >= 1,
        "the rerun looked for the sends in flight: {stats:?}"
    );
    assert_eq!(stats.violations, 0, "{stats:?}");
}
