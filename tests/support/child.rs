//! The child process of the crash and many-instance tests: an engine warming N media on a
//! durable store, logging every successful upload, until every media is ready.
//!
//! Configured by environment variables (set by the parent):
//! `CHILD_DB` (`sqlite:<path>` or `pg:<schema>`, with `DATABASE_URL`), `CHILD_STORE` (the
//! FsStore folder), `CHILD_LOG` (the upload log), `CHILD_RUN` (a name for this run), `CHILD_N`
//! (how many media), `CHILD_CONCURRENCY`, and optionally `CHILD_BARRIER` (a path: write
//! `<path>.<run>` when ready, start once `<path>` exists).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prewarm::upload::{UploadRequest, Uploaded};
use prewarm::{
    BotId, FileId, FileIdCache, MediaKind, MemoryUploader, PrewarmEngine, PriorityQueue, Uploader,
};

/// The bytes of media `i`: the same in every process.
pub fn media_bytes(i: usize) -> Bytes {
    Bytes::from(format!("media number {i} {}", "x".repeat(64 + i % 100)))
}

pub fn bot() -> BotId {
    BotId::new("crashbot").expect("bot id")
}

/// Wraps a MemoryUploader: each successful upload gets a file_id naming this run, and is
/// appended to the log (one `write` per line, O_APPEND) before the engine sees it.
pub struct LoggingUploader {
    inner: MemoryUploader,
    run: String,
    log: Mutex<std::fs::File>,
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
        let line = format!("{sha} {file_id}\n");
        self.log
            .lock()
            .unwrap()
            .write_all(line.as_bytes())
            .expect("append to the upload log");
        Ok(Uploaded { file_id, ..up })
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

pub async fn run() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let n: usize = env("CHILD_N").parse().expect("CHILD_N");
    let concurrency: usize = env("CHILD_CONCURRENCY").parse().expect("CHILD_CONCURRENCY");
    let run = env("CHILD_RUN");
    let (cache, queue) = open_db(&env("CHILD_DB")).await;
    let store = prewarm::store::FsStore::open(env("CHILD_STORE"))
        .await
        .expect("fs store");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env("CHILD_LOG"))
        .expect("open the upload log");
    let uploader = LoggingUploader {
        inner: MemoryUploader::new(bot())
            .with_latency(Duration::from_millis(30)..Duration::from_millis(90)),
        run,
        log: Mutex::new(log),
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
        std::fs::write(format!("{barrier}.{}", env("CHILD_RUN")), b"ready").expect("ready file");
        while !std::path::Path::new(&barrier).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let running = engine.spawn();
    for i in 0..n {
        engine
            .save(&bot(), media_bytes(i), MediaKind::Photo)
            .await
            .expect("save");
    }
    // Every media was cached or had a job when saved; a job finishes by caching first. So
    // once nothing is pending, everything is ready.
    loop {
        let depth = queue.depth().await.expect("depth");
        if depth.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await.expect("shutdown");
}
