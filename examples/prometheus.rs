//! Exposes the engine's metrics for Prometheus on a loopback port while it warms media.
//!
//! ```text
//! cargo run --example prometheus                     # serve http://127.0.0.1:9184/metrics until Ctrl-C
//! cargo run --example prometheus -- --port 9200 --once   # warm a few media, print one scrape, exit
//! ```
//!
//! The engine records through the [`metrics`] facade; this example installs
//! `metrics-exporter-prometheus` as the recorder. The configuration is
//! [`PrewarmEngine::from_env`]'s, or [`PrewarmEngine::demo`]'s without `TELEGRAM_BOT_TOKEN`. Metrics served:
//! the seed's `media_prewarm_batch_size`, `media_prewarm_active_workers`,
//! `media_prewarm_queue_utilization` and `media_prewarm_concurrency_blocked`, plus
//! `media_prewarm_warmed_total` (throughput), `media_prewarm_failed_total`,
//! `media_prewarm_retried_total{reason}` (retry rate), `media_prewarm_uploads_total`,
//! `media_cache_hits_total` / `media_cache_misses_total` (hit rate),
//! `media_prewarm_time_to_ready_seconds` and `media_prewarm_dispatch_delay_seconds`
//! (histograms), `media_prewarm_queue_size`; a bot that sends with `send_cached` also exports
//! `media_prewarm_send_latency_seconds{via}` and `media_prewarm_send_failures_total{reason}`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use prewarm::{MediaKind, PrewarmEngine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 9184u16;
    let mut once = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--once" => once = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            // Edges at the source's send-latency targets: 50 ms at P50, 150 ms at P95.
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0,
            ],
        )?
        .install()?;
    eprintln!("metrics on http://{addr}/metrics");

    let setup = if std::env::var_os("TELEGRAM_BOT_TOKEN").is_some() {
        PrewarmEngine::from_env().await?
    } else {
        PrewarmEngine::demo().await?
    };
    let running = setup.engine.spawn();
    for i in 0..20u32 {
        let mut photo = vec![0xFF, 0xD8, 0xFF, 0xE0];
        photo.extend_from_slice(&i.to_le_bytes());
        photo.resize(20_000 + 1_000 * i as usize, 0x5A);
        let key = setup
            .engine
            .save(&setup.bot, Bytes::from(photo), MediaKind::Photo)
            .await?;
        if i % 4 == 0 {
            setup
                .engine
                .wait_ready(&key, Duration::from_secs(30))
                .await?;
            let _ = setup.engine.lookup(&key);
        }
    }
    let snapshot = setup.engine.metrics().await?;
    eprintln!("warmed {} media so far", snapshot.warmed);

    if once {
        print!("{}", scrape(addr).await?);
    } else {
        tokio::signal::ctrl_c().await?;
    }
    running.shutdown().await?;
    Ok(())
}

/// One plain HTTP GET of the metrics page, as Prometheus would make it.
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}
