//! `prewarm warm DIR`: the library's [`WarmDir`] over a folder, with a progress line on a
//! terminal and the same JSON figures and exit codes as `examples/warm_dir.rs`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;
use crate::bulk::{Progress, WarmDir};
use crate::db::FileIndex;
use crate::error::Result;
use crate::media::MediaKind;

/// Where the cache, queue and file index live when neither `--db` nor `PREWARM_DB` says.
const DEFAULT_DB: &str = ".prewarm/warm_dir.sqlite";
/// The file index beside a PostgreSQL queue (the index is local to the machine's files).
const PG_INDEX: &str = ".prewarm/file_index.sqlite";

/// The options of `prewarm warm`.
#[derive(Debug, clap::Args)]
pub(super) struct WarmArgs {
    /// The folder: every regular file under it is warmed.
    dir: PathBuf,
    /// Send every file as this kind (default: from its first bytes, then its extension).
    #[arg(long)]
    kind: Option<MediaKind>,
    /// Uploads at once (MEDIA_PREWARM_CONCURRENCY).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Option<u16>,
    /// Saves in flight at once (default 32).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    saves: Option<u16>,
    /// The cache and queue: a SQLite file or a postgres:// URL (default PREWARM_DB, else
    /// .prewarm/warm_dir.sqlite).
    #[arg(long)]
    db: Option<String>,
    /// Read and hash every file again, ignoring the (path, size, mtime) index.
    #[arg(long)]
    rehash: bool,
    /// Use the crate's fake Bot API even when TELEGRAM_BOT_TOKEN is set.
    #[arg(long)]
    demo: bool,
}

pub(super) async fn warm(args: WarmArgs, json: bool) -> Result<(), Failure> {
    if !args.dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a folder",
            args.dir.display()
        )));
    }
    let db = match args.db.clone() {
        Some(db) => db,
        None => crate::env::process("PREWARM_DB")?.unwrap_or_else(|| DEFAULT_DB.to_owned()),
    };
    let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
    let index = PathBuf::from(if postgres { PG_INDEX } else { db.as_str() });
    for file in [Some(index.as_path()), (!postgres).then(|| Path::new(&db))]
        .into_iter()
        .flatten()
    {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    // The environment as from_env reads it, with this command's options over it.
    let concurrency = args.concurrency.map(|n| n.to_string());
    let get = |name: &str| -> Result<Option<String>> {
        match name {
            "PREWARM_DB" => Ok(Some(db.clone())),
            "MEDIA_PREWARM_CONCURRENCY" if concurrency.is_some() => Ok(concurrency.clone()),
            // This process sends to no user, and with an embedded database its rate budget is
            // its own: a share kept for sends to users would serve nobody. With PostgreSQL it
            // shares the bot's budget, and the bot's users keep their share.
            "PREWARM_USER_SHARE" if !postgres => {
                Ok(crate::env::process(name)?.or_else(|| Some("0".to_owned())))
            }
            "TELEGRAM_BOT_TOKEN" if args.demo => Ok(None),
            _ => crate::env::process(name),
        }
    };
    let setup = crate::config::from_lookup(&get).await?;
    if setup.is_demo() {
        eprintln!("prewarm: demo mode (the fake Bot API on loopback; nothing goes to Telegram)");
    }
    let index = FileIndex::open(&index).await?;
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
        warm = warm.with_max_in_flight(n.into());
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
    let report = result?;
    for f in &report.failures {
        eprintln!("failed: {}: {}", f.path.display(), f.reason);
    }
    if json {
        println!("{}", report.to_json());
    } else {
        println!(
            "{} files: {} ready ({} warm before), {} failed; {} uploads in {:.1} s",
            report.files,
            report.ready,
            report.skipped,
            report.failed(),
            report.uploads,
            report.elapsed.as_secs_f64()
        );
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(Failure::Reported(format!(
            "{n} file{} failed (named above)",
            if n == 1 { "" } else { "s" }
        ))),
    }
}

/// Redraws the progress line on stderr twice a second.
async fn render(progress: Progress) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprint!("\r\x1b[2K{}", progress.snapshot());
    }
}
