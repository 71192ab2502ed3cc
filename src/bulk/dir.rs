//! [`WarmDir`]: warms every regular file under a folder, and reports what it did.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::detect::{HEAD_LEN, detect_kind};
use super::progress::Progress;
use super::save_all::{BulkSaver, SaveInput, SaveSource};
#[cfg(feature = "sqlite")]
use crate::db::{FileIndex, FileStat, IndexedFile};
use crate::engine::PrewarmEngine;
use crate::engine::metrics::MetricsSnapshot;
use crate::error::{Error, Result};
use crate::media::{BotId, MediaKind};

/// Index entries written in one transaction, at most.
#[cfg(feature = "sqlite")]
const INDEX_BATCH: usize = 512;

/// Warms every regular file under a folder: walks it, saves the files many at a time
/// ([`BulkSaver`]), waits for their warms and answers a [`WarmDirReport`]. What
/// `examples/warm_dir.rs` and `prewarm warm DIR` run.
///
/// A file's kind comes from its first bytes, then its extension
/// ([`detect_kind`](super::detect_kind)), unless [`with_kind`](Self::with_kind) forces one.
/// Files already warm are skipped, so a second run stores and uploads nothing, and a run
/// killed midway finishes the rest when run again. With a [`FileIndex`](crate::db::FileIndex)
/// (feature `sqlite`), a rerun reads no file whose path, size and modification time match
/// its entry: it costs a `stat` per file.
///
/// The engine must be running ([`PrewarmEngine::spawn`]) for the warms to finish.
///
/// ```no_run
/// use prewarm::bulk::WarmDir;
/// use prewarm::db::FileIndex;
/// use prewarm::PrewarmEngine;
///
/// # #[tokio::main]
/// # async fn main() -> prewarm::Result<()> {
/// let setup = PrewarmEngine::from_env().await?;
/// // Before the engine resumes what an interrupted run left queued: those uploads count too.
/// let baseline = setup.engine.metrics().await?;
/// let running = setup.engine.spawn();
/// let warm = WarmDir::new("media/")
///     .with_baseline(baseline)
///     .with_index(FileIndex::open(".prewarm/warm_dir.sqlite").await?);
/// let progress = warm.progress();
/// let ticker = tokio::spawn(async move {
///     loop {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///         eprintln!("{}", progress.snapshot());
///     }
/// });
/// let report = warm.run(&setup.engine, &setup.bot).await?;
/// ticker.abort();
/// println!("{}", report.to_json());
/// running.shutdown().await?;
/// std::process::exit(report.exit_code().into());
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct WarmDir {
    dir: PathBuf,
    kind: Option<MediaKind>,
    rehash: bool,
    #[cfg(feature = "sqlite")]
    index: Option<FileIndex>,
    max_in_flight: Option<usize>,
    max_bytes: Option<u64>,
    wait: Duration,
    progress: Progress,
    baseline: Option<MetricsSnapshot>,
}

/// One file that did not become ready, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    /// The file.
    pub path: PathBuf,
    /// Why: the save's or the warm's error.
    pub reason: String,
}

/// What a [`WarmDir`] run did. [`to_json`](Self::to_json) gives it as one JSON line.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WarmDirReport {
    /// Regular files found.
    pub files: u64,
    /// Files with a file_id at the end (warm before, or warmed by this run).
    pub ready: u64,
    /// Files that failed to save or to warm, with their reasons, in path order.
    pub failures: Vec<FileFailure>,
    /// Files warm before this run: nothing stored, nothing uploaded.
    pub skipped: u64,
    /// Files saved (queued to warm) by this run.
    pub saved: u64,
    /// Files answered from the file index without being read.
    pub skipped_by_index: u64,
    /// Files read and hashed.
    pub hashed: u64,
    /// Telegram uploads the engine started during the run (from its
    /// [baseline](WarmDir::with_baseline) when one was given).
    pub uploads: u64,
    /// Bytes written to the store during the run (from its baseline when one was given).
    pub stored_bytes: u64,
    /// From the start of the walk to the last warm.
    pub elapsed: Duration,
    /// Time from each warmed file's save starting to its file_id, sorted.
    pub time_to_ready: Vec<Duration>,
}

