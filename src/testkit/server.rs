//! The fake's HTTP side: the listener, routing, parameters, replies; `deleteMessage` and the
//! hosted files. The send methods are in `send.rs`, `forwardMessage` in `forward.rs`, the
//! messages kept in `messages.rs`, the rate limits in `limits.rs`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::forward::forward;
use super::limits::{Admit, Gates};
use super::messages::{Messages, bot_user};
use super::rules::{self, ChatProblem};
use super::send::{send, send_group, too_many_requests};
use super::text::send_text;
use super::{FakeEvent, FakeFile, FakeLimits, FakeStats, Faults, Latency, MediaUploads};
use crate::media::{MediaKind, Sha256};

/// The Bot API's cap on a multipart body (50 MB), plus room for the other fields.
fn body_cap() -> usize {
    rules::upload_limit(MediaKind::Document) as usize + 64 * 1024
}

/// A connection reset: returned from the service, it makes hyper drop the connection with no
/// answer.
#[derive(Debug)]
pub(super) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for Reset {}

pub(super) struct Shared {
    /// token -> the bot's numeric id.
    pub(super) bots: HashMap<String, String>,
    pub(super) chats: HashSet<i64>,
    pub(super) latency: Latency,
    pub(super) fetcher: reqwest::Client,
    /// The latency of a send by file_id, when it differs from `latency`.
    file_id_latency: Option<Latency>,
    in_flight: AtomicU32,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) faults: Faults,
    pub(super) limits: FakeLimits,
    pub(super) gates: Gates,
    pub(super) chat_problems: HashMap<i64, ChatProblem>,
    pub(super) stats: FakeStats,
    pub(super) per_media: HashMap<Sha256, MediaUploads>,
    pub(super) files: HashMap<String, FakeFile>,
    pub(super) events: Vec<FakeEvent>,
    pub(super) messages: Messages,
    pub(super) next_file: u64,
    pub(super) hosted: HashMap<u64, (Bytes, String)>,
    pub(super) next_hosted: u64,
    pub(super) url_cache: HashMap<String, Result<(Bytes, String), String>>,
}

impl State {
    pub(super) fn set_limits(&mut self, limits: FakeLimits) {
        self.limits = limits;
    }
}

impl Shared {
    pub(super) fn new(
        bots: HashMap<String, String>,
        chats: Vec<i64>,
        limits: FakeLimits,
        faults: Faults,
        latency: Latency,
        fetcher: reqwest::Client,
    ) -> Self {
        Self {
            bots,
            chats: chats.into_iter().collect(),
            latency,
            file_id_latency: None,
            fetcher,
            in_flight: AtomicU32::new(0),
            state: Mutex::new(State {
                faults,
                limits,
                ..State::default()
            }),
        }
    }
}

impl Shared {
    /// Sends by file_id take `latency` rather than the latency of other requests.
    pub(super) fn set_file_id_latency(&mut self, latency: Option<Latency>) {
        self.file_id_latency = latency;
    }

    /// The latency of a send by file_id: no bytes to receive, none to store.
    fn draw_file_id_latency(&self) -> Option<Duration> {
        self.file_id_latency.as_ref().map(Latency::draw)
    }
}

