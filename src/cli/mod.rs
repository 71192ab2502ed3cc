//! The `prewarm` operator command (feature `cli`), for running and inspecting a deployment
//! without writing code. Install it with `cargo install --path . --features cli` (add
//! `,postgres` for a PostgreSQL queue).
//!
//! | command | what it does |
//! |---|---|
//! | `prewarm warm DIR` | stores and warms every file under DIR (what `examples/warm_dir.rs` does), with a progress line and a JSON summary |
//! | `prewarm status` | per bot: jobs queued / delayed / claimed / dead, the oldest job's age, uploads in the last minute |
//! | `prewarm dead [--limit N]` | the dead jobs: key, kind, size, attempts, last error |
//! | `prewarm requeue KEY` / `prewarm requeue --all` | queues dead jobs again, attempts reset |
//! | `prewarm metrics --listen ADDR` | warms the queue's jobs and serves Prometheus metrics at `http://ADDR/metrics` |
//!
//! Every command takes `--json` (one JSON document on stdout) and `--help`. The
//! configuration is [`PrewarmEngine::from_env`](crate::PrewarmEngine::from_env)'s: the
//! database is `PREWARM_DB` (or a PostgreSQL `DATABASE_URL`), with `PREWARM_DB_SCHEMA`.
//!
//! Exit codes: 0 done, 1 something failed (a file did not warm, the database could not be
//! reached, a key had no dead job), 2 bad arguments or configuration.

mod metrics;
mod queue;
mod warm;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;

#[derive(Debug, Parser)]
#[command(
    name = "prewarm",
    version,
    about = "Operate prewarm: warm a folder, queue status, dead jobs, requeue, a Prometheus endpoint.",
    long_about = "Operate prewarm: warm a folder, queue status, dead jobs, requeue, a Prometheus \
        endpoint.\n\n\
        Configuration comes from the environment, as for PrewarmEngine::from_env: PREWARM_DB \
        (a SQLite file or a postgres:// URL), PREWARM_DB_SCHEMA, TELEGRAM_BOT_TOKEN, \
        MEDIA_WARMUP_CHAT_IDS, R2_* or PREWARM_MEDIA_DIR.\n\n\
        Exit codes: 0 done, 1 something failed, 2 bad arguments or configuration."
)]
struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stores and warms every regular file under DIR; files already warm are skipped, and a
    /// run stopped midway finishes when run again. Exit 1 when any file failed. On an
    /// embedded database it uses the whole bot-wide rate (PREWARM_USER_SHARE defaults to 0:
    /// it sends to no user); on PostgreSQL it shares the bot's budget and leaves its users
    /// their share (25%).
    Warm(warm::WarmArgs),
    /// Per bot: jobs queued, delayed, claimed and dead, the oldest job's age, uploads in the
    /// last minute.
    Status,
    /// The dead jobs (failed for good): key, kind, size, attempts, last error; oldest first.
    Dead {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queues dead jobs again, with their attempts reset.
    Requeue {
        /// The job's key, as `prewarm dead` prints it: BOT/KIND/SHA256.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        key: Option<String>,
        /// Every dead job.
        #[arg(long)]
        all: bool,
    },
    /// Warms the queue's jobs and serves Prometheus metrics at http://ADDR/metrics until
    /// interrupted (Ctrl-C or SIGTERM).
    Metrics {
        /// The address to listen on, such as 127.0.0.1:9184 (port 0: any free port, printed).
        #[arg(long)]
        listen: SocketAddr,
    },
}

/// Why a command stopped: the exit code follows from it.
#[derive(Debug)]
enum Failure {
    /// Bad arguments or configuration: exit code 2.
    Usage(String),
    /// Something failed: exit code 1.
    Failed(String),
    /// Some of the work failed, and the command's output already says what: exit code 1,
    /// with no second JSON document.
    Reported(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Config { .. } | Error::InvalidInput { .. } => Failure::Usage(e.to_string()),
            e => Failure::Failed(e.to_string()),
        }
    }
}

/// Runs the command line of this process: `prewarm COMMAND [OPTIONS]`. What the `prewarm`
/// binary's `main` calls.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs one command line (`args[0]` is the program name) and answers its exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2, and with
            // `--json` also as the JSON error document every other failure prints.
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            if args.iter().any(|a| a == "--json") {
                let rendered = e.render().to_string();
                let message = rendered.lines().next().unwrap_or("bad arguments");
                let message = message.trim_start_matches("error: ");
                println!(
                    "{}",
                    serde_json::json!({ "error": message, "exit_code": 2 })
                );
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                cli.json,
                Failure::Failed(format!("cannot start the runtime: {e}")),
            );
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Warm(args) => warm::warm(args, json).await,
            Command::Status => queue::status(json).await,
            Command::Dead { limit } => queue::dead(limit, json).await,
            Command::Requeue { key, all } => queue::requeue(key.as_deref(), all, json).await,
            Command::Metrics { listen } => metrics::serve(listen, json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(json, failure),
    }
}

fn report(json: bool, failure: Failure) -> ExitCode {
    let (code, message, reported) = match failure {
        Failure::Usage(m) => (2u8, m, false),
        Failure::Failed(m) => (1u8, m, false),
        Failure::Reported(m) => (1u8, m, true),
    };
    eprintln!("prewarm: {message}");
    if json && !reported {
        println!(
            "{}",
            serde_json::json!({ "error": message, "exit_code": code })
        );
    }
    ExitCode::from(code)
}

/// The durable queue the environment names; an error naming the fix when there is none.
async fn open_queue() -> Result<crate::db::DurableStore, Failure> {
    match crate::config::open_durable(&crate::env::process).await? {
        Some(store) => Ok(store),
        None => Err(Failure::Usage(
            "PREWARM_DB is not set: set it to the bot's SQLite file or postgres:// URL (the \
             queue in memory belongs to the bot's own process)"
                .to_owned(),
        )),
    }
}
