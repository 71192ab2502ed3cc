//! Load test: warms N generated media through `PrewarmEngine` + `TelegramUploader` + the fake
//! Bot API with Telegram's limits on, and prints one JSON line of figures. With `--baseline`
//! it runs the seed's Node.js design (re-expressed as a small loop) on the same kind of input
//! for a fixed 60 s instead; `--compare` runs both, one after the other, and prints the ratio.
//!
//! ```text
//! cargo run --release --example loadtest --features testkit -- [options]
//!   -n N               media to warm (default 2000)
//!   --chats K          warm-up private chats (default 32)
//!   --group            one warm-up group chat instead (20 messages a minute)
//!   --concurrency C    engine uploads at once (default 2 per chat)
//!   --open-loop RATE   media arrive at RATE a second for --duration S (default 60) seconds
//!   --baseline seed|phase1   the seed's design for 60 s (1 or 5 jobs every 2,000 ms)
//!   --compare          ours, then the baseline (default seed), and their ratio
//!   --rss              32 concurrent uploads of 40 MB videos with a full 64 MB byte cache
//!   --no-url           the store gives no URLs (every upload streams from the store)
//!   --byte-cache-mib M the engine's byte cache (default 64)
//!   --user-share PCT   the share of the bot-wide rate warms leave to users (default the
//!                      uploader's, 25%: warms then top out at 22.5/s, 1,350/min)
//!   --seed S           input seed (default 7)
//!   --bulk [-n N] [--chats K] [--kill-at M] [--state DIR]
//!                      N media (default 10,000) through `BulkSaver::save_all` and a store
//!                      150 to 800 ms away, 30 chats; see `bulk.rs`
//!   --traffic          the send path: Zipf-popular sends to users while new media arrive,
//!                      ours then the seed's design, for --duration S (see traffic.rs)
//! ```
//!
//! `LOADTEST_DEBUG=1` prints every 429 the fake answered (when, which chat, whether it was a
//! violation) to stderr.
//!
//! The input: 80% photos of 30 KB to 2 MB, 15% videos of 2 to 40 MB, 5% PDF documents of
//! 100 KB to 10 MB, sizes log-uniform in each range. Bytes are generated from the seed, chunk
//! by chunk, wherever they are needed (saving, the store's downloads, the URLs Telegram
//! fetches): nothing holds the whole input.
//!
//! The store (`LoadStore`, below) keeps no bytes: it regenerates an object when read, after a
//! delay of 200 to 800 ms, and counts the bytes read from it. It hands out URLs (as R2's
//! presigned URLs) served by a small generator server, so that the fake fetches by URL where
//! the uploader allows it.
//!
//! The fake Bot API (uploads take 500 to 2,000 ms; 30 a second per bot, 1 a second with
//! bursts of 3 per private chat, 20 a minute per group) and the URL server run in a child
//! process (this example started again with `--serve-fake`), as Telegram and R2 are other
//! machines: the peak RSS reported (VmHWM) is the bot's process alone.

mod alloc;
mod bulk;
mod traffic;

