//! Engine overhead: 1,000 media warmed through the engine with a zero-latency uploader,
//! beside the same 1,000 uploads called directly (16 at a time), in one criterion group; then
//! the dispatch delay (push to upload start) of an idle engine, printed as p50/p99; then one
//! 8 MiB put into a `MemoryStore` whose digest the store checks again (`PutPayload::from_stream`,
//! what every save cost before) beside one it trusts (`PutPayload::from_hashed_stream`, what a
//! save costs now, its one hash done by the engine).
//!
//! ```text
//! cargo bench --bench engine
//! cargo bench --bench engine -- put_8mib --warm-up-time 1 --measurement-time 3
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use prewarm::upload::{MediaSource, UploadRequest};
use prewarm::{BotId, MediaKey, MediaKind, MemoryUploader, PrewarmEngine, Sha256, Uploader};

const JOBS: usize = 1_000;
const CONCURRENCY: usize = 16;

fn media(round: u64, i: usize) -> Bytes {
    let mut v = vec![0u8; 1_024];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(v)
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bot = BotId::new("bench").expect("bot");
    let mut group = c.benchmark_group("engine_overhead");
    group.sample_size(20);
    group.throughput(Throughput::Elements(JOBS as u64));

    let uploader = MemoryUploader::new(bot.clone());
    let mut round = 0u64;
    group.bench_function("direct_uploads_1000", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let uploader = uploader.clone();
            let bot = bot.clone();
            async move {
                futures::stream::iter(0..JOBS)
                    .map(|i| {
                        let bytes = media(round, i);
                        let request = UploadRequest {
                            key: MediaKey::new(bot.clone(), Sha256::of(&bytes), MediaKind::Photo),
                            size: bytes.len() as u64,
                            source: MediaSource::from_bytes(bytes),
                        };
                        let uploader = uploader.clone();
                        async move { uploader.upload(request).await.expect("upload") }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .for_each(|_| async {})
                    .await;
            }
        })
    });

    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
        .with_concurrency(CONCURRENCY)
        .build()
        .expect("engine");
    let running = rt.block_on(async { engine.spawn() });
    let mut round = 1_000_000u64;
    group.bench_function("engine_1000", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let engine = engine.clone();
            let bot = bot.clone();
            async move {
                let mut keys = Vec::with_capacity(JOBS);
                for i in 0..JOBS {
                    keys.push(
                        engine
                            .save(&bot, media(round, i), MediaKind::Photo)
                            .await
                            .expect("save"),
                    );
                }
                for key in &keys {
                    engine
                        .wait_ready(key, Duration::from_secs(30))
                        .await
                        .expect("ready");
                }
            }
        })
    });
    group.finish();
    rt.block_on(running.shutdown()).expect("shutdown");
}

/// One media at a time through an idle engine: the dispatch delay is the engine's own
/// latency from push to upload start.
fn idle_dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bot = BotId::new("bench").expect("bot");
    let engine = PrewarmEngine::builder()
        .with_uploader(Arc::new(MemoryUploader::new(bot.clone())))
        .build()
        .expect("engine");
    let running = rt.block_on(async { engine.spawn() });
    let mut round = 0u64;
    c.bench_function("engine_idle_save_to_ready", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let engine = engine.clone();
            let bot = bot.clone();
            async move {
                let key = engine
                    .save(&bot, media(u64::MAX - round, 0), MediaKind::Photo)
                    .await
                    .expect("save");
                // Polled, not awaited through wait_ready, so the measured path is the
                // dispatcher's own wake-up.
                while engine.lookup(&key).is_none() {
                    tokio::task::yield_now().await;
                }
            }
        })
    });
    let snapshot = rt.block_on(engine.metrics()).expect("metrics");
    let d = snapshot.dispatch_delay;
    println!(
        "idle dispatch delay over the last {} jobs: p50 {:?}, p95 {:?}, p99 {:?}",
        d.count, d.p50, d.p95, d.p99
    );
    rt.block_on(running.shutdown()).expect("shutdown");
}

fn put_8mib(c: &mut Criterion) {
    const LEN: usize = 8 * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let bytes = Bytes::from(vec![0x5Au8; LEN]);
    let sha = Sha256::of(&bytes);
    let key = prewarm::ObjectKey::for_content(&sha);
    let mut group = c.benchmark_group("put_8mib");
    group.throughput(Throughput::Bytes(LEN as u64));
    type Payload = fn(u64, Sha256, prewarm::store::ByteStream) -> prewarm::store::PutPayload;
    let ways: [(&str, Payload); 2] = [
        (
            "store_hashes_again",
            prewarm::store::PutPayload::from_stream,
        ),
        (
            "engine_hash_trusted",
            prewarm::store::PutPayload::from_hashed_stream,
        ),
    ];
    for (name, payload) in ways {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let body = futures::stream::once({
                    let bytes = bytes.clone();
                    async move { Ok(bytes) }
                })
                .boxed();
                let (store, key) = (prewarm::store::MemoryStore::new(), key.clone());
                async move {
                    use prewarm::MediaStore;
                    store
                        .put(&key, payload(LEN as u64, sha, body))
                        .await
                        .expect("put")
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, overhead, idle_dispatch, put_8mib);
criterion_main!(benches);
