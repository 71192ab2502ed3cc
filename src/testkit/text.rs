//! `sendMessage` (<https://core.telegram.org/bots/api#sendmessage>): "Use this method to send
//! text messages. On success, the sent Message is returned." `text`: "Text of the message to
//! be sent, 1-4096 characters after entities parsing" (the fake parses no entities, and
//! counts characters as Telegram does, in UTF-16 code units).
//!
//! A text message is a message like any other: the chat must exist and take the bot's
//! messages ([`ChatProblem`]), and it counts against the bot's and the chat's rate limits, a
//! 429 inside a ban. It moves no bytes.
//!
//! [`ChatProblem`]: super::ChatProblem

use serde_json::json;

use super::limits::Admit;
use super::messages::{create_message, with_protection};
use super::send::{admit, chat_problem, injected_fault, too_many_requests};
use super::server::{Params, Reply, Reset, Shared, error, ok};

/// The longest text Telegram takes, in UTF-16 code units.
const MAX_TEXT: usize = 4096;

/// `sendMessage`.
pub(super) fn send_text(shared: &Shared, bot: &str, params: &Params) -> Result<Reply, Reset> {
    let chat = match params.text.get("chat_id").map(|v| v.trim().parse::<i64>()) {
        None => return Ok(error(400, "Bad Request: chat_id is empty")),
        Some(Err(_)) => return Ok(error(400, "Bad Request: chat not found")),
        Some(Ok(chat)) => chat,
    };
    let text = params.text.get("text").map(String::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Ok(error(400, "Bad Request: message text is empty"));
    }
    if text.encode_utf16().count() > MAX_TEXT {
        return Ok(error(400, "Bad Request: message is too long"));
    }
    if !shared.chats.contains(&chat) {
        return Ok(error(400, "Bad Request: chat not found"));
    }
    if let Some((code, description)) = chat_problem(shared, chat, None) {
        return Ok(error(code, description));
    }
    if let Admit::Limited(secs, violation) = admit(shared, bot, chat, 1) {
        return Ok(too_many_requests(secs, violation));
    }

    // Faults hit once the request is received, as for a send.
    if let Some(fault) = injected_fault(shared) {
        return fault;
    }

    let mut body = json!({ "text": text });
    with_protection(&mut body, params);
    let mut state = shared.lock();
    let message = create_message(&mut state, bot, chat, body);
    state.stats.texts += 1;
    Ok(ok(message))
}