/// Counts live bytes, so that a peak RSS can be read against what was live (`alloc.rs`).
#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};
use prewarm::store::{GetResult, ObjectMeta, PutOutcome, PutPayload};
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::upload::{RateLimits, UploadRequest, Uploaded};
use prewarm::{
    BotId, Error, MediaKey, MediaKind, MediaStore, ObjectKey, PrewarmEngine, Sha256, Sha256Hasher,
    TelegramUploader, Uploader,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "123456:loadtest-token-not-a-secret";
const CHUNK: usize = 64 * 1024;
/// Bytes 0..16 of every generated media: a magic number for its kind, then its id and size.
const HEADER: usize = 32;
const UPLOAD_MS: (u64, u64) = (500, 2000);
const DOWNLOAD_MS: (u64, u64) = (200, 800);
const BASELINE_WINDOW: Duration = Duration::from_secs(60);
/// The engine's byte cache of recent saves (64 MiB; it keeps files of up to half of it).
const BYTE_CACHE: u64 = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    n: usize,
    chats: usize,
    group: bool,
    concurrency: Option<usize>,
    open_loop: Option<f64>,
    duration: f64,
    baseline: Option<String>,
    compare: bool,
    rss: bool,
    urls: bool,
    seed: u64,
    traffic: bool,
    user_share: Option<u32>,
    byte_cache: u64,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        n: 2000,
        chats: 32,
        group: false,
        concurrency: None,
        open_loop: None,
        duration: 60.0,
        baseline: None,
        compare: false,
        rss: false,
        urls: true,
        seed: 7,
        traffic: false,
        user_share: None,
        byte_cache: BYTE_CACHE,
    };
    let mut it = args.iter();
    let num = |v: Option<&String>, name: &str| -> Result<f64, String> {
        v.and_then(|s| s.parse::<f64>().ok())
            .filter(|x| *x > 0.0)
            .ok_or_else(|| format!("{name} needs a positive number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-n" => o.n = num(it.next(), "-n")? as usize,
            "--chats" => o.chats = num(it.next(), "--chats")? as usize,
            "--group" => o.group = true,
            "--concurrency" => o.concurrency = Some(num(it.next(), "--concurrency")? as usize),
            "--open-loop" => o.open_loop = Some(num(it.next(), "--open-loop")?),
            "--duration" => o.duration = num(it.next(), "--duration")?,
            "--baseline" => match it.next().map(String::as_str) {
                Some(b @ ("seed" | "phase1")) => o.baseline = Some(b.to_owned()),
                _ => return Err("--baseline takes seed or phase1".to_owned()),
            },
            "--compare" => o.compare = true,
            "--rss" => o.rss = true,
            "--no-url" => o.urls = false,
            "--seed" => o.seed = num(it.next(), "--seed")? as u64,
            "--traffic" => o.traffic = true,
            "--user-share" => {
                o.user_share = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--user-share needs a percentage")?,
                )
            }
            "--byte-cache-mib" => {
                o.byte_cache = (num(it.next(), "--byte-cache-mib")? as u64) * 1024 * 1024;
            }
            other => return Err(format!("unknown option {other}; see the example's docs")),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Input: media specs and their bytes, generated from the seed

#[derive(Debug, Clone, Copy)]
struct Spec {
    id: u64,
    kind: MediaKind,
    size: u64,
}

fn log_uniform(rng: &mut fastrand::Rng, lo: u64, hi: u64) -> u64 {
    let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
    (l + rng.f64() * (h - l)).exp() as u64
}

fn spec(seed: u64, id: u64) -> Spec {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id);
    let roll = rng.u32(0..100);
    let (kind, size) = if roll < 80 {
        (MediaKind::Photo, log_uniform(&mut rng, 30_000, 2_000_000))
    } else if roll < 95 {
        (
            MediaKind::Video,
            log_uniform(&mut rng, 2_000_000, 40_000_000),
        )
    } else {
        (
            MediaKind::Document,
            log_uniform(&mut rng, 100_000, 10_000_000),
        )
    };
    Spec { id, kind, size }
}

fn magic(kind: MediaKind) -> &'static [u8] {
    match kind {
        MediaKind::Photo => b"\xff\xd8\xff\xe0\0\x10JFIF",
        MediaKind::Video => b"\0\0\0\x18ftypmp42",
        _ => b"%PDF-1.7\n%",
    }
}

fn kind_code(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Photo => 0,
        MediaKind::Video => 1,
        _ => 2,
    }
}

fn kind_of(code: u8) -> MediaKind {
    match code {
        0 => MediaKind::Photo,
        1 => MediaKind::Video,
        _ => MediaKind::Document,
    }
}

fn content_type(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Photo => "image/jpeg",
        MediaKind::Video => "video/mp4",
        _ => "application/pdf",
    }
}

/// Chunk `index` (of `CHUNK` bytes, the last one shorter) of the media `s`.
fn chunk(seed: u64, s: Spec, index: u64) -> Bytes {
    let start = index * CHUNK as u64;
    let len = (s.size - start).min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; len];
    // wyrand, seeded per chunk so that any chunk can be made alone.
    let mut state =
        seed ^ s.id.wrapping_mul(0xa076_1d64_78bd_642f) ^ index.wrapping_mul(0xe703_7ed1_a0b4_28db);
    for word in buf.chunks_mut(8) {
        state = state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
        let x = ((t >> 64) as u64) ^ (t as u64);
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    if index == 0 {
        let m = magic(s.kind);
        buf[..m.len()].copy_from_slice(m);
        buf[12..20].copy_from_slice(&s.id.to_le_bytes());
        buf[20..28].copy_from_slice(&s.size.to_le_bytes());
        buf[28] = kind_code(s.kind);
    }
    Bytes::from(buf)
}

fn chunks(s: Spec) -> u64 {
    s.size.div_ceil(CHUNK as u64)
}

/// The whole media in memory (to `save` it).
fn generate(seed: u64, s: Spec) -> Bytes {
    let mut out = BytesMut::with_capacity(s.size as usize);
    for i in 0..chunks(s) {
        out.extend_from_slice(&chunk(seed, s, i));
    }
    out.freeze()
}

