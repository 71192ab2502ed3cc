//! The servers the R2 tests talk to, on loopback:
//! - s3s-fs, an independent S3 implementation that verifies every signature;
//! - a small fault server (raw HTTP/1.1 over a tokio `TcpListener`) for what s3s-fs does not
//!   do: `SlowDown`, an error inside a 200, a reset mid-body, clock skew, R2's refusals.
//!
//! Shared by `tests/r2.rs` and `tests/url_mode.rs`; each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prewarm::store::R2StoreBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const AKID: &str = "AKIDPREWARMTEST";
pub const SECRET: &str = "s3cr3t/Key+WithReserved=chars";
pub const BUCKET: &str = "media";
pub const MIB: usize = 1024 * 1024;

/// An s3s-fs server on 127.0.0.1:0 with signature checking, serving a temp directory.
pub struct S3Server {
    pub addr: SocketAddr,
    pub _dir: tempfile::TempDir,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn s3_server() -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket dir");
    let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(AKID, SECRET));
    let s3 = b.build();
    // s3s-fs ignores GetObject's `response-content-type`, which S3 and R2 honour ("these
    // values override any headers that were set when the object was uploaded"): applied
    // here, after s3s has checked the signature, which covers the parameter.
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let s3 = s3.clone();
        async move {
            let wanted = (req.method() == hyper::Method::GET)
                .then(|| response_content_type(req.uri().query().unwrap_or("")))
                .flatten();
            let mut resp = hyper::service::Service::call(&s3, req).await?;
            if let Some(ct) = wanted
                && resp.status().is_success()
                && let Ok(value) = hyper::header::HeaderValue::from_str(&ct)
            {
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            Ok::<_, s3s::HttpError>(resp)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    S3Server {
        addr,
        _dir: dir,
        task,
    }
}

/// The decoded `response-content-type` of a query string, if any.
fn response_content_type(query: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://query/?{query}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "response-content-type")
        .map(|(_, v)| v.into_owned())
}

pub fn builder(addr: SocketAddr) -> R2StoreBuilder {
    R2StoreBuilder::new()
        .with_endpoint(format!("http://{addr}"))
        .with_bucket(BUCKET)
        .with_credentials(AKID, SECRET)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

pub fn random_bytes(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    Bytes::from(v)
}

// ---------------------------------------------------------------------------------------
// The fault server.

/// One request as the fault server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fault server does with a request.
pub enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers announcing `announced` bytes, then `sent` bytes, then a TCP reset.
    ResetMidBody { announced: usize, sent: usize },
    /// No answer for this long, then a close.
    Stall(Duration),
}

pub fn reply(status: u16, body: &str) -> Reply {
    Reply::Full {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

pub fn s3_error(status: u16, code: &str) -> Reply {
    reply(
        status,
        &format!(
            "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        ),
    )
}

pub type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

pub struct FaultServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub async fn fault_server(
    handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> FaultServer {
    let handler: Handler = Arc::new(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let _ = serve_one(sock, handler, seen).await;
            });
        }
    });
    FaultServer { addr, seen, task }
}

/// Reads one request (head and a Content-Length body), answers, closes.
pub async fn serve_one(
    mut sock: TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut req = Seen {
        method,
        target,
        headers,
        body_len: 0,
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    if chunked {
        // R2 refuses chunked uploads with 501; so does this server.
        seen.lock().unwrap().push(req);
        let body = "<Error><Code>NotImplemented</Code><Message>chunked</Message></Error>";
        let resp = format!(
            "HTTP/1.1 501 Not Implemented\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await?;
        return Ok(());
    }
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    req.body_len = have;
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(req.clone());
        s.len()
    };
    match handler(&req, n) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut resp = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                resp.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            sock.write_all(resp.as_bytes()).await?;
            if req.method != "HEAD" {
                sock.write_all(&body).await?;
            }
        }
        Reply::Stall(d) => tokio::time::sleep(d).await,
        Reply::ResetMidBody { announced, sent } => {
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n");
            sock.write_all(resp.as_bytes()).await?;
            sock.write_all(&vec![b'x'; sent]).await?;
            sock.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SO_LINGER 0: closing sends a RST, not a FIN (the close does not block then).
            #[allow(deprecated)]
            sock.set_linger(Some(Duration::ZERO))?;
            drop(sock);
        }
    }
    Ok(())
}
