//! Warms every regular file under a folder and prints one JSON line of figures: a thin shell
//! over the library's [`WarmDir`].
//!
//! ```text
//! cargo run --release --example warm_dir -- DIR [--kind KIND] [--concurrency N] [--saves N]
//!     [--db PATH_OR_URL] [--rehash] [--demo]
//! ```
//!
//! The media kind of each file comes from its first bytes, then its extension (`--kind` forces
//! one). New files are stored, many at a time (`--saves`, default 32 in flight), then warmed;
//! files already warm are skipped, so a second run uploads and stores nothing, and a run killed
//! midway finishes the rest when run again. A rerun reads no file whose path, size and
//! modification time match the file index kept in the embedded database (`--rehash` reads and
//! hashes every file again). The configuration is [`PrewarmEngine::from_env`]'s; `--demo`
//! runs against the crate's fake Bot API even when `TELEGRAM_BOT_TOKEN` is set. The cache,
//! queue and file index live in `--db` (default `PREWARM_DB`, else `.prewarm/warm_dir.sqlite`
//! in the current folder; with a `postgres://` URL the file index is
//! `.prewarm/file_index.sqlite`).
//!
//! On a terminal, stderr shows saved, warming, ready and failed counts with rates and an ETA.
//! The JSON line: `files`, `ready`, `failed`, `skipped` (warm before), `saved`,
//! `skipped_by_index` (not read), `hashed`, `uploads`, `bytes` (stored), `elapsed_ms`,
//! `per_minute`, `p50_ms`, `p95_ms`, `p99_ms`.
//!
//! Exit code 0 when every file is ready, 1 when any failed (each named on stderr with its
//! reason), 2 on bad arguments or configuration.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use prewarm::bulk::WarmDir;
use prewarm::db::FileIndex;
use prewarm::{MediaKind, PrewarmEngine};

struct Args {
    dir: PathBuf,
    kind: Option<MediaKind>,
    concurrency: Option<usize>,
    saves: Option<usize>,
    db: Option<String>,
    rehash: bool,
    demo: bool,
}

const USAGE: &str = "usage: warm_dir DIR [--kind KIND] [--concurrency N] [--saves N] [--db PATH_OR_URL] [--rehash] [--demo]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let (mut kind, mut concurrency, mut saves, mut db) = (None, None, None, None);
    let (mut rehash, mut demo) = (false, false);
    let count = |flag: &str, v: String| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or(format!(
                "{flag} {v:?}: expected a whole number from 1 to 1024"
            ))
    };
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
            "--concurrency" => concurrency = Some(count("--concurrency", value("--concurrency")?)?),
            "--saves" => saves = Some(count("--saves", value("--saves")?)?),
            "--db" => db = Some(value("--db")?),
            "--rehash" => rehash = true,
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
        saves,
        db,
        rehash,
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
    let db = args.db.clone().or_else(|| std::env::var("PREWARM_DB").ok());
    let db = db.unwrap_or_else(|| ".prewarm/warm_dir.sqlite".to_owned());
    let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
    let index = if postgres {
        PathBuf::from(".prewarm/file_index.sqlite")
    } else {
        PathBuf::from(&db)
    };
    if let Some(parent) = index.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    // SAFETY: single-threaded here; no other code reads the environment concurrently (the
    // runtime starts below).
    unsafe {
        std::env::set_var("PREWARM_DB", &db);
        if let Some(n) = args.concurrency {
            std::env::set_var("MEDIA_PREWARM_CONCURRENCY", n.to_string());
        }
        if args.demo {
            std::env::remove_var("TELEGRAM_BOT_TOKEN");
            std::env::set_var("PREWARM_DEMO", "1");
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warm_dir: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(args, index))
}

async fn run(args: Args, index: PathBuf) -> ExitCode {
    let setup = match PrewarmEngine::from_env().await {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("warm_dir: {e}");
            return ExitCode::from(2);
        }
    };
    if setup.is_demo() {
        eprintln!("warm_dir: demo mode (the fake Bot API on loopback; nothing goes to Telegram)");
    }
    let index = match FileIndex::open(&index).await {
        Ok(index) => index,
        Err(e) => {
            eprintln!("warm_dir: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the engine starts: it may resume an interrupted run's jobs at once, and those
    // uploads are this run's too.
    let baseline = setup.engine.metrics().await.unwrap_or_default();
    let running = setup.engine.spawn();
    let mut warm = WarmDir::new(&args.dir)
        .with_baseline(baseline)
        .with_kind(args.kind)
        .with_index(index)
        .with_rehash(args.rehash);
    if let Some(n) = args.saves {
        warm = warm.with_max_in_flight(n);
    }
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(render(warm.progress())));
    let result = warm.run(&setup.engine, &setup.bot).await;
    if let Some(ticker) = ticker {
        ticker.abort();
        eprintln!();
    }
    let _ = running.shutdown().await;
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("warm_dir: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &report.failures {
        eprintln!("failed: {}: {}", f.path.display(), f.reason);
    }
    println!("{}", report.to_json());
    ExitCode::from(report.exit_code())
}

/// Redraws the progress line on stderr twice a second.
async fn render(progress: prewarm::bulk::Progress) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprint!("\r\x1b[2K{}", progress.snapshot());
    }
}
