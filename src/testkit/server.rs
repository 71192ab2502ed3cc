//! The fake's HTTP side: routing, parameters, the send methods, rate limits and faults.

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
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{FakeEvent, FakeFile, FakeLimits, FakeStats, Faults, Latency, MediaUploads};
use crate::media::{MediaKind, Sha256};
use crate::upload::Rate;

/// The Bot API's cap on a multipart body (50 MB), plus room for the other fields.
const BODY_CAP: usize = 50 * 1000 * 1000 + 64 * 1024;

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
    bots: HashMap<String, String>,
    chats: HashSet<i64>,
    latency: Latency,
    /// The latency of a send by file_id, when it differs from `latency`.
    file_id_latency: Option<Latency>,
    fetcher: reqwest::Client,
    in_flight: AtomicU32,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) faults: Faults,
    limits: FakeLimits,
    bot_gates: HashMap<String, Gate>,
    chat_gates: HashMap<(String, i64), Gate>,
    pub(super) stats: FakeStats,
    pub(super) per_media: HashMap<Sha256, MediaUploads>,
    pub(super) files: HashMap<String, FakeFile>,
    pub(super) events: Vec<FakeEvent>,
    pub(super) messages: HashMap<(i64, i64), Message>,
    next_message: HashMap<i64, i64>,
    next_file: u64,
    pub(super) hosted: HashMap<u64, (Bytes, String)>,
    pub(super) next_hosted: u64,
    url_cache: HashMap<String, Result<(Bytes, String), String>>,
}

pub(super) struct Message {
    pub(super) chat: i64,
}

/// A GCRA bucket and the ban a 429 gave.
#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    tat: Option<Instant>,
    banned_until: Option<Instant>,
}

impl Gate {
    fn banned(&self, now: Instant) -> Option<Duration> {
        self.banned_until.filter(|&u| u > now).map(|u| u - now)
    }

