//! Peak memory while a 50 MB object goes through `R2Store::put` and `get`, against an
//! in-process s3s-fs server on loopback (whose own buffers count too).
//!
//! `cargo run --release --features r2 --example r2_memory` (Linux: reads /proc/self/status)

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream};
use prewarm::store::{MediaStore, PutPayload, R2StoreBuilder};
use prewarm::{ObjectKey, Sha256Hasher};

const LEN: usize = 50 * 1000 * 1000;
const CHUNK: usize = 256 * 1024;

fn kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn chunks() -> impl Iterator<Item = Bytes> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..LEN.div_ceil(CHUNK)).map(move |i| {
        let n = CHUNK.min(LEN - i * CHUNK);
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        Bytes::from(v)
    })
}

#[tokio::main]
async fn main() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("media")).expect("bucket");
    let mut b = S3ServiceBuilder::new(s3s_fs::FileSystem::new(dir.path()).expect("fs"));
    b.set_auth(SimpleAuth::from_single("AKID", "SECRET"));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((sock, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(sock), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    let store = R2StoreBuilder::new()
        .with_endpoint(format!("http://{addr}"))
        .with_bucket("media")
        .with_credentials("AKID", "SECRET")
        .build()
        .expect("store");

    let mut hasher = Sha256Hasher::new();
    for c in chunks() {
        hasher.update(&c);
    }
    let sha = hasher.finish();
    let key = ObjectKey::for_content(&sha);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = kib("VmRSS:");
    let body = stream::iter(chunks().map(Ok)).boxed();
    store
        .put(&key, PutPayload::from_stream(LEN as u64, sha, body))
        .await
        .expect("put");
    let after_put = kib("VmHWM:");
    let mut got = store.get(&key).await.expect("get").body;
    let mut n = 0usize;
    while let Some(c) = got.next().await {
        n += c.expect("chunk").len();
    }
    assert_eq!(n, LEN);
    let after_get = kib("VmHWM:");
    println!("baseline RSS {baseline} KiB");
    println!(
        "peak after put: {after_put} KiB (+{} KiB)",
        after_put.saturating_sub(baseline)
    );
    println!(
        "peak after get: {after_get} KiB (+{} KiB)",
        after_get.saturating_sub(baseline)
    );
}