impl WarmDirReport {
    /// How many files failed.
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    /// Files warmed by this run a minute, over the whole run.
    pub fn per_minute(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.time_to_ready.len() as f64 * 60.0 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0 to 1) of the warmed files' time to ready.
    pub fn time_to_ready_quantile(&self, q: f64) -> Duration {
        let t = &self.time_to_ready;
        if t.is_empty() {
            return Duration::ZERO;
        }
        let i = ((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1;
        t[i]
    }

    /// The process exit code for this outcome: 0 when every file is ready, 1 when any
    /// failed. (2 is left for errors before the run: bad arguments or configuration.)
    pub fn exit_code(&self) -> u8 {
        if self.failures.is_empty() { 0 } else { 1 }
    }

    /// The figures as one line of JSON: `files`, `ready`, `failed`, `skipped`, `saved`,
    /// `skipped_by_index`, `hashed`, `uploads`, `bytes` (stored), `elapsed_ms`,
    /// `per_minute`, `p50_ms`, `p95_ms`, `p99_ms`. Failures are not in it: the caller names
    /// them (on stderr).
    pub fn to_json(&self) -> String {
        let ms = |q: f64| self.time_to_ready_quantile(q).as_millis();
        format!(
            "{{\"files\":{},\"ready\":{},\"failed\":{},\"skipped\":{},\"saved\":{},\"skipped_by_index\":{},\"hashed\":{},\"uploads\":{},\"bytes\":{},\"elapsed_ms\":{},\"per_minute\":{:.1},\"p50_ms\":{},\"p95_ms\":{},\"p99_ms\":{}}}",
            self.files,
            self.ready,
            self.failed(),
            self.skipped,
            self.saved,
            self.skipped_by_index,
            self.hashed,
            self.uploads,
            self.stored_bytes,
            self.elapsed.as_millis(),
            self.per_minute(),
            ms(0.50),
            ms(0.95),
            ms(0.99),
        )
    }
}

/// One file found by the walk.
#[derive(Debug, Clone)]
struct Found {
    path: PathBuf,
    size: u64,
    #[cfg(feature = "sqlite")]
    stat: FileStat,
}

/// What happened to one file.
#[derive(Debug, Default)]
struct Outcome {
    /// `Some(Ok(Some(t)))`: warmed after `t`; `Some(Ok(None))`: warm before; `Some(Err)`:
    /// failed; `None`: no answer (cannot happen once the run finished).
    result: Option<std::result::Result<Option<Duration>, String>>,
}

impl WarmDir {
    /// Warms the files under `dir`, with the defaults: kinds detected, no index, the
    /// [`BulkSaver`]'s bounds, a 24-hour wait for each warm.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            kind: None,
            rehash: false,
            #[cfg(feature = "sqlite")]
            index: None,
            max_in_flight: None,
            max_bytes: None,
            wait: Duration::from_secs(24 * 3600),
            progress: Progress::new(),
            baseline: None,
        }
    }

    /// Sends every file as `kind` (`None`: detect each file's kind).
    pub fn with_kind(mut self, kind: Option<MediaKind>) -> Self {
        self.kind = kind;
        self
    }

    /// Keeps (path, size, modification time) to content hash in `index`, and trusts it
    /// on reruns.
    #[cfg(feature = "sqlite")]
    pub fn with_index(mut self, index: FileIndex) -> Self {
        self.index = Some(index);
        self
    }

    /// Reads and hashes every file, trusting no index entry (and records them afresh).
    pub fn with_rehash(mut self, rehash: bool) -> Self {
        self.rehash = rehash;
        self
    }