    /// How long until a send conforms to `rate` (zero: it does now).
    fn wait(&self, rate: Rate, now: Instant) -> Duration {
        let tolerance = rate.interval() * (rate.burst() - 1);
        match self.tat {
            Some(tat) => (tat.checked_sub(tolerance).unwrap_or(now)).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    fn take(&mut self, rate: Rate, now: Instant) {
        self.tat = Some(self.tat.unwrap_or(now).max(now) + rate.interval());
    }
}

/// Telegram's retry_after: whole seconds, at least one.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

enum Admit {
    Go,
    /// 429 with this many seconds; whether it was a violation.
    Limited(u64, bool),
}

impl State {
    pub(super) fn set_limits(&mut self, limits: FakeLimits) {
        self.limits = limits;
    }

    fn admit(&mut self, bot: &str, chat: i64, now: Instant) -> Admit {
        let bot_gate = self.bot_gates.entry(bot.to_owned()).or_default();
        if let Some(left) = bot_gate.banned(now) {
            return Admit::Limited(whole_seconds(left), true);
        }
        let bot_gate = *bot_gate;
        let chat_gate = self.chat_gates.entry((bot.to_owned(), chat)).or_default();
        if let Some(left) = chat_gate.banned(now) {
            return Admit::Limited(whole_seconds(left), true);
        }
        if let Some(rate) = self.limits.bot {
            let wait = bot_gate.wait(rate, now);
            if !wait.is_zero() {
                let secs = whole_seconds(wait);
                let g = self.bot_gates.get_mut(bot).expect("inserted above");
                g.banned_until = Some(now + Duration::from_secs(secs));
                return Admit::Limited(secs, false);
            }
        }
        if let Some(rate) = self.limits.chat(chat) {
            let wait = chat_gate.wait(rate, now);
            if !wait.is_zero() {
                let secs = whole_seconds(wait);
                chat_gate.banned_until = Some(now + Duration::from_secs(secs));
                return Admit::Limited(secs, false);
            }
            chat_gate.take(rate, now);
        }
        if let Some(rate) = self.limits.bot {
            self.bot_gates
                .get_mut(bot)
                .expect("inserted above")
                .take(rate, now);
        }
        Admit::Go
    }

    fn media(&mut self, sha: Sha256) -> &mut MediaUploads {
        self.per_media.entry(sha).or_default()
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
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
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

type Reply = Response<Full<Bytes>>;

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
    if sends_a_file_id(&lower, &params) {
        delay = shared.draw_file_id_latency().unwrap_or(delay);
    }
    let reply = match lower.as_str() {
        "getme" => Ok(ok(json!({
            "id": bot.parse::<i64>().unwrap_or(0),
            "is_bot": true,
            "first_name": "Fake bot",
            "username": format!("fake_{bot}_bot"),
        }))),
        "deletemessage" => Ok(delete_message(&shared, &params)),
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
    shared.lock().events.push(FakeEvent {
        at,
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
async fn read_body(mut body: Incoming) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    let mut over = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Some(buf.freeze());
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > BODY_CAP {
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
struct Params {
    text: HashMap<String, String>,
    /// Parts with a filename: (filename, bytes).
    files: HashMap<String, (String, Bytes)>,
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

/// Where a send's media comes from.
enum Media {
    Upload(Bytes),
    Url(String),
    FileId(String),
}

async fn send(
    shared: &Shared,
    bot: &str,
    kind: MediaKind,
    params: &Params,
) -> Result<Reply, Reset> {
    shared.lock().stats.sends += 1;
    let Some(chat) = params.text.get("chat_id") else {
        return Ok(error(400, "Bad Request: chat_id is empty"));
    };
    let Ok(chat) = chat.trim().parse::<i64>() else {
        return Ok(error(400, "Bad Request: chat not found"));
    };
    let field = kind.as_str();
    let media = match (params.files.get(field), params.text.get(field)) {
        (Some((_, bytes)), _) => Media::Upload(bytes.clone()),
        (None, Some(v)) if v.starts_with("http://") || v.starts_with("https://") => {
            Media::Url(v.clone())
        }
        (None, Some(v)) => Media::FileId(v.trim().to_owned()),
        (None, None) => {
            return Ok(error(
                400,
                &format!("Bad Request: there is no {field} in the request"),
            ));
        }
    };
    // The bytes received, known before anything else is decided.
    let mut received = match &media {
        Media::Upload(bytes) => Some(record_upload(shared, bytes)),
        _ => None,
    };
    if !shared.chats.contains(&chat) {
        fail(shared, received);
        return Ok(error(400, "Bad Request: chat not found"));
    }
    let admitted = shared.lock().admit(bot, chat, Instant::now());
    if let Admit::Limited(secs, violation) = admitted {
        {
            let mut state = shared.lock();
            state.stats.too_many_requests += 1;
            state.stats.violations += u64::from(violation);
        }
        fail(shared, received);
        let mut reply = json_reply(
            429,
            json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {secs}"),
                "parameters": { "retry_after": secs },
            }),
        );
        reply
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().expect("digits"));
        if violation {
            reply
                .headers_mut()
                .insert("x-fake-violation", "1".parse().expect("ascii"));
        }
        return Ok(reply);
    }

    // Resolve the media to a file: the bytes, fetched bytes, or a known file.
    let file = match media {
        Media::Upload(bytes) => {
            let limit = kind.upload_limit() as usize;
            if bytes.is_empty() {
                fail(shared, received);
                return Ok(error(400, "Bad Request: file must be non-empty"));
            }
            if bytes.len() > limit {
                fail(shared, received);
                return match kind {
                    MediaKind::Photo => Ok(error(400, "Bad Request: file is too big")),
                    _ => Ok(error(413, "Request Entity Too Large")),
                };
            }
            Resolved::Bytes(bytes)
        }
        Media::Url(url) => match fetch(shared, kind, &url).await {
            Ok(bytes) => {
                received = Some(record_upload(shared, &bytes));
                shared.lock().stats.url_fetches += 1;
                Resolved::Bytes(bytes)
            }
            Err(description) => return Ok(error(400, &description)),
        },
        Media::FileId(id) => {
            let known = shared.lock().files.get(&id).cloned();
            match known {
                Some(f) if f.bot_id == bot && compatible(f.kind, kind) => Resolved::Known(f),
                Some(f) if f.bot_id == bot => {
                    return Ok(error(
                        400,
                        &format!(
                            "Bad Request: can't use file of type {} as {}",
                            type_name(f.kind),
                            type_name(kind)
                        ),
                    ));
                }
                _ => {
                    return Ok(error(
                        400,
                        "Bad Request: wrong file identifier/HTTP URL specified",
                    ));
                }
            }
        }
    };

    // Faults hit once the request is fully received.
    let faults = shared.lock().faults;
    if fastrand::f64() < faults.resets {
        shared.lock().stats.resets += 1;
        fail(shared, received);
        return Err(Reset);
    }
    if fastrand::f64() < faults.server_errors {
        shared.lock().stats.server_errors += 1;
        fail(shared, received);
        if faults.html && fastrand::bool() {
            let mut reply = Response::new(Full::new(Bytes::from_static(
                b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            )));
            *reply.status_mut() = StatusCode::BAD_GATEWAY;
            reply
                .headers_mut()
                .insert("content-type", "text/html".parse().expect("ascii"));
            return Ok(reply);
        }
        return Ok(error(500, "Internal Server Error"));
    }

    let message = {
        let mut state = shared.lock();
        let message_id = {
            let n = state.next_message.entry(chat).or_insert(0);
            *n += 1;
            *n
        };
        state.messages.insert((chat, message_id), Message { chat });
        state.stats.messages += 1;
        let (sha, size) = match &file {
            Resolved::Bytes(bytes) => (Sha256::of(bytes), bytes.len() as u64),
            Resolved::Known(f) => {
                state.stats.sent_by_file_id += 1;
                (f.sha256, f.size)
            }
        };
        if let Some(sha) = received.take() {
            state.media(sha).succeeded += 1;
        }
        let mut msg = json!({
            "message_id": message_id,
            "date": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "chat": {
                "id": chat,
                "type": if chat < 0 { "supergroup" } else { "private" },
            },
        });
        let body = media_objects(&mut state, bot, kind, sha, size);
        if let (Value::Object(m), Value::Object(b)) = (&mut msg, body) {
            m.extend(b);
        }
        msg
    };
    Ok(ok(message))
}

/// `sendMediaGroup`: 2 to 10 photos and videos (or documents only, or audio only). The album
/// counts as one send against the rate limits (Telegram does not document how it counts);
/// an album over them gets a 400 "retry after N", as Telegram answers albums.
async fn send_group(shared: &Shared, bot: &str, params: &Params) -> Result<Reply, Reset> {
    shared.lock().stats.sends += 1;
    let Some(Ok(chat)) = params.text.get("chat_id").map(|c| c.trim().parse::<i64>()) else {
        return Ok(error(400, "Bad Request: chat not found"));
    };
    let items: Vec<Value> = match params.text.get("media").map(|m| serde_json::from_str(m)) {
        Some(Ok(Value::Array(items))) => items,
        _ => return Ok(error(400, "Bad Request: can't parse media JSON object")),
    };
    if !(2..=10).contains(&items.len()) {
        return Ok(error(
            400,
            "Bad Request: wrong number of media in the album: 2-10 expected",
        ));
    }
    // Each item: its kind and where its bytes are.
    let mut wanted = Vec::new();
    for item in &items {
        let kind = match item.get("type").and_then(Value::as_str) {
            Some("photo") => MediaKind::Photo,
            Some("video") => MediaKind::Video,
            Some("document") => MediaKind::Document,
            Some("audio") => MediaKind::Audio,
            _ => return Ok(error(400, "Bad Request: invalid media type in the album")),
        };
        let Some(media) = item.get("media").and_then(Value::as_str) else {
            return Ok(error(
                400,
                "Bad Request: there is no media in the album item",
            ));
        };
        let media = if let Some(name) = media.strip_prefix("attach://") {
            match params.files.get(name) {
                Some((_, bytes)) => Media::Upload(bytes.clone()),
                None => {
                    return Ok(error(
                        400,
                        "Bad Request: wrong file identifier/HTTP URL specified",
                    ));
                }
            }
        } else if media.starts_with("http://") || media.starts_with("https://") {
            Media::Url(media.to_owned())
        } else {
            Media::FileId(media.to_owned())
        };
        wanted.push((kind, media));
    }
    let kinds: HashSet<MediaKind> = wanted.iter().map(|(k, _)| *k).collect();
    let mixable = kinds
        .iter()
        .all(|k| matches!(k, MediaKind::Photo | MediaKind::Video))
        || kinds.len() == 1;
    if !mixable {
        return Ok(error(
            400,
            "Bad Request: documents and audio can't be mixed with other media types",
        ));
    }
    let mut received: Vec<Sha256> = wanted
        .iter()
        .filter_map(|(_, m)| match m {
            Media::Upload(bytes) => Some(record_upload(shared, bytes)),
            _ => None,
        })
        .collect();
    let fail_all = |received: &[Sha256]| {
        for sha in received {
            fail(shared, Some(*sha));
        }
    };
    if !shared.chats.contains(&chat) {
        fail_all(&received);
        return Ok(error(400, "Bad Request: chat not found"));
    }
    {
        let admitted = shared.lock().admit(bot, chat, Instant::now());
        if let Admit::Limited(secs, violation) = admitted {
            {
                let mut state = shared.lock();
                state.stats.too_many_requests += 1;
                state.stats.violations += u64::from(violation);
            }
            fail_all(&received);
            let mut reply = error(
                400,
                &format!("Bad Request: Too Many Requests: retry after {secs}"),
            );
            if violation {
                reply
                    .headers_mut()
                    .insert("x-fake-violation", "1".parse().expect("ascii"));
            }
            return Ok(reply);
        }
    }
    let mut files = Vec::new();
    for (kind, media) in wanted {
        let file = match media {
            Media::Upload(bytes) => {
                if bytes.is_empty() || bytes.len() as u64 > kind.upload_limit() {
                    fail_all(&received);
                    return Ok(error(400, "Bad Request: file is too big"));
                }
                (Sha256::of(&bytes), bytes.len() as u64)
            }
            Media::Url(url) => match fetch(shared, kind, &url).await {
                Ok(bytes) => {
                    received.push(record_upload(shared, &bytes));
                    shared.lock().stats.url_fetches += 1;
                    (Sha256::of(&bytes), bytes.len() as u64)
                }
                Err(description) => {
                    fail_all(&received);
                    return Ok(error(400, &description));
                }
            },
            Media::FileId(id) => match shared.lock().files.get(&id) {
                Some(f) if f.bot_id == bot && f.kind == kind => (f.sha256, f.size),
                _ => {
                    fail_all(&received);
                    return Ok(error(
                        400,
                        "Bad Request: wrong file identifier/HTTP URL specified",
                    ));
                }
            },
        };
        files.push((kind, file));
    }
    let faults = shared.lock().faults;
    if fastrand::f64() < faults.resets {
        shared.lock().stats.resets += 1;
        fail_all(&received);
        return Err(Reset);
    }
    if fastrand::f64() < faults.server_errors {
        shared.lock().stats.server_errors += 1;
        fail_all(&received);
        return Ok(error(500, "Internal Server Error"));
    }
    let mut state = shared.lock();
    for sha in &received {
        state.media(*sha).succeeded += 1;
    }
    let group_id = format!("{}", 13_000_000_000_000_000u64 + state.next_file);
    let mut messages = Vec::new();
    for (kind, (sha, size)) in files {
        let message_id = {
            let n = state.next_message.entry(chat).or_insert(0);
            *n += 1;
            *n
        };
        state.messages.insert((chat, message_id), Message { chat });
        state.stats.messages += 1;
        let mut msg = json!({
            "message_id": message_id,
            "date": 0,
            "media_group_id": group_id,
            "chat": { "id": chat, "type": if chat < 0 { "supergroup" } else { "private" } },
        });
        let body = media_objects(&mut state, bot, kind, sha, size);
        if let (Value::Object(m), Value::Object(b)) = (&mut msg, body) {
            m.extend(b);
        }
        messages.push(msg);
    }
    Ok(ok(Value::Array(messages)))
}

enum Resolved {
    Bytes(Bytes),
    Known(FakeFile),
}

fn record_upload(shared: &Shared, bytes: &Bytes) -> Sha256 {
    let sha = Sha256::of(bytes);
    let mut state = shared.lock();
    state.stats.uploads += 1;
    state.stats.upload_bytes += bytes.len() as u64;
    state.media(sha).uploads += 1;
    sha
}

fn fail(shared: &Shared, received: Option<Sha256>) {
    if let Some(sha) = received {
        shared.lock().media(sha).failed += 1;
    }
}

/// Whether a file of type `have` can be sent with the method for `want`.
fn compatible(have: MediaKind, want: MediaKind) -> bool {
    have == want
}

fn type_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Photo => "Photo",
        MediaKind::Video => "Video",
        MediaKind::Animation => "Animation",
        MediaKind::Document => "Document",
        MediaKind::Audio => "Audio",
        MediaKind::Voice => "Voice",
        MediaKind::VideoNote => "VideoNote",
        MediaKind::Sticker => "Sticker",
    }
}

/// Issues a file_id for `kind` and remembers it.
fn issue(
    state: &mut State,
    bot: &str,
    kind: MediaKind,
    sha: Sha256,
    size: u64,
    (width, height, largest): (u32, u32, bool),
) -> (String, String) {
    state.next_file += 1;
    // Real file_ids start with a type tag much like these.
    let tag = match kind {
        MediaKind::Photo => "AgAC",
        MediaKind::Video => "BAAC",
        MediaKind::Animation => "CgAC",
        MediaKind::Document => "BQAC",
        MediaKind::Audio => "CQAC",
        MediaKind::Voice => "AwAC",
        MediaKind::VideoNote => "DQAC",
        MediaKind::Sticker => "CAAC",
    };
    let file_id = format!(
        "{tag}{bot}_{:06}_{:08x}",
        state.next_file,
        fastrand::u32(..)
    );
    // Stable for the same bytes across bots, as Telegram's is; distinct per photo size.
    let unique = format!("AQAD{}{width}", &sha.to_hex()[..12]);
    state.files.insert(
        file_id.clone(),
        FakeFile {
            bot_id: bot.to_owned(),
            kind,
            sha256: sha,
            size,
            width,
            height,
            largest,
        },
    );
    (file_id, unique)
}

/// The message fields carrying the media: sizes for a photo, `animation` and `document`
/// for an animation, one object otherwise.
fn media_objects(state: &mut State, bot: &str, kind: MediaKind, sha: Sha256, size: u64) -> Value {
    let one = |state: &mut State, kind: MediaKind, extra: Value| {
        let (file_id, unique) = issue(state, bot, kind, sha, size, (0, 0, false));
        let mut v = json!({ "file_id": file_id, "file_unique_id": unique, "file_size": size });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    };
    match kind {
        MediaKind::Photo => {
            let sizes = [(90u32, 60u32, 16u64), (320, 213, 4), (800, 533, 1)];
            let photo: Vec<Value> = sizes
                .iter()
                .map(|&(w, h, div)| {
                    let s = (size / div).max(1);
                    let (file_id, unique) = issue(state, bot, kind, sha, s, (w, h, div == 1));
                    json!({ "file_id": file_id, "file_unique_id": unique, "width": w, "height": h, "file_size": s })
                })
                .collect();
            json!({ "photo": photo })
        }
        MediaKind::Animation => {
            let animation = one(
                state,
                MediaKind::Animation,
                json!({ "width": 320, "height": 240, "duration": 1, "mime_type": "video/mp4" }),
            );
            let document = one(
                state,
                MediaKind::Document,
                json!({ "file_name": "animation.mp4", "mime_type": "video/mp4" }),
            );
            json!({ "animation": animation, "document": document })
        }
        MediaKind::Video => {
            json!({ "video": one(state, kind, json!({ "width": 640, "height": 360, "duration": 1 })) })
        }
        MediaKind::Document => json!({ "document": one(state, kind, json!({})) }),
        MediaKind::Audio => json!({ "audio": one(state, kind, json!({ "duration": 1 })) }),
        MediaKind::Voice => json!({ "voice": one(state, kind, json!({ "duration": 1 })) }),
        MediaKind::VideoNote => {
            json!({ "video_note": one(state, kind, json!({ "length": 240, "duration": 1 })) })
        }
        MediaKind::Sticker => json!({ "sticker": one(state, kind, json!({
            "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false
        })) }),
    }
}

/// Fetches a URL as Telegram would, from loopback only, with Telegram's URL rules. The
/// outcome is cached per URL, failures included, as Telegram caches it.
async fn fetch(shared: &Shared, kind: MediaKind, url: &str) -> Result<Bytes, String> {
    const FAILED: &str = "Bad Request: failed to get HTTP URL content";
    const WRONG_TYPE: &str = "Bad Request: wrong type of the web page content";
    if kind == MediaKind::VideoNote {
        // "Sending video notes by a URL is currently unsupported."
        return Err("Bad Request: wrong file identifier/HTTP URL specified".to_owned());
    }
    let cached = shared.lock().url_cache.get(url).cloned();
    let fetched = match cached {
        Some(outcome) => outcome,
        None => {
            let outcome = fetch_once(shared, url, kind.url_limit()).await;
            shared
                .lock()
                .url_cache
                .insert(url.to_owned(), outcome.clone());
            outcome
        }
    };
    let (bytes, content_type) = fetched.map_err(|_| FAILED.to_owned())?;
    let ct = content_type.to_ascii_lowercase();
    let type_ok = match kind {
        MediaKind::Photo => ct.starts_with("image/"),
        MediaKind::Document => ["application/pdf", "application/zip", "image/gif"]
            .iter()
            .any(|t| ct.starts_with(t)),
        MediaKind::Sticker => ct.starts_with("image/webp"),
        _ => !ct.starts_with("text/"),
    };
    if !type_ok {
        return Err(WRONG_TYPE.to_owned());
    }
    if bytes.len() as u64 > kind.url_limit() || bytes.is_empty() {
        return Err(FAILED.to_owned());
    }
    Ok(bytes)
}

async fn fetch_once(shared: &Shared, url: &str, limit: u64) -> Result<(Bytes, String), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "the fake fetches loopback URLs only, not {}",
            parsed.host_str().unwrap_or("")
        ));
    }
    let response = shared
        .fetcher
        .get(parsed)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if bytes.len() as u64 > limit {
        return Err("too big".to_owned());
    }
    Ok((bytes, content_type))
}

