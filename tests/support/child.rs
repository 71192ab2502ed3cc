//! The child process of the crash tests: an engine on a durable store that saves its share of
//! the media, logging each save as it starts and again once the engine acknowledged it, warms
//! whatever the queue holds, and exits once nothing is pending.
//!
//! Configured by environment variables (set by the parent): `CHILD_DB` (`sqlite:<path>` or
//! `pg:<schema>`, with `DATABASE_URL`), `CHILD_STORE` (the FsStore folder), `CHILD_UPLOADS`
//! (the upload log), `CHILD_SAVES` (the save log), `CHILD_RUN` (a name for this run),
//! `CHILD_SAVE` (`a..b`: the media this run saves; `0..0` saves nothing and only drains),
//! `CHILD_CONCURRENCY`, and optionally `CHILD_BARRIER` (a path: write `<path>.<run>` when
//! ready, start once `<path>` exists).

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prewarm::upload::{UploadRequest, Uploaded};
use prewarm::{
    BotId, Error, FileId, FileIdCache, MediaKind, MemoryUploader, PrewarmEngine, PriorityQueue,
    Sha256, Uploader,
};

/// The bytes of media `i`: the same in every process.
pub fn media_bytes(i: usize) -> Bytes {
    Bytes::from(format!("media number {i} {}", "x".repeat(64 + i % 100)))
}

/// Media the uploader refuses for good (a permanent error): their jobs end dead.
pub fn is_refused(i: usize) -> bool {
    i % 23 == 7
}

pub fn bot() -> BotId {
    BotId::new("crashbot").expect("bot id")
}

/// Appends whole lines to a log shared by processes (one `write` per line, O_APPEND).
pub struct Log(Mutex<std::fs::File>);

impl Log {
    pub fn open(path: &str) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        Self(Mutex::new(file))
    }

    pub fn line(&self, line: String) {
        self.0
            .lock()
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .expect("append to a log");
    }
}

/// Wraps a MemoryUploader: each successful upload gets a file_id naming this run, and is
/// appended to the upload log (`<sha> <file_id>`) before the engine sees it.
pub struct LoggingUploader {
    inner: MemoryUploader,
    run: String,
    log: Log,
}

impl fmt::Debug for LoggingUploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingUploader")
            .field("run", &self.run)
            .finish()
    }
}

#[async_trait]
impl Uploader for LoggingUploader {
    fn bot(&self) -> &BotId {
        self.inner.bot()
    }

    async fn upload(&self, request: UploadRequest) -> prewarm::Result<Uploaded> {
        let sha = request.key.sha256.to_hex();
        let up = self.inner.upload(request).await?;
        let file_id = FileId::new(format!("{}@{}", up.file_id, self.run));
        self.log.line(format!("{sha} {file_id}"));
        Ok(Uploaded { file_id, ..up })
    }

    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool {
        self.inner.needs_bytes(kind, size, content_type)
    }

    async fn rejected(&self, key: &prewarm::MediaKey, file_id: &FileId) -> prewarm::Result<()> {
        self.inner.rejected(key, file_id).await
    }
}

pub async fn open_db(spec: &str) -> (Arc<dyn FileIdCache>, Arc<dyn PriorityQueue>) {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let s = prewarm::db::SqliteStore::open(path)
            .await
            .expect("open sqlite");
        (Arc::new(s.clone()), Arc::new(s))
    } else if let Some(schema) = spec.strip_prefix("pg:") {
        #[cfg(not(feature = "postgres"))]
        panic!("pg:{schema} needs the postgres feature");
        #[cfg(feature = "postgres")]
        {
            let url = std::env::var("DATABASE_URL").expect("DATABASE_URL for the child");
            let s = prewarm::db::PostgresStore::builder(url)
                .with_schema(schema)
                .with_pool_size(8)
                .connect()
                .await
                .expect("connect postgres");
            (Arc::new(s.clone()), Arc::new(s))
        }
    } else {
        panic!("CHILD_DB must be sqlite:<path> or pg:<schema>, got {spec:?}");
    }
}

fn range(spec: &str) -> Range<usize> {
    let (a, b) = spec.split_once("..").expect("CHILD_SAVE is a..b");
    a.parse().expect("a")..b.parse().expect("b")
}

/// Saves at once, so that the embedded database's writer batches many into one commit.
const SAVES_AT_ONCE: usize = 16;

pub async fn run() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let saves = range(&env("CHILD_SAVE"));
    let concurrency: usize = env("CHILD_CONCURRENCY").parse().expect("CHILD_CONCURRENCY");
    let run = env("CHILD_RUN");
    let (cache, queue) = open_db(&env("CHILD_DB")).await;
    let store = prewarm::store::FsStore::open(env("CHILD_STORE"))
        .await
        .expect("fs store");
    let refused: HashSet<Sha256> = (0..10_000)
        .filter(|&i| is_refused(i))
        .map(|i| Sha256::of(&media_bytes(i)))
        .collect();
    let uploader = LoggingUploader {
        inner: MemoryUploader::new(bot())
            .with_latency(Duration::from_millis(30)..Duration::from_millis(90))
            .with_faults(move |key, _| {
                refused.contains(&key.sha256).then(|| Error::Rejected {
                    message: "Bad Request: refused by the crash test".into(),
                })
            }),
        run: run.clone(),
        log: Log::open(&env("CHILD_UPLOADS")),
    };
    let engine = PrewarmEngine::builder()
        .with_store(Arc::new(store))
        .with_cache(cache.clone())
        .with_queue(queue.clone())
        .with_uploader(Arc::new(uploader))
        .with_concurrency(concurrency)
        .with_lease(Duration::from_secs(1))
        .with_poll_interval(Duration::from_millis(200))
        .with_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .expect("engine");
    // Instances started together begin together: each says it is ready, then waits for go.
    if let Ok(barrier) = std::env::var("CHILD_BARRIER") {
        std::fs::write(format!("{barrier}.{run}"), b"ready").expect("ready file");
        while !std::path::Path::new(&barrier).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let running = engine.spawn();
    let log = Log::open(&env("CHILD_SAVES"));
    futures::stream::iter(saves)
        .for_each_concurrent(SAVES_AT_ONCE, |i| {
            let (engine, log, run) = (&engine, &log, &run);
            async move {
                log.line(format!("{run} start {i}"));
                engine
                    .save(&bot(), media_bytes(i), MediaKind::Photo)
                    .await
                    .expect("save");
                // Acknowledged: the engine answered, so the media must never be lost.
                log.line(format!("{run} ack {i}"));
            }
        })
        .await;
    // Every acknowledged media was cached or had a job when saved; a job finishes by caching
    // first or by dying. So once nothing is pending, every one is ready or dead.
    loop {
        let depth = queue.depth().await.expect("depth");
        if depth.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await.expect("shutdown");
}