/// A send whose media field is neither a file part nor a URL: a file_id.
fn sends_a_file_id(method: &str, params: &Params) -> bool {
    send_kind(method).is_some_and(|kind| {
        let field = kind.as_str();
        !params.files.contains_key(field)
            && params
                .text
                .get(field)
                .is_some_and(|v| !v.starts_with("http://") && !v.starts_with("https://"))
    })
}

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    // Connections live in this set: when the server stops, they stop with it.
    let mut connections = JoinSet::new();
    // Requests run in tasks of their own, so that a client that leaves (a timeout, a
    // dropped connection) does not stop what Telegram would finish anyway: a URL being
    // fetched, a message being made, the request's log entry. They stop when the server
    // does: `_alive` is dropped with this future, even when it is aborted.
    let (_alive, gone) = watch::channel(());
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let gone = gone.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let (shared, mut gone) = (shared.clone(), gone.clone());
                        let request = tokio::spawn(async move {
                            tokio::select! {
                                reply = handle(shared, req) => reply,
                                _ = gone.changed() => Err(Reset),
                            }
                        });
                        async move { request.await.unwrap_or(Err(Reset)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

pub(super) type Reply = Response<Full<Bytes>>;

struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Reset> {
    let now_running = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&shared);
    {
        let mut state = shared.lock();
        state.stats.requests += 1;
        state.stats.max_in_flight = state.stats.max_in_flight.max(now_running);
    }
    let arrived = Instant::now();
    // A request is counted against the rate limits as it arrives, in order of arrival, and
    // takes its latency (the upload's time at Telegram) after that: counted after its
    // latency, a request that arrived first could be charged after one that arrived later
    // and be refused although it kept to the limits when it arrived.
    let mut delay = shared.latency.draw();
    let latency = |delay: Duration| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    };

    let path = req.uri().path().to_owned();
    if let Some(n) = path.strip_prefix("/files/") {
        latency(delay).await;
        return Ok(hosted(&shared, n));
    }
    let Some((token, method)) = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Ok(error(404, "Not Found"));
    };
    let Some(bot) = shared.bots.get(token).cloned() else {
        log(&shared, arrived, method, None, 401, false);
        return Ok(error(401, "Unauthorized"));
    };
    let method = method.to_owned();

    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some(body) = read_body(req.into_body()).await else {
        log(&shared, arrived, &method, None, 413, false);
        return Ok(error(413, "Request Entity Too Large"));
    };
    let params = match Params::parse(&content_type, &query, body).await {
        Ok(p) => p,
        Err(reason) => return Ok(error(400, &format!("Bad Request: {reason}"))),
    };

    let lower = method.to_ascii_lowercase();
    // A forward moves no bytes either: Telegram answers it as fast as a send by file_id.
    if sends_a_file_id(&lower, &params) || lower == "forwardmessage" {
        delay = shared.draw_file_id_latency().unwrap_or(delay);
    }
    let reply = match lower.as_str() {
        "getme" => Ok(ok(bot_user(&bot))),
        "deletemessage" => Ok(delete_message(&shared, &bot, &params)),
        "forwardmessage" => forward(&shared, &bot, &params),
        "sendmessage" => send_text(&shared, &bot, &params),
        "sendmediagroup" => send_group(&shared, &bot, &params).await,
        _ => match send_kind(&lower) {
            Some(kind) => send(&shared, &bot, kind, &params).await,
            None => Ok(error(404, "Not Found")),
        },
    };
    latency(delay).await;
    let chat = params.text.get("chat_id").and_then(|c| c.parse().ok());
    match &reply {
        Ok(r) => {
            let violation = r.headers().get("x-fake-violation").is_some();
            log(
                &shared,
                arrived,
                &method,
                chat,
                r.status().as_u16(),
                violation,
            );
        }
        Err(Reset) => log(&shared, arrived, &method, chat, 0, false),
    }
    reply
}

fn log(
    shared: &Shared,
    at: Instant,
    method: &str,
    chat: Option<i64>,
    status: u16,
    violation: bool,
) {
    // Taken before the lock: the time spent waiting for it is the fake's too, but not the
    // request's service time.
    let took = at.elapsed();
    shared.lock().events.push(FakeEvent {
        at,
        took,
        method: method.to_owned(),
        chat,
        status,
        violation,
    });
}

fn send_kind(method: &str) -> Option<MediaKind> {
    Some(match method {
        "sendphoto" => MediaKind::Photo,
        "sendvideo" => MediaKind::Video,
        "sendanimation" => MediaKind::Animation,
        "senddocument" => MediaKind::Document,
        "sendaudio" => MediaKind::Audio,
        "sendvoice" => MediaKind::Voice,
        "sendvideonote" => MediaKind::VideoNote,
        "sendsticker" => MediaKind::Sticker,
        _ => return None,
    })
}