fn delete_message(shared: &Shared, params: &Params) -> Reply {
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
    if state.messages.remove(&(chat, id)).is_none() {
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

fn ok(result: Value) -> Reply {
    json_reply(200, json!({ "ok": true, "result": result }))
}

fn error(code: u16, description: &str) -> Reply {
    json_reply(
        code,
        json!({ "ok": false, "error_code": code, "description": description }),
    )
}

fn json_reply(code: u16, body: Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("ascii"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_counts_violations_and_rates_refill() {
        let mut state = State {
            limits: FakeLimits::off()
                .with_private_chat(Rate::new(1, Duration::from_secs(1)).with_burst(2)),
            ..State::default()
        };
        let t0 = Instant::now();
        assert!(matches!(state.admit("1", 5, t0), Admit::Go));
        assert!(matches!(state.admit("1", 5, t0), Admit::Go));
        assert!(matches!(state.admit("1", 5, t0), Admit::Limited(1, false)));
        assert!(matches!(
            state.admit("1", 5, t0 + Duration::from_millis(500)),
            Admit::Limited(1, true)
        ));
        // Another chat is not touched by this chat's ban.
        assert!(matches!(state.admit("1", 6, t0), Admit::Go));
        assert!(matches!(
            state.admit("1", 5, t0 + Duration::from_secs(1)),
            Admit::Go
        ));
    }
}