/// The media as a stream of chunks, made as they are read.
fn generated_stream(
    seed: u64,
    s: Spec,
    counter: Option<Arc<AtomicU64>>,
) -> prewarm::store::ByteStream {
    stream::iter(0..chunks(s))
        .map(move |i| {
            let c = chunk(seed, s, i);
            if let Some(counter) = &counter {
                counter.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
            Ok(c)
        })
        .boxed()
}

/// Counts `body` as open until it is dropped.
fn tracked(
    body: prewarm::store::ByteStream,
    open: Arc<AtomicU64>,
    max_open: Arc<AtomicU64>,
) -> prewarm::store::ByteStream {
    struct Open(Arc<AtomicU64>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let now = open.fetch_add(1, Ordering::Relaxed) + 1;
    max_open.fetch_max(now, Ordering::Relaxed);
    let guard = Open(open);
    body.map(move |c| {
        let _ = &guard;
        c
    })
    .boxed()
}

fn spec_of_header(head: &[u8]) -> Option<Spec> {
    if head.len() < HEADER {
        return None;
    }
    let id = u64::from_le_bytes(head[12..20].try_into().ok()?);
    let size = u64::from_le_bytes(head[20..28].try_into().ok()?);
    Some(Spec {
        id,
        kind: kind_of(head[28]),
        size,
    })
}

fn hash_generated(seed: u64, s: Spec) -> Sha256 {
    let mut h = Sha256Hasher::new();
    for i in 0..chunks(s) {
        h.update(&chunk(seed, s, i));
    }
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// The store: slow downloads, byte counts, URLs; no bytes held

#[derive(Debug)]
struct LoadStore {
    seed: u64,
    /// The generator server's base URL, when the store gives URLs.
    url_base: Option<String>,
    objects: Mutex<HashMap<ObjectKey, Spec>>,
    downloaded: Arc<AtomicU64>,
    downloads: AtomicU64,
    /// `head` calls (metadata reads: no bytes, one request each on a real store).
    heads: AtomicU64,
    urls_given: AtomicU64,
    /// A pause before each chunk of a download (a store read at a network's pace), if any.
    pace: Option<Duration>,
    /// Downloads being read now, and the most at once.
    open: Arc<AtomicU64>,
    max_open: Arc<AtomicU64>,
    /// Bytes read per object, for the per-media share.
    per_object: Mutex<HashMap<ObjectKey, u64>>,
    /// When each object was first read, for `LOADTEST_DEBUG`.
    first_read: Mutex<HashMap<ObjectKey, Instant>>,
}

impl LoadStore {
    fn new(seed: u64, url_base: Option<String>) -> Self {
        Self {
            seed,
            url_base,
            objects: Mutex::default(),
            downloaded: Arc::default(),
            downloads: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            urls_given: AtomicU64::new(0),
            pace: None,
            open: Arc::default(),
            max_open: Arc::default(),
            per_object: Mutex::default(),
            first_read: Mutex::default(),
        }
    }

    /// Records an object as stored already (saved earlier, by another process).
    fn insert(&self, key: ObjectKey, s: Spec) {
        self.objects.lock().unwrap().insert(key, s);
    }

    fn spec(&self, key: &ObjectKey) -> prewarm::Result<Spec> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .ok_or_else(|| Error::NotFound {
                what: format!("object {key}"),
            })
    }

    fn downloaded_of(&self, key: &ObjectKey) -> u64 {
        self.per_object
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

fn io_error(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_owned(),
        source,
    }
}

fn draw_ms((lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(fastrand::u64(lo..=hi))
}

#[async_trait]
impl MediaStore for LoadStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> prewarm::Result<PutOutcome> {
        if self.objects.lock().unwrap().contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let len = payload.len();
        let mut body = payload.into_stream();
        let mut head = BytesMut::new();
        let mut got = 0u64;
        while let Some(c) = body.try_next().await? {
            if head.len() < HEADER {
                head.extend_from_slice(&c[..c.len().min(HEADER)]);
            }
            got += c.len() as u64;
        }
        let s = spec_of_header(&head)
            .filter(|s| s.size == len && got == len)
            .ok_or(Error::InvalidInput {
                what: "load-test object",
                reason: "not a generated media of its declared length".to_owned(),
            })?;
        self.insert(key.clone(), s);
        Ok(PutOutcome::Created)
    }

    async fn get(&self, key: &ObjectKey) -> prewarm::Result<GetResult> {
        let s = self.spec(key)?;
        self.first_read
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_insert_with(Instant::now);
        tokio::time::sleep(draw_ms(DOWNLOAD_MS)).await;
        self.downloads.fetch_add(1, Ordering::Relaxed);
        *self
            .per_object
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default() += s.size;
        let mut body = generated_stream(self.seed, s, Some(self.downloaded.clone()));
        if let Some(pace) = self.pace {
            body = body
                .then(move |c| async move {
                    tokio::time::sleep(pace).await;
                    c
                })
                .boxed();
        }
        Ok(GetResult {
            meta: ObjectMeta {
                key: key.clone(),
                size: s.size,
                content_type: Some(content_type(s.kind).to_owned()),
            },
            body: tracked(body, self.open.clone(), self.max_open.clone()),
        })
    }

    async fn head(&self, key: &ObjectKey) -> prewarm::Result<ObjectMeta> {
        let s = self.spec(key)?;
        self.heads.fetch_add(1, Ordering::Relaxed);
        Ok(ObjectMeta {
            key: key.clone(),
            size: s.size,
            content_type: Some(content_type(s.kind).to_owned()),
        })
    }

    async fn delete(&self, key: &ObjectKey) -> prewarm::Result<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn url(
        &self,
        key: &ObjectKey,
        _expires_in: Duration,
        _content_type: Option<&str>,
    ) -> prewarm::Result<Option<String>> {
        let Some(base) = &self.url_base else {
            return Ok(None);
        };
        let s = self.spec(key)?;
        self.urls_given.fetch_add(1, Ordering::Relaxed);
        // A fresh URL per call, as presigned URLs are: Telegram caches a URL's content.
        Ok(Some(format!(
            "{base}/m/{}/{}/{}/{}",
            s.id,
            s.size,
            kind_code(s.kind),
            fastrand::u64(..)
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// An uploader wrapper that times the upload calls

#[derive(Debug)]
struct Timed {
    inner: TelegramUploader,
    calls: AtomicU64,
    errors: AtomicU64,
    ok_micros: AtomicU64,
    ok: AtomicU64,
}

#[async_trait]
impl Uploader for Timed {
    fn bot(&self) -> &BotId {
        self.inner.bot()
    }

    async fn upload(&self, request: UploadRequest) -> prewarm::Result<Uploaded> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let r = self.inner.upload(request).await;
        match &r {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.ok_micros
                    .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    fn needs_bytes(&self, kind: MediaKind, size: u64, content_type: Option<&str>) -> bool {
        self.inner.needs_bytes(kind, size, content_type)
    }

    async fn rejected(&self, key: &MediaKey, file_id: &prewarm::FileId) -> prewarm::Result<()> {
        self.inner.rejected(key, file_id).await
    }
}

// ---------------------------------------------------------------------------------------------
// The child process: the fake Bot API and the URL server

fn chat_ids(o: &Opts) -> Vec<i64> {
    if o.group {
        vec![-100_000_001]
    } else {
        (1..=o.chats as i64).map(|n| 1_000_000 + n).collect()
    }
}

async fn serve_fake(o: Opts) -> prewarm::Result<()> {
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(chat_ids(&o))
        .with_limits(FakeLimits::telegram())
        .with_latency(Latency::uniform(
            Duration::from_millis(UPLOAD_MS.0)..Duration::from_millis(UPLOAD_MS.1),
        ))
        .start()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| io_error("binding the URL server", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error("reading the URL server's address", e))?;
    let seed = o.seed;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_url(sock, seed));
        }
    });
    println!("READY {} http://{addr}", fake.base_url());
    std::io::stdout().flush().ok();
    // One command a line on stdin: `stats` answers a JSON line; end of input stops.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(cmd) = rx.recv().await {
        if cmd.trim() == "stats" {
            if std::env::var_os("LOADTEST_DEBUG").is_some() {
                let events = fake.events();
                let t0 = events.first().map(|e| e.at);
                for e in events.iter().filter(|e| e.status == 429) {
                    eprintln!(
                        "429 at {:?} chat {:?} violation {}",
                        e.at - t0.unwrap_or(e.at),
                        e.chat,
                        e.violation
                    );
                }
            }
            let s = fake.stats();
            println!(
                "{}",
                json!({
                    "requests": s.requests, "sends": s.sends, "uploads": s.uploads,
                    "upload_bytes": s.upload_bytes, "url_fetches": s.url_fetches,
                    "messages": s.messages, "forwards": s.forwards, "texts": s.texts,
                    "too_many_requests": s.too_many_requests,
                    "violations": s.violations, "max_in_flight": s.max_in_flight,
                })
            );
            std::io::stdout().flush().ok();
        }
    }
    fake.shutdown().await;
    Ok(())
}

/// Serves `GET /m/<id>/<size>/<kind>/<nonce>`: the generated media, streamed.
async fn serve_url(mut sock: tokio::net::TcpStream, seed: u64) {
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("");
    let parts: Vec<&str> = path.trim_start_matches("/m/").split('/').collect();
    let parsed = (parts.len() >= 3)
        .then(|| {
            Some(Spec {
                id: parts[0].parse().ok()?,
                size: parts[1].parse().ok()?,
                kind: kind_of(parts[2].parse().ok()?),
            })
        })
        .flatten();
    let Some(s) = parsed else {
        let _ = sock
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content_type(s.kind),
        s.size
    );
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for i in 0..chunks(s) {
        if sock.write_all(&chunk(seed, s, i)).await.is_err() {
            return;
        }
    }
    let _ = sock.shutdown().await;
}

/// The child process, seen from the parent.
struct Remote {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::io::BufReader<ChildStdout>,
    api: String,
    urls: String,
}

impl Remote {
    fn start(o: &Opts) -> Remote {
        let exe = std::env::current_exe().expect("the example's own path");
        let mut args = vec![
            "--serve-fake".to_owned(),
            "--seed".to_owned(),
            o.seed.to_string(),
            "--chats".to_owned(),
            o.chats.to_string(),
        ];
        if o.group {
            args.push("--group".to_owned());
        }
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the fake Bot API process");
        let stdin = child.stdin.take();
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the fake's READY line");
        let mut words = line.split_whitespace().skip(1);
        let api = words.next().expect("the fake's URL").to_owned();
        let urls = words.next().expect("the URL server's URL").to_owned();
        Remote {
            child,
            stdin,
            stdout,
            api,
            urls,
        }
    }

    fn stats(&mut self) -> Value {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "stats").expect("asking the fake for stats");
        stdin.flush().ok();
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the fake's stats");
        serde_json::from_str(&line).expect("JSON stats")
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// The resident set now, in MB.
fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// The most resident at once so far (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---------------------------------------------------------------------------------------------
// Ours

struct Saved {
    key: MediaKey,
    spec: Spec,
    /// When its save returned.
    at: Instant,
}

async fn run_ours(o: &Opts) -> prewarm::Result<Value> {
    let remote = Remote::start(o);
    let chats = chat_ids(o);
    let mut store = LoadStore::new(o.seed, o.urls.then(|| remote.urls.clone()));
    if o.rss {
        // 64 KiB every 3 ms, about 20 MB/s: a 40 MB video takes 2 s to read, so that the
        // 32 downloads are open at once, as over a real network.
        store.pace = Some(Duration::from_millis(3));
    }
    let store = Arc::new(store);
    let mut limits = RateLimits::default().with_in_flight_per_chat(2);
    if let Some(share) = o.user_share {
        limits = limits.with_user_share(share);
    }
    let warm_share = 100 - limits.user_share();
    let telegram = TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(remote.api.clone())
        .with_warmup_chats(chats.iter().copied())
        .with_rate_limits(limits)
        .build()?;
    let bot = telegram.bot().clone();
    let timed = Arc::new(Timed {
        inner: telegram,
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        ok_micros: AtomicU64::new(0),
        ok: AtomicU64::new(0),
    });
    let concurrency = o
        .concurrency
        .unwrap_or(if o.rss { 32 } else { 2 * chats.len() });
    let engine = PrewarmEngine::builder()
        .with_store(store.clone())
        .with_uploader(timed.clone())
        .with_concurrency(concurrency)
        .with_byte_cache(o.byte_cache, Duration::from_secs(600))
        .build()?;
    let mut remote = remote;
    let ready: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let saved: Arc<Mutex<Vec<Saved>>> = Arc::default();
    let mut waiters = tokio::task::JoinSet::new();
    let failed = Arc::new(AtomicU64::new(0));
    let seed = o.seed;

    let mode;
    let start = Instant::now();
    let running = engine.spawn();
    if o.rss {
        mode = "rss";
        // Fill the byte cache with recent photo saves (64 MB), then warm 32 videos of 40 MB
        // that are in the store already: they stream from the store, 32 at once.
        let mut filled = 0u64;
        let mut id = 1_000_000u64;
        while filled < 64 * 1024 * 1024 {
            let s = Spec {
                id,
                kind: MediaKind::Photo,
                size: 1_900_000,
            };
            id += 1;
            let key = engine.save(&bot, generate(seed, s), s.kind).await?;
            filled += s.size;
            saved.lock().unwrap().push(Saved {
                key,
                spec: s,
                at: Instant::now(),
            });
        }
        let videos: Vec<Spec> = (0..32)
            .map(|i| Spec {
                id: 2_000_000 + i,
                kind: MediaKind::Video,
                size: 40_000_000,
            })
            .collect();
        let hashed = tokio::task::spawn_blocking(move || {
            videos
                .into_iter()
                .map(|s| (s, hash_generated(seed, s)))
                .collect::<Vec<_>>()
        })
        .await
        .expect("hashing");
        let mut keys = Vec::new();
        for (s, sha) in hashed {
            let key = MediaKey::new(bot.clone(), sha, s.kind);
            store.insert(key.object_key(), s);
            keys.push((key, s));
        }
        for (key, s) in keys {
            let t0 = Instant::now();
            engine.warm(&key).await?;
            spawn_waiter(&mut waiters, &engine, key.clone(), t0, &ready, &failed);
            saved.lock().unwrap().push(Saved {
                key,
                spec: s,
                at: Instant::now(),
            });
        }
    } else if let Some(rate) = o.open_loop {
        mode = "open-loop";
        let total = (rate * o.duration).round() as u64;
        let every = Duration::from_secs_f64(1.0 / rate);
        let t_start = tokio::time::Instant::now();
        let mut savers = tokio::task::JoinSet::new();
        for i in 0..total {
            tokio::time::sleep_until(t_start + every.mul_f64(i as f64)).await;
            let s = spec(seed, i);
            let (engine, bot, ready, failed, saved) = (
                engine.clone(),
                bot.clone(),
                ready.clone(),
                failed.clone(),
                saved.clone(),
            );
            savers.spawn(async move {
                let t0 = Instant::now();
                let bytes = if s.size > 1_000_000 {
                    tokio::task::spawn_blocking(move || generate(seed, s))
                        .await
                        .expect("generating")
                } else {
                    generate(seed, s)
                };
                match engine.save(&bot, bytes, s.kind).await {
                    Ok(key) => {
                        saved.lock().unwrap().push(Saved {
                            key: key.clone(),
                            spec: s,
                            at: Instant::now(),
                        });
                        match engine.wait_ready(&key, Duration::from_secs(600)).await {
                            Ok(_) => ready.lock().unwrap().push(t0.elapsed()),
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("save failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while savers.join_next().await.is_some() {}
    } else {
        mode = "closed-loop";
        for i in 0..o.n as u64 {
            let s = spec(seed, i);
            let t0 = Instant::now();
            let bytes = if s.size > 1_000_000 {
                tokio::task::spawn_blocking(move || generate(seed, s))
                    .await
                    .expect("generating")
            } else {
                generate(seed, s)
            };
            let key = engine.save(&bot, bytes, s.kind).await?;
            spawn_waiter(&mut waiters, &engine, key.clone(), t0, &ready, &failed);
            saved.lock().unwrap().push(Saved {
                key,
                spec: s,
                at: Instant::now(),
            });
        }
    }
    let saves_done = start.elapsed();
    while waiters.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let metrics = engine.metrics().await?;
    running.shutdown().await?;
    let fake = remote.stats();
    remote.stop();

    let mut times = ready.lock().unwrap().clone();
    times.sort_unstable();
    let warmed = times.len() as f64;
    let saved = saved.lock().unwrap();
    let total_size: u64 = saved.iter().map(|s| s.spec.size).sum();
    let share_mean = saved
        .iter()
        .map(|s| store.downloaded_of(&s.key.object_key()) as f64 / s.spec.size as f64)
        .sum::<f64>()
        / saved.len().max(1) as f64;
    let downloaded = store.downloaded.load(Ordering::Relaxed);
    let by_class = store_reads_by_class(&store, &saved, o.byte_cache / 2);
    if std::env::var_os("LOADTEST_DEBUG").is_some() {
        // Each media read from the store: when it was saved, and how long after that it was
        // first read.
        let first_read = store.first_read.lock().unwrap();
        for s in saved.iter() {
            if let Some(read) = first_read.get(&s.key.object_key()) {
                eprintln!(
                    "store read: {} {} bytes, saved at {:.1} s, read {:.1} s after its save",
                    s.spec.kind,
                    s.spec.size,
                    (s.at - start).as_secs_f64(),
                    read.saturating_duration_since(s.at).as_secs_f64()
                );
            }
        }
    }
    let ok = timed.ok.load(Ordering::Relaxed).max(1);
    let rate_limits = if o.group {
        20.0
    } else {
        (30.0f64).min(chats.len() as f64) * 60.0
    };
    // What the uploader lets warms use of the bot-wide rate.
    let warm_limit = if o.group {
        20.0
    } else {
        (30.0 * f64::from(warm_share) / 100.0).min(chats.len() as f64) * 60.0
    };
    Ok(json!({
        "run": "ours",
        "mode": mode,
        "media": saved.len(),
        "warmed": times.len(),
        "failed": failed.load(Ordering::Relaxed),
        "chats": chats.len(),
        "group": o.group,
        "concurrency": concurrency,
        "url_mode": o.urls,
        "elapsed_s": round1(elapsed.as_secs_f64()),
        "saves_done_s": round1(saves_done.as_secs_f64()),
        "media_per_min": round1(warmed / elapsed.as_secs_f64() * 60.0),
        "limit_per_min": rate_limits,
        "warm_share_pct": warm_share,
        "warm_limit_per_min": warm_limit,
        "time_to_ready_ms": {
            "p50": round1(pct(&times, 0.50)),
            "p95": round1(pct(&times, 0.95)),
            "p99": round1(pct(&times, 0.99)),
        },
        "dispatch_delay_p99_ms": round1(metrics.dispatch_delay.p99.as_secs_f64() * 1000.0),
        "upload_call_mean_ms": round1(timed.ok_micros.load(Ordering::Relaxed) as f64 / ok as f64 / 1000.0),
        "telegram_latency_mean_ms": (UPLOAD_MS.0 + UPLOAD_MS.1) as f64 / 2.0,
        "uploads": timed.calls.load(Ordering::Relaxed),
        "upload_errors": timed.errors.load(Ordering::Relaxed),
        "retries": metrics.retried + metrics.rate_limited,
        "telegram_requests": fake["sends"],
        "telegram_url_fetches": fake["url_fetches"],
        "telegram_multipart_uploads": fake["uploads"].as_u64().unwrap_or(0).saturating_sub(fake["url_fetches"].as_u64().unwrap_or(0)),
        "telegram_max_in_flight": fake["max_in_flight"],
        "429s": fake["too_many_requests"],
        "retry_after_violations": fake["violations"],
        "store_downloads": store.downloads.load(Ordering::Relaxed),
        "store_heads": store.heads.load(Ordering::Relaxed),
        "store_reads_by_class": by_class,
        "store_downloads_max_at_once": store.max_open.load(Ordering::Relaxed),
        "bytes_saved": total_size,
        "bytes_downloaded": downloaded,
        "downloaded_share_bytes": (downloaded as f64 / total_size.max(1) as f64 * 1000.0).round() / 1000.0,
        "downloaded_share_mean_per_media": (share_mean * 1000.0).round() / 1000.0,
        "peak_rss_mb": round1(peak_rss_mb()),
    }))
}

/// Which media were read back from the store, by kind and size: photos, and the rest by
/// Telegram's URL limit (5 MB for photos, 20 MB for other kinds: larger ones must be uploaded)
/// and by whether the engine's byte cache keeps a file that large (up to `cache_max`). Per
/// class: media saved and their bytes, media read from the store at least once, reads, bytes
/// read.
fn store_reads_by_class(store: &LoadStore, saved: &[Saved], cache_max: u64) -> Value {
    #[derive(Default)]
    struct Row {
        media: u64,
        bytes: u64,
        read_media: u64,
        read_bytes: u64,
    }
    let mut rows: std::collections::BTreeMap<String, Row> = Default::default();
    for s in saved {
        let url_limit = match s.spec.kind {
            MediaKind::Photo => 5_000_000,
            _ => 20_000_000,
        };
        let class = if s.spec.size <= url_limit {
            format!("{} <= {} MB (URL)", s.spec.kind, url_limit / 1_000_000)
        } else if s.spec.size <= cache_max {
            format!(
                "{} > {} MB, <= {} MiB (upload; fits the byte cache)",
                s.spec.kind,
                url_limit / 1_000_000,
                cache_max >> 20
            )
        } else {
            format!(
                "{} > {} MiB (upload; over the byte cache's largest file)",
                s.spec.kind,
                cache_max >> 20
            )
        };
        let read = store.downloaded_of(&s.key.object_key());
        let row = rows.entry(class).or_default();
        row.media += 1;
        row.bytes += s.spec.size;
        row.read_media += u64::from(read > 0);
        row.read_bytes += read;
    }
    let total: u64 = rows.values().map(|r| r.bytes).sum::<u64>().max(1);
    rows.into_iter()
        .map(|(class, r)| {
            (
                class,
                json!({
                    "media": r.media,
                    "bytes": r.bytes,
                    "read_from_store": r.read_media,
                    "bytes_read": r.read_bytes,
                    "share_of_all_bytes": (r.read_bytes as f64 / total as f64 * 1000.0).round() / 1000.0,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn spawn_waiter(
    waiters: &mut tokio::task::JoinSet<()>,
    engine: &PrewarmEngine,
    key: MediaKey,
    t0: Instant,
    ready: &Arc<Mutex<Vec<Duration>>>,
    failed: &Arc<AtomicU64>,
) {
    let (engine, ready, failed) = (engine.clone(), ready.clone(), failed.clone());
    waiters.spawn(async move {
        match engine.wait_ready(&key, Duration::from_secs(600)).await {
            Ok(_) => ready.lock().unwrap().push(t0.elapsed()),
            Err(e) => {
                eprintln!("{key}: {e}");
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The seed's design, re-expressed: an in-memory FIFO (`Array.shift()`), a `setInterval` of
// 2,000 ms whose callback takes one job (the current design) or up to 5 minus those running
// (phase 1, `processNextBatch` with `Promise.allSettled`), a full R2 download into a buffer
// for every job, and `sendPhoto`/`sendVideo`/`sendDocument` with that buffer to the one
// warm-up chat. No rate limiter; a failed job goes back to the end of the queue.

async fn run_baseline(o: &Opts, which: &str) -> prewarm::Result<Value> {
    let per_tick: usize = if which == "phase1" { 5 } else { 1 };
    let mut remote = Remote::start(o);
    let chat = chat_ids(o)[0];
    let store = Arc::new(LoadStore::new(o.seed, None));
    let seed = o.seed;
    // The same kind of input, saved before the window opens (not timed: a head start).
    let jobs = (per_tick * 30 * 2) as u64 + 20;
    let mut queue = std::collections::VecDeque::new();
    for i in 0..jobs {
        let s = spec(seed, i);
        let sha = tokio::task::spawn_blocking(move || hash_generated(seed, s))
            .await
            .expect("hashing");
        let key = ObjectKey::for_content(&sha);
        store.insert(key.clone(), s);
        queue.push_back((key, s));
    }
    let queue = Arc::new(Mutex::new(queue));
    let client = reqwest::Client::new();
    let api = format!("{}/bot{TOKEN}", remote.api);
    let active = Arc::new(AtomicU64::new(0));
    let ready: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let uploads = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2000));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        if start.elapsed() >= BASELINE_WINDOW {
            break;
        }
        let free = per_tick.saturating_sub(active.load(Ordering::SeqCst) as usize);
        for _ in 0..free {
            let Some((key, s)) = queue.lock().unwrap().pop_front() else {
                break;
            };
            active.fetch_add(1, Ordering::SeqCst);
            let (store, client, api, queue, active, ready, errors, uploads) = (
                store.clone(),
                client.clone(),
                api.clone(),
                queue.clone(),
                active.clone(),
                ready.clone(),
                errors.clone(),
                uploads.clone(),
            );
            tasks.spawn(async move {
                let result = async {
                    let bytes = store.get(&key).await?.bytes().await?;
                    uploads.fetch_add(1, Ordering::Relaxed);
                    seed_send(&client, &api, chat, s.kind, bytes).await
                }
                .await;
                match result {
                    Ok(()) if start.elapsed() <= BASELINE_WINDOW => {
                        ready.lock().unwrap().push(start.elapsed());
                    }
                    Ok(()) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        queue.lock().unwrap().push_back((key, s));
                    }
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
    // Jobs still running finish (their figures count only if inside the window).
    while tasks.join_next().await.is_some() {}
    let fake = remote.stats();
    remote.stop();
    let mut times = ready.lock().unwrap().clone();
    times.sort_unstable();
    let downloaded = store.downloaded.load(Ordering::Relaxed);
    Ok(json!({
        "run": format!("baseline-{which}"),
        "window_s": BASELINE_WINDOW.as_secs(),
        "warmed": times.len(),
        "media_per_min": round1(times.len() as f64 / BASELINE_WINDOW.as_secs_f64() * 60.0),
        "time_to_ready_ms": {
            "p50": round1(pct(&times, 0.50)),
            "p95": round1(pct(&times, 0.95)),
            "p99": round1(pct(&times, 0.99)),
        },
        "uploads": uploads.load(Ordering::Relaxed),
        "failed_attempts": errors.load(Ordering::Relaxed),
        "429s": fake["too_many_requests"],
        "retry_after_violations": fake["violations"],
        "bytes_downloaded": downloaded,
        "peak_rss_mb": round1(peak_rss_mb()),
    }))
}

/// The seed's `bot.sendPhoto(chatId, buffer)`: one multipart request, no retry.
async fn seed_send(
    client: &reqwest::Client,
    api: &str,
    chat: i64,
    kind: MediaKind,
    bytes: Bytes,
) -> prewarm::Result<()> {
    let (method, field, name) = match kind {
        MediaKind::Photo => ("sendPhoto", "photo", "photo.jpg"),
        MediaKind::Video => ("sendVideo", "video", "video.mp4"),
        _ => ("sendDocument", "document", "document.pdf"),
    };
    let part = reqwest::multipart::Part::stream_with_length(bytes.clone(), bytes.len() as u64)
        .file_name(name)
        .mime_str(content_type(kind))
        .map_err(|e| Error::Unavailable {
            message: e.without_url().to_string(),
        })?;
    let form = reqwest::multipart::Form::new()
        .text("chat_id", chat.to_string())
        .part(field, part);
    let reply: Value = client
        .post(format!("{api}/{method}"))
        .multipart(form)
        .send()
        .await
        .map_err(|e| Error::Unavailable {
            message: e.without_url().to_string(),
        })?
        .json()
        .await
        .map_err(|e| Error::Unavailable {
            message: e.without_url().to_string(),
        })?;
    if reply["ok"] == Value::Bool(true) {
        Ok(())
    } else {
        Err(Error::Unavailable {
            message: reply["description"].as_str().unwrap_or("error").to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == "--bulk" || a == "--bulk-worker")
    {
        return bulk::main(&args);
    }
    let serve = args.first().is_some_and(|a| a == "--serve-fake");
    let rest = if serve { &args[1..] } else { &args[..] };
    let o = match parse_opts(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async {
        if serve {
            return serve_fake(o).await;
        }
        if o.traffic {
            for line in traffic::run(o.duration, o.seed).await? {
                println!("{line}");
            }
        } else if o.compare {
            let ours = run_ours(&o).await?;
            println!("{ours}");
            let which = o.baseline.clone().unwrap_or_else(|| "seed".to_owned());
            let base = run_baseline(&o, &which).await?;
            println!("{base}");
            let a = ours["media_per_min"].as_f64().unwrap_or(0.0);
            let b = base["media_per_min"].as_f64().unwrap_or(0.0);
            println!(
                "{}",
                json!({
                    "run": "ratio",
                    "ours_media_per_min": a,
                    "baseline": which,
                    "baseline_media_per_min": b,
                    "ratio": if b > 0.0 { round1(a / b) } else { f64::INFINITY },
                })
            );
        } else if let Some(which) = &o.baseline {
            println!("{}", run_baseline(&o, which).await?);
        } else {
            println!("{}", run_ours(&o).await?);
        }
        Ok::<(), Error>(())
    });
    if let Err(e) = result {
        eprintln!("loadtest: {e}");
        std::process::exit(1);
    }
}
