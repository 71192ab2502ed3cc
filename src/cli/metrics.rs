//! `prewarm metrics --listen ADDR`: an engine from the environment warming the queue's jobs,
//! and its metrics for Prometheus at `http://ADDR/metrics`, with per-bot queue gauges read
//! from the durable queue at each scrape (so they cover every process sharing it).

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Failure, open_queue};
use crate::engine::PrewarmEngine;
use crate::engine::metrics::names;
use crate::media::Timestamp;
use crate::queue::PriorityQueue;

/// Gauge (labels `bot`, `state`): the durable queue's jobs per bot and state.
pub(crate) const JOBS: &str = "media_prewarm_jobs";
/// Gauge (label `bot`): seconds since the bot's oldest unfinished job was queued.
pub(crate) const OLDEST_JOB_AGE: &str = "media_prewarm_oldest_job_age_seconds";
/// Gauge (label `bot`): jobs claimed (upload attempts started) in the last minute.
pub(crate) const CLAIMS_LAST_MINUTE: &str = "media_prewarm_claims_last_minute";

/// Histogram buckets for the `_seconds` metrics: a send-path millisecond to a slow warm, with
/// edges at the source's send-latency targets (50 ms at P50, 150 ms at P95).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Histogram buckets for the jobs claimed in one dispatch round.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(listen: SocketAddr, json: bool) -> Result<(), Failure> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.to_owned()), BATCH_BUCKETS)
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Failure::Failed(format!("installing the Prometheus recorder: {e}")))?;
    zero_counters();
    let setup = PrewarmEngine::from_env().await?;
    // No durable queue configured: the engine's own gauges only (its queue is in memory).
    let queue = match open_queue().await {
        Ok(store) => Some(store.queue),
        Err(Failure::Usage(_)) => None,
        Err(e) => return Err(e),
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Failed(format!("listening on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Failed(format!("reading the bound address: {e}")))?;
    let url = format!("http://{addr}/metrics");
    if json {
        println!(
            "{}",
            serde_json::json!({ "listening": url, "demo": setup.is_demo() })
        );
    } else {
        println!("serving metrics on {url}");
    }
    eprintln!(
        "prewarm: warming {} jobs{}; Ctrl-C or SIGTERM stops",
        setup.bot,
        if setup.is_demo() {
            " in demo mode (TELEGRAM_BOT_TOKEN is not set: the fake Bot API on loopback)"
        } else {
            ""
        }
    );
    let engine = setup.engine.clone();
    let running = engine.spawn();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let (engine, queue, handle) = (engine.clone(), queue.clone(), handle.clone());
                tokio::spawn(async move {
                    let _ = answer(conn, &engine, queue.as_deref(), &handle).await;
                });
            }
        }
    }
    running
        .shutdown()
        .await
        .map_err(|e| Failure::Failed(format!("stopping the engine: {e}")))?;
    drop(setup);
    Ok(())
}

/// Counters exist from the start at 0, so that a dashboard's rates read 0 rather than "no
/// data" before the first event (Prometheus' advice for counters).
fn zero_counters() {
    for name in [
        names::WARMED,
        names::FAILED,
        names::UPLOADS,
        names::STORED_BYTES,
        names::CACHE_HITS,
        names::CACHE_MISSES,
        names::CONCURRENCY_BLOCKED,
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in ["rate_limited", "error"] {
        metrics::counter!(names::RETRIED, "reason" => reason).increment(0);
    }
    metrics::gauge!(names::ACTIVE_WORKERS).set(0.0);
    metrics::gauge!(names::QUEUE_UTILIZATION).set(0.0);
}

/// The engine's queue gauge and the durable queue's per-bot gauges, as of now.
async fn refresh(engine: &PrewarmEngine, queue: Option<&dyn PriorityQueue>) {
    // `metrics()` sets the queue-size gauge.
    let _ = engine.metrics().await;
    let Some(queue) = queue else { return };
    let now = Timestamp::now();
    let Ok(bots) = queue.summary(now).await else {
        return;
    };
    for b in bots {
        let bot = b.bot.as_str().to_owned();
        for (state, n) in [
            ("queued", b.depth.queued),
            ("delayed", b.depth.delayed),
            ("claimed", b.depth.claimed),
            ("dead", b.depth.dead),
        ] {
            metrics::gauge!(JOBS, "bot" => bot.clone(), "state" => state).set(n as f64);
        }
        let age = b.oldest_age().map_or(0.0, |age| age.as_secs_f64());
        metrics::gauge!(OLDEST_JOB_AGE, "bot" => bot.clone()).set(age);
        metrics::gauge!(CLAIMS_LAST_MINUTE, "bot" => bot).set(b.claims_last_minute as f64);
    }
}

/// One HTTP/1.1 exchange: `GET /metrics` answers the text exposition format, anything
/// else 404. Enough for Prometheus and curl; one request a connection.
async fn answer(
    mut conn: TcpStream,
    engine: &PrewarmEngine,
    queue: Option<&dyn PriorityQueue>,
    handle: &PrometheusHandle,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(REQUEST_TIMEOUT, read).await.is_err() {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        refresh(engine, queue).await;
        handle.run_upkeep();
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "not found: GET /metrics\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