    /// Saves running at once ([`BulkSaver::with_max_in_flight`]).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Bytes of the running saves held at once ([`BulkSaver::with_max_bytes`]).
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// How long to wait for each file's warm before counting it failed (default 24 h).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Counts the report's [`uploads`](WarmDirReport::uploads) and
    /// [`stored_bytes`](WarmDirReport::stored_bytes) from `baseline` (the engine's
    /// [`metrics`](PrewarmEngine::metrics)) instead of from the run's start. Take it before
    /// [`PrewarmEngine::spawn`]: a durable queue may hold jobs left by an earlier run that
    /// was interrupted, and the engine starts uploading them at once, before the run begins.
    /// Counted from the run's start, an upload begun then and finished after the run looked
    /// the media up is in neither `skipped` (it was not warm yet) nor `uploads`.
    pub fn with_baseline(mut self, baseline: MetricsSnapshot) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// The run's live counts, to render while [`run`](Self::run) goes on.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Walks the folder, saves every file, waits for every warm, and reports. A file that
    /// fails is a [`FileFailure`] in the report; the others go on.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be walked; the file index's error.
    pub async fn run(&self, engine: &PrewarmEngine, bot: &BotId) -> Result<WarmDirReport> {
        let started = Instant::now();
        let before = match &self.baseline {
            Some(baseline) => baseline.clone(),
            None => engine.metrics().await.unwrap_or_default(),
        };
        let dir = self.dir.clone();
        let files = tokio::task::spawn_blocking(move || list_files(&dir))
            .await
            .map_err(|e| Error::io("walking the folder", std::io::Error::other(e)))?
            .map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?;
        self.progress.set_total(files.len() as u64);
        let known = self.lookup(&files).await?;

        let files = Arc::new(files);
        let inputs = {
            let (files, forced) = (files.clone(), self.kind);
            futures::stream::iter(known.into_iter().enumerate()).then(move |(i, known)| {
                let files = files.clone();
                async move { input(&files[i], i, known, forced).await }
            })
        };
        let mut saver = BulkSaver::new(engine, bot).with_progress(self.progress.clone());
        if let Some(n) = self.max_in_flight {
            saver = saver.with_max_in_flight(n);
        }
        if let Some(b) = self.max_bytes {
            saver = saver.with_max_bytes(b);
        }
        let mut answers = saver.save_all(inputs);

        let mut outcomes: Vec<Outcome> = (0..files.len()).map(|_| Outcome::default()).collect();
        let mut waits = tokio::task::JoinSet::new();
        // Keys queued by this run: a second file with the same bytes is not "warm before".
        let mut queued = HashSet::new();
        #[cfg(feature = "sqlite")]
        let mut to_index = Vec::new();
        while let Some(done) = answers.next().await {
            let (i, detected) = done.tag;
            let key = match done.result {
                Ok(key) => key,
                Err(e) => {
                    outcomes[i].result = Some(Err(e.to_string()));
                    continue;
                }
            };
            #[cfg(feature = "sqlite")]
            if done.hashed && self.index.is_some() {
                let kind = detected.unwrap_or(key.kind);
                to_index.push((
                    files[i].stat.clone(),
                    IndexedFile {
                        sha256: key.sha256,
                        kind,
                    },
                ));
                if to_index.len() >= INDEX_BATCH {
                    self.record(std::mem::take(&mut to_index)).await;
                }
            }
            #[cfg(not(feature = "sqlite"))]
            let _ = detected;
            if done.already_warm && !queued.contains(&key) {
                outcomes[i].result = Some(Ok(None));
                continue;
            }
            queued.insert(key.clone());
            let begun = Instant::now() - done.elapsed;
            let (engine, wait, progress) = (engine.clone(), self.wait, self.progress.clone());
            waits.spawn(async move {
                let result = engine.wait_ready(&key, wait).await;
                match &result {
                    Ok(_) => progress.record_ready(),
                    Err(_) => progress.record_failed(),
                }
                (
                    i,
                    result
                        .map(|_| Some(begun.elapsed()))
                        .map_err(|e| e.to_string()),
                )
            });
        }
        #[cfg(feature = "sqlite")]
        self.record(to_index).await;
        while let Some(joined) = waits.join_next().await {
            match joined {
                Ok((i, result)) => outcomes[i].result = Some(result),
                Err(e) => tracing::error!(error = %e, "a warm waiter panicked"),
            }
        }
        let elapsed = started.elapsed();
        let after = engine.metrics().await.unwrap_or_default();
        let snap = self.progress.snapshot();

        let mut report = WarmDirReport {
            files: files.len() as u64,
            ready: 0,
            failures: Vec::new(),
            skipped: 0,
            saved: snap.saved,
            skipped_by_index: snap.skipped_by_index,
            hashed: snap.hashed,
            uploads: after.uploads.saturating_sub(before.uploads),
            stored_bytes: after.stored_bytes.saturating_sub(before.stored_bytes),
            elapsed,
            time_to_ready: Vec::new(),
        };
        for (file, outcome) in files.iter().zip(outcomes) {
            match outcome.result {
                Some(Ok(None)) => {
                    report.ready += 1;
                    report.skipped += 1;
                }
                Some(Ok(Some(t))) => {
                    report.ready += 1;
                    report.time_to_ready.push(t);
                }
                Some(Err(reason)) => report.failures.push(FileFailure {
                    path: file.path.clone(),
                    reason,
                }),
                None => report.failures.push(FileFailure {
                    path: file.path.clone(),
                    reason: "no answer (the warm waiter failed)".to_owned(),
                }),
            }
        }
        report.time_to_ready.sort_unstable();
        Ok(report)
    }

