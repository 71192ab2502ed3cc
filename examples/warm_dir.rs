//! Warms every regular file under a folder and prints one JSON line of figures.
//!
//! ```text
//! cargo run --release --example warm_dir -- DIR [--kind KIND] [--concurrency N] [--db PATH_OR_URL] [--demo]
//! ```
//!
//! The media kind of each file comes from its first bytes, then its extension (`--kind` forces
//! one). New files are stored, then warmed; files already warm are skipped, so a second run
//! uploads and stores nothing, and a run killed midway finishes the rest when run again. The
//! configuration is [`PrewarmEngine::from_env`]'s: with `TELEGRAM_BOT_TOKEN`,
//! `MEDIA_WARMUP_CHAT_IDS` and the `R2_*` variables it warms for real; `--demo` (as
//! `PREWARM_DEMO=1`) runs it against the crate's fake Bot API instead. The cache and queue live in `--db` (default
//! `PREWARM_DB`, else `.prewarm/warm_dir.sqlite` in the current folder).
//!
//! Exit code 0 when every file is ready, 1 when any failed (each named on stderr with its
//! reason), 2 on bad arguments or configuration.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use prewarm::{BotId, Error, MediaKey, MediaKind, PrewarmEngine, Sha256, Sha256Hasher};

/// Files larger than this are streamed from disk rather than read whole.
const READ_WHOLE_MAX: u64 = 64 * 1024 * 1024;

struct Args {
    dir: PathBuf,
    kind: Option<MediaKind>,
    concurrency: Option<usize>,
    db: Option<String>,
    demo: bool,
}

const USAGE: &str =
    "usage: warm_dir DIR [--kind KIND] [--concurrency N] [--db PATH_OR_URL] [--demo]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let (mut kind, mut concurrency, mut db) = (None, None, None);
    let mut demo = false;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--kind" => {
                kind = Some(
                    value("--kind")?
                        .parse::<MediaKind>()
                        .map_err(|e| e.to_string())?,
                )
            }
            "--concurrency" => {
                let v = value("--concurrency")?;
                concurrency = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or(format!(
                            "--concurrency {v:?}: expected a whole number from 1 to 1024"
                        ))?,
                );
            }
            "--db" => db = Some(value("--db")?),
            "--demo" => demo = true,
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path if dir.is_none() => dir = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    let dir = dir.ok_or("DIR is missing")?;
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    Ok(Args {
        dir,
        kind,
        concurrency,
        db,
        demo,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("warm_dir: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Set before any thread exists: the runtime below starts after this.
    let db = args.db.clone().or_else(|| std::env::var("PREWARM_DB").ok());
    let db = db.unwrap_or_else(|| {
        let _ = std::fs::create_dir_all(".prewarm");
        ".prewarm/warm_dir.sqlite".to_owned()
    });
    // SAFETY: single-threaded here; no other code reads the environment concurrently.
    unsafe {
        std::env::set_var("PREWARM_DB", &db);
        if args.demo {
            std::env::set_var("PREWARM_DEMO", "1");
        }
        if let Some(n) = args.concurrency {
            std::env::set_var("MEDIA_PREWARM_CONCURRENCY", n.to_string());
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warm_dir: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(args))
}

struct Outcome {
    path: PathBuf,
    result: Result<Option<Duration>, String>,
}

async fn run(args: Args) -> ExitCode {
    let setup = match PrewarmEngine::from_env().await {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("warm_dir: {e}");
            return ExitCode::from(2);
        }
    };
    if setup.is_demo() {
        eprintln!("warm_dir: demo mode (the fake Bot API on loopback)");
    }
    let engine = setup.engine.clone();
    let bot = setup.bot.clone();
    let running = engine.spawn();

    let files = match list_files(&args.dir) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("warm_dir: reading {}: {e}", args.dir.display());
            return ExitCode::from(2);
        }
    };
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} ready, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let mut skipped = 0u64;
    let mut waits = Vec::new();
    let mut outcomes = Vec::new();
    // Keys saved by this run: a second file with the same bytes is not "warm when the run
    // started" even if the first one's warm has finished by the time it is read.
    let mut seen = HashSet::new();
    for path in files.iter().cloned() {
        let begun = Instant::now();
        match save(&engine, &bot, &path, args.kind, &mut seen).await {
            Ok(Saved::AlreadyWarm) => {
                skipped += 1;
                progress.inc(1);
                outcomes.push(Outcome {
                    path,
                    result: Ok(None),
                });
            }
            Ok(Saved::Queued(key)) => {
                let engine = engine.clone();
                let progress = progress.clone();
                let waiting = path.clone();
                let wait = tokio::spawn(async move {
                    let result = engine
                        .wait_ready(&key, Duration::from_secs(24 * 3600))
                        .await
                        .map(|_| Some(begun.elapsed()))
                        .map_err(|e| e.to_string());
                    progress.inc(1);
                    result
                });
                waits.push((waiting, wait));
            }
            Err(e) => {
                progress.inc(1);
                outcomes.push(Outcome {
                    path,
                    result: Err(e.to_string()),
                });
            }
        }
    }
    for (path, wait) in waits {
        let result = wait
            .await
            .unwrap_or_else(|e| Err(format!("waiting for it failed: {e}")));
        outcomes.push(Outcome { path, result });
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    let metrics = engine.metrics().await.unwrap_or_default();
    let _ = running.shutdown().await;

    let mut times: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().copied().flatten())
        .collect();
    times.sort_unstable();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    for o in &failed {
        if let Err(reason) = &o.result {
            eprintln!("failed: {}: {reason}", o.path.display());
        }
    }
    let ready = outcomes.len() as u64 - failed.len() as u64;
    let warmed = times.len() as u64;
    let pct = |q: f64| -> u128 {
        if times.is_empty() {
            return 0;
        }
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_millis()
    };
    let per_minute = if elapsed.is_zero() {
        0.0
    } else {
        warmed as f64 * 60.0 / elapsed.as_secs_f64()
    };
    println!(
        "{{\"files\":{},\"ready\":{},\"failed\":{},\"skipped\":{},\"uploads\":{},\"bytes\":{},\"elapsed_ms\":{},\"per_minute\":{:.1},\"p50_ms\":{},\"p95_ms\":{},\"p99_ms\":{}}}",
        files.len(),
        ready,
        failed.len(),
        skipped,
        metrics.uploads,
        metrics.stored_bytes,
        elapsed.as_millis(),
        per_minute,
        pct(0.50),
        pct(0.95),
        pct(0.99),
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

enum Saved {
    AlreadyWarm,
    Queued(MediaKey),
}

/// Stores and queues one file, unless its file_id is cached already.
async fn save(
    engine: &PrewarmEngine,
    bot: &BotId,
    path: &Path,
    forced: Option<MediaKind>,
    seen: &mut HashSet<MediaKey>,
) -> prewarm::Result<Saved> {
    let io = |e: std::io::Error| Error::Io {
        context: format!("reading {}", path.display()),
        source: e,
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    let head = read_head(path).await.map_err(io)?;
    let kind = forced.unwrap_or_else(|| detect_kind(&head, path));
    if size <= READ_WHOLE_MAX {
        let bytes = Bytes::from(tokio::fs::read(path).await.map_err(io)?);
        let key = MediaKey::new(bot.clone(), Sha256::of(&bytes), kind);
        if !seen.contains(&key) && engine.cached(&key).await?.is_some() {
            return Ok(Saved::AlreadyWarm);
        }
        seen.insert(key);
        return engine.save(bot, bytes, kind).await.map(Saved::Queued);
    }
    // Too large to read whole: hash it as a stream first, then stream it into the engine,
    // which refuses it as soon as it passes the kind's limit.
    let mut hasher = Sha256Hasher::new();
    let mut stream = std::pin::pin!(file_stream(path).await.map_err(io)?);
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.map_err(io)?);
    }
    let key = MediaKey::new(bot.clone(), hasher.finish(), kind);
    if !seen.contains(&key) && engine.cached(&key).await?.is_some() {
        return Ok(Saved::AlreadyWarm);
    }
    seen.insert(key);
    let stream = file_stream(path).await.map_err(io)?;
    engine
        .save_stream(bot, stream, kind)
        .await
        .map(Saved::Queued)
}

