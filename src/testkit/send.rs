//! The send methods: one media (`sendPhoto` ... `sendSticker`) or an album
//! (`sendMediaGroup`), by upload, URL or file_id, under the rate limits, chat problems and
//! injected faults; the messages and file_ids they answer.

use std::collections::HashSet;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::FakeFile;
use super::files::media_objects;
use super::limits::Admit;
use super::messages::{caption, create_message, with_caption, with_protection};
use super::rules::{self, UrlVerdict};
use super::server::{Params, Reply, Reset, Shared, State, error, json_reply, ok};
use crate::media::{MediaKind, Sha256};

/// Where a send's media comes from.
enum Media {
    Upload(Bytes),
    Url(String),
    FileId(String),
}

pub(super) async fn send(
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
    if let Some((code, description)) = chat_problem(shared, chat, Some(kind)) {
        fail(shared, received);
        return Ok(error(code, description));
    }
    // Checked before the message reaches Telegram's servers: not counted against the limits.
    let caption = match caption(params.text.get("caption").map(String::as_str), kind) {
        Ok(caption) => caption,
        Err(description) => {
            fail(shared, received);
            return Ok(error(400, description));
        }
    };
    let admitted = admit(shared, bot, chat, 1);
    if let Admit::Limited(secs, violation) = admitted {
        fail(shared, received);
        return Ok(too_many_requests(secs, violation));
    }

    // Resolve the media to a file: the bytes, fetched bytes, or a known file.
    let mut sent_as = kind;
    let file = match media {
        Media::Upload(bytes) => {
            let limit = rules::upload_limit(kind) as usize;
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
            Ok((bytes, verdict)) => {
                received = Some(record_upload(shared, &bytes));
                shared.lock().stats.url_fetches += 1;
                if verdict == UrlVerdict::AsDocument {
                    // "1-20MB voice notes will be sent as files."
                    sent_as = MediaKind::Document;
                }
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
    if let Some(fault) = injected_fault(shared) {
        fail(shared, received);
        return fault;
    }

    let message = {
        let mut state = shared.lock();
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
        let mut body = media_objects(&mut state, bot, sent_as, sha, size);
        with_caption(&mut body, caption);
        with_protection(&mut body, params);
        create_message(&mut state, bot, chat, body)
    };
    Ok(ok(message))
}

/// `sendMediaGroup`: 2 to 10 photos and videos (or documents only, or audio only). The album
/// counts as one send per item against the rate limits (Telegram does not document how it
/// counts; per item is the strict reading, and an album makes one message per item); an
/// album over them gets a 400 "retry after N", as Telegram answers albums.
pub(super) async fn send_group(
    shared: &Shared,
    bot: &str,
    params: &Params,
) -> Result<Reply, Reset> {
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
        let caption = match caption(item.get("caption").and_then(Value::as_str), kind) {
            Ok(caption) => caption,
            Err(description) => return Ok(error(400, description)),
        };
        wanted.push((kind, media, caption));
    }
    let kinds: HashSet<MediaKind> = wanted.iter().map(|(k, _, _)| *k).collect();
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
        .filter_map(|(_, m, _)| match m {
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
    let photo = wanted.iter().any(|(k, _, _)| *k == MediaKind::Photo);
    if let Some((code, description)) = chat_problem(shared, chat, photo.then_some(MediaKind::Photo))
    {
        fail_all(&received);
        return Ok(error(code, description));
    }
    {
        let admitted = admit(shared, bot, chat, wanted.len() as u32);
        if let Admit::Limited(secs, violation) = admitted {
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
    for (kind, media, caption) in wanted {
        let file = match media {
            Media::Upload(bytes) => {
                if bytes.is_empty() || bytes.len() as u64 > rules::upload_limit(kind) {
                    fail_all(&received);
                    return Ok(error(400, "Bad Request: file is too big"));
                }
                (Sha256::of(&bytes), bytes.len() as u64)
            }
            Media::Url(url) => match fetch(shared, kind, &url).await {
                Ok((bytes, _)) => {
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
        files.push((kind, file, caption));
    }
    if let Some(fault) = injected_fault(shared) {
        fail_all(&received);
        return fault;
    }
    let mut state = shared.lock();
    for sha in &received {
        state.media(*sha).succeeded += 1;
    }
    let group_id = format!("{}", 13_000_000_000_000_000u64 + state.next_file);
    let mut messages = Vec::new();
    for (kind, (sha, size), caption) in files {
        let mut body = media_objects(&mut state, bot, kind, sha, size);
        with_caption(&mut body, caption);
        with_protection(&mut body, params);
        if let Value::Object(b) = &mut body {
            b.insert("media_group_id".to_owned(), Value::String(group_id.clone()));
        }
        messages.push(create_message(&mut state, bot, chat, body));
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

/// Fetches a URL as Telegram would, from loopback only, and judges what it served by
/// Telegram's URL rules ([`rules::judge_url`]). The outcome of the fetch is cached per URL,
/// failures included, as Telegram caches it.
async fn fetch(shared: &Shared, kind: MediaKind, url: &str) -> Result<(Bytes, UrlVerdict), String> {
    if kind == MediaKind::VideoNote {
        // "Sending video notes by a URL is currently unsupported": refused before any fetch.
        return Err(rules::WRONG_FILE_ID.to_owned());
    }
    let cached = shared.lock().url_cache.get(url).cloned();
    let fetched = match cached {
        Some(outcome) => outcome,
        None => {
            let outcome = fetch_once(shared, url, rules::url_limit(kind)).await;
            shared
                .lock()
                .url_cache
                .insert(url.to_owned(), outcome.clone());
            outcome
        }
    };
    let (bytes, content_type) = fetched.map_err(|_| rules::FETCH_FAILED.to_owned())?;
    match rules::judge_url(kind, &content_type, bytes.len() as u64) {
        UrlVerdict::Refuse(description) => Err(description.to_owned()),
        _ if fastrand::f64() < shared.lock().faults.url_generation => {
            Err(rules::CANT_UPLOAD_BY_URL.to_owned())
        }
        verdict => Ok((bytes, verdict)),
    }
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

/// Counts a send against the bot's and the chat's limits as it arrives, and a refusal in the
/// stats (a violation when it arrived inside a ban).
/// Telegram's 429: "Too Many Requests: retry after N", with `parameters.retry_after` and the
/// `Retry-After` header; marked for the stats when it arrived inside a ban.
pub(super) fn too_many_requests(secs: u64, violation: bool) -> Reply {
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
    reply
}

pub(super) fn admit(shared: &Shared, bot: &str, chat: i64, messages: u32) -> Admit {
    let mut state = shared.lock();
    let state = &mut *state;
    let admitted = state
        .gates
        .admit_messages(&state.limits, bot, chat, Instant::now(), messages);
    if let Admit::Limited(_, violation) = admitted {
        state.stats.too_many_requests += 1;
        state.stats.violations += u64::from(violation);
    }
    admitted
}

/// The answer a chat problem set on `chat` gives a send (of `kind`, when one kind matters).
pub(super) fn chat_problem(
    shared: &Shared,
    chat: i64,
    kind: Option<MediaKind>,
) -> Option<(u16, &'static str)> {
    shared.lock().chat_problems.get(&chat)?.answer(kind)
}

/// The fault injected into a request once it is received, if one is drawn: a connection
/// reset, or a server error.
pub(super) fn injected_fault(shared: &Shared) -> Option<Result<Reply, Reset>> {
    let faults = shared.lock().faults;
    if fastrand::f64() < faults.resets {
        shared.lock().stats.resets += 1;
        return Some(Err(Reset));
    }
    (fastrand::f64() < faults.server_errors).then(|| Ok(server_error(shared, faults)))
}

/// An injected server error: a JSON 500, or, one time in two when asked, the HTML page
/// Telegram's front end answers a 502 with.
pub(super) fn server_error(shared: &Shared, faults: super::Faults) -> Reply {
    shared.lock().stats.server_errors += 1;
    if faults.html && fastrand::bool() {
        let mut reply = Response::new(Full::new(Bytes::from_static(
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        )));
        *reply.status_mut() = StatusCode::BAD_GATEWAY;
        reply
            .headers_mut()
            .insert("content-type", "text/html".parse().expect("ascii"));
        return reply;
    }
    error(500, "Internal Server Error")
}

impl State {
    fn media(&mut self, sha: Sha256) -> &mut super::MediaUploads {
        self.per_media.entry(sha).or_default()
    }
}