/// Reads the whole body, or `None` past the cap (the rest is drained so the client sees the
/// answer rather than a broken pipe).
pub(super) async fn read_body(mut body: Incoming) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    let mut over = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Some(buf.freeze());
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > body_cap() {
                over = true;
                buf.clear();
            } else if !over {
                buf.extend_from_slice(&data);
            }
        }
    }
    (!over).then(|| buf.freeze())
}

/// A request's parameters, from the query string and the body (multipart, JSON or form).
#[derive(Default)]
pub(super) struct Params {
    pub(super) text: HashMap<String, String>,
    /// Parts with a filename: (filename, bytes).
    pub(super) files: HashMap<String, (String, Bytes)>,
}

impl Params {
    async fn parse(content_type: &str, query: &str, body: Bytes) -> Result<Params, String> {
        let mut params = Params::default();
        if !query.is_empty() {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query).map_err(|e| e.to_string())?;
            params.text.extend(pairs);
        }
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "multipart/form-data" => {
                let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
                let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
                let mut multipart = multer::Multipart::new(stream, boundary);
                while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
                    let name = field.name().unwrap_or("").to_owned();
                    // Only a part with a filename is a file to the Bot API.
                    let file_name = field.file_name().map(str::to_owned);
                    let data = field.bytes().await.map_err(|e| e.to_string())?;
                    match file_name {
                        Some(file_name) => {
                            params.files.insert(name, (file_name, data));
                        }
                        None => {
                            params
                                .text
                                .insert(name, String::from_utf8_lossy(&data).into_owned());
                        }
                    }
                }
            }
            "application/json" => {
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|_| "can't parse JSON object".to_owned())?;
                let Value::Object(map) = value else {
                    return Err("can't parse JSON object".to_owned());
                };
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    params.text.insert(k, v);
                }
            }
            "application/x-www-form-urlencoded" => {
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())?;
                params.text.extend(pairs);
            }
            _ => {}
        }
        Ok(params)
    }
}

/// `deleteMessage`: not a message, so no rate counts it, but a bot inside a ban is refused
/// (and the ban prolonged), as for any request.
fn delete_message(shared: &Shared, bot: &str, params: &Params) -> Reply {
    let chat = params
        .text
        .get("chat_id")
        .and_then(|c| c.trim().parse::<i64>().ok());
    let id = params
        .text
        .get("message_id")
        .and_then(|c| c.trim().parse::<i64>().ok());
    let (Some(chat), Some(id)) = (chat, id) else {
        return error(400, "Bad Request: message identifier is not specified");
    };
    if !shared.chats.contains(&chat) {
        return error(400, "Bad Request: chat not found");
    }
    let mut state = shared.lock();
    if let Admit::Limited(secs, violation) = state.gates.admit_other(bot, Instant::now()) {
        state.stats.too_many_requests += 1;
        state.stats.violations += u64::from(violation);
        return too_many_requests(secs, violation);
    }
    if !state.messages.remove(bot, chat, id) {
        return error(400, "Bad Request: message to delete not found");
    }
    state.stats.deleted += 1;
    ok(Value::Bool(true))
}

fn hosted(shared: &Shared, n: &str) -> Reply {
    let file = n
        .parse::<u64>()
        .ok()
        .and_then(|n| shared.lock().hosted.get(&n).cloned());
    match file {
        Some((bytes, content_type)) => {
            let mut reply = Response::new(Full::new(bytes));
            if let Ok(ct) = content_type.parse() {
                reply.headers_mut().insert("content-type", ct);
            }
            reply
        }
        None => {
            let mut reply = Response::new(Full::new(Bytes::from_static(b"not found")));
            *reply.status_mut() = StatusCode::NOT_FOUND;
            reply
        }
    }
}

pub(super) fn ok(result: Value) -> Reply {
    json_reply(200, json!({ "ok": true, "result": result }))
}

pub(super) fn error(code: u16, description: &str) -> Reply {
    json_reply(
        code,
        json!({ "ok": false, "error_code": code, "description": description }),
    )
}

pub(super) fn json_reply(code: u16, body: Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("ascii"));
    reply
}