async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut head = vec![0u8; 64];
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

async fn file_stream(
    path: &Path,
) -> std::io::Result<impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    Ok(futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1024 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}

/// Every regular file under `dir`, sorted, skipping the tool's own `.prewarm` folder.
fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && entry.file_name() != ".prewarm" {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The kind from the file's first bytes, then its extension; a document when neither tells.
fn detect_kind(head: &[u8], path: &Path) -> MediaKind {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let brand = head.get(8..12).unwrap_or_default();
    if starts(b"\xFF\xD8\xFF") || starts(b"\x89PNG\r\n\x1a\n") {
        return MediaKind::Photo;
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return MediaKind::Animation;
    }
    if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return MediaKind::Sticker;
    }
    if head.get(4..8) == Some(b"ftyp") {
        return if brand == b"M4A " {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
    }
    if starts(b"\x1A\x45\xDF\xA3") {
        return MediaKind::Video;
    }
    if starts(b"OggS") {
        return MediaKind::Voice;
    }
    if starts(b"ID3") || starts(b"fLaC") || starts(b"\xFF\xFB") || starts(b"\xFF\xF3") {
        return MediaKind::Audio;
    }
    if starts(b"%PDF") || starts(b"PK\x03\x04") {
        return MediaKind::Document;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" => MediaKind::Photo,
        "gif" => MediaKind::Animation,
        "mp4" | "mov" | "mkv" | "webm" => MediaKind::Video,
        "mp3" | "m4a" | "flac" | "wav" => MediaKind::Audio,
        "ogg" | "oga" | "opus" => MediaKind::Voice,
        "webp" | "tgs" => MediaKind::Sticker,
        _ => MediaKind::Document,
    }
}
