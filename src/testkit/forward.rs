//! `forwardMessage` (<https://core.telegram.org/bots/api#forwardmessage>): "Use this method
//! to forward messages of any kind. Service messages and messages with protected content
//! can't be forwarded. On success, the sent Message is returned."
//!
//! A forward makes a new message in `chat_id`, so it keeps to everything a send to `chat_id`
//! keeps to: the chat must exist and take the bot's messages ([`ChatProblem`]), and the
//! message is counted against the bot's and the chat's rate limits, a 429 inside a ban. It
//! moves no bytes: it is no upload, and counts in no upload figure.
//!
//! [`ChatProblem`]: super::ChatProblem

use serde_json::{Map, Value, json};

use super::limits::Admit;
use super::messages::{bot_user, create_message, with_protection};
use super::send::{admit, chat_problem, injected_fault, too_many_requests};
use super::server::{Params, Reply, Reset, Shared, error, ok};
use crate::media::MediaKind;

/// The fields of a Message that are its content, carried over by a forward: the media (the
/// same file_ids: a forward sends the same file), the caption. Not its id, date, chat,
/// sender, album or protection, which are the new message's own.
const CONTENT: &[&str] = &[
    "photo",
    "video",
    "animation",
    "document",
    "audio",
    "voice",
    "video_note",
    "sticker",
    "caption",
    "caption_entities",
    "text",
    "entities",
];

/// `forwardMessage`.
///
/// A forward refused because its message does not exist (never created in `from_chat_id`,
/// or deleted) is answered 400 "Bad Request: message to forward not found", creates
/// nothing, and is **not** counted against the flood limits, inside a ban or not: the Bot
/// API server's TDLib looks the message up in its own store before it asks Telegram's
/// servers for anything (`forwardMessages` fails locally with "Message to forward not
/// found"), and the flood limits are the servers'. The same holds for protected content
/// ("message can't be forwarded"), a missing chat and a chat that refuses the bot.
pub(super) fn forward(shared: &Shared, bot: &str, params: &Params) -> Result<Reply, Reset> {
    let number = |name: &str| params.text.get(name).map(|v| v.trim().parse::<i64>());
    let chat = match number("chat_id") {
        None => return Ok(error(400, "Bad Request: chat_id is empty")),
        Some(Err(_)) => return Ok(error(400, "Bad Request: chat not found")),
        Some(Ok(chat)) => chat,
    };
    let from_chat = match number("from_chat_id") {
        None => return Ok(error(400, "Bad Request: from_chat_id is empty")),
        Some(Err(_)) => return Ok(error(400, "Bad Request: chat not found")),
        Some(Ok(chat)) => chat,
    };
    let Some(Ok(message_id)) = number("message_id") else {
        return Ok(error(
            400,
            "Bad Request: message identifier is not specified",
        ));
    };
    if !shared.chats.contains(&chat) || !shared.chats.contains(&from_chat) {
        return Ok(error(400, "Bad Request: chat not found"));
    }
    let Some(source) = shared
        .lock()
        .messages
        .get(bot, from_chat, message_id)
        .cloned()
    else {
        return Ok(error(400, "Bad Request: message to forward not found"));
    };
    if source.get("has_protected_content") == Some(&Value::Bool(true)) {
        return Ok(error(400, "Bad Request: message can't be forwarded"));
    }
    if let Some((code, description)) = chat_problem(shared, chat, Some(kind_of(&source))) {
        return Ok(error(code, description));
    }
    if let Admit::Limited(secs, violation) = admit(shared, bot, chat, 1) {
        return Ok(too_many_requests(secs, violation));
    }

    // Faults hit once the request is received, as for a send.
    if let Some(fault) = injected_fault(shared) {
        return fault;
    }

    let mut body = Map::new();
    for field in CONTENT {
        if let Some(v) = source.get(*field) {
            body.insert((*field).to_owned(), v.clone());
        }
    }
    // A forward of a forward names the first origin, as Telegram's clients show it.
    let origin = source
        .get("forward_origin")
        .cloned()
        .unwrap_or_else(|| origin_of(bot, &source));
    body.insert("forward_origin".to_owned(), origin);
    let mut body = Value::Object(body);
    with_protection(&mut body, params);
    let mut state = shared.lock();
    let message = create_message(&mut state, bot, chat, body);
    state.stats.forwards += 1;
    Ok(ok(message))
}

/// The [MessageOrigin](https://core.telegram.org/bots/api#messageorigin) of a message the
/// bot sent. Every message the fake keeps was sent by the bot under its own name (it has
/// `from`; the fake makes no anonymous-admin or channel posts), so its origin is
/// MessageOriginUser, "the message was originally sent by a known user": `type` "user",
/// `date` the original's, `sender_user` the bot. A post in a channel would give
/// MessageOriginChannel (`chat`, `message_id`) instead; the fake keeps no channels apart
/// from supergroups, where a bot's message is the bot's.
fn origin_of(bot: &str, source: &Value) -> Value {
    json!({
        "type": "user",
        "date": source.get("date").cloned().unwrap_or(Value::from(0)),
        "sender_user": source.get("from").cloned().unwrap_or_else(|| bot_user(bot)),
    })
}

/// The media kind a kept message carries, for the chat rules that depend on it (a group
/// without photo rights refuses a forwarded photo as it refuses a sent one).
fn kind_of(message: &Value) -> MediaKind {
    // "animation" before "document": an animation fills both.
    [
        ("photo", MediaKind::Photo),
        ("video", MediaKind::Video),
        ("animation", MediaKind::Animation),
        ("audio", MediaKind::Audio),
        ("voice", MediaKind::Voice),
        ("video_note", MediaKind::VideoNote),
        ("sticker", MediaKind::Sticker),
    ]
    .into_iter()
    .find(|(field, _)| message.get(*field).is_some())
    .map_or(MediaKind::Document, |(_, kind)| kind)
}