    /// Each file's index entry, when it matches and may be trusted.
    #[cfg(feature = "sqlite")]
    async fn lookup(&self, files: &[Found]) -> Result<Vec<Option<IndexedFile>>> {
        match &self.index {
            Some(index) if !self.rehash => {
                index
                    .lookup(files.iter().map(|f| f.stat.clone()).collect())
                    .await
            }
            _ => Ok(vec![None; files.len()]),
        }
    }

    #[cfg(not(feature = "sqlite"))]
    async fn lookup(&self, files: &[Found]) -> Result<Vec<Option<Known>>> {
        Ok(vec![None; files.len()])
    }

    /// Writes entries to the index; a failure costs only a hash on the next run.
    #[cfg(feature = "sqlite")]
    async fn record(&self, entries: Vec<(FileStat, IndexedFile)>) {
        if let Some(index) = &self.index
            && let Err(e) = index.record(entries).await
        {
            tracing::warn!(error = %e, "the file index was not updated; the next run hashes those files again");
        }
    }
}

#[cfg(feature = "sqlite")]
type Known = IndexedFile;
/// Without the `sqlite` feature there is no index: nothing is ever known.
#[cfg(not(feature = "sqlite"))]
#[derive(Debug, Clone, Copy)]
enum Known {}

/// The save input for one file: its hash trusted when the index knows it, else its kind read
/// from its first bytes (a file that cannot be read still gets an input: its save fails
/// with the reason).
async fn input(
    file: &Found,
    i: usize,
    known: Option<Known>,
    forced: Option<MediaKind>,
) -> SaveInput<(usize, Option<MediaKind>)> {
    #[cfg(feature = "sqlite")]
    if let Some(known) = known {
        return SaveInput {
            tag: (i, None),
            kind: forced.unwrap_or(known.kind),
            size: file.size,
            source: SaveSource::FileWithHash(file.path.clone(), known.sha256),
        };
    }
    #[cfg(not(feature = "sqlite"))]
    let _ = known;
    let detected = read_head(&file.path)
        .await
        .ok()
        .map(|head| detect_kind(&head, &file.path));
    SaveInput {
        tag: (i, detected),
        kind: forced.or(detected).unwrap_or(MediaKind::Document),
        size: file.size,
        source: SaveSource::File(file.path.clone()),
    }
}

async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut head = vec![0u8; HEAD_LEN];
    let mut n = 0;
    while n < head.len() {
        let read = file.read(&mut head[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    head.truncate(n);
    Ok(head)
}

/// Every regular file under `dir`, sorted, skipping the tools' own `.prewarm` folder.
fn list_files(dir: &Path) -> std::io::Result<Vec<Found>> {
    // Absolute, so that index entries do not depend on the working folder.
    let root = std::fs::canonicalize(dir)?;
    let mut files = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && entry.file_name() != ".prewarm" {
                pending.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let meta = entry.metadata()?;
                files.push(Found {
                    size: meta.len(),
                    #[cfg(feature = "sqlite")]
                    stat: FileStat::new(path.clone(), &meta),
                    path,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
