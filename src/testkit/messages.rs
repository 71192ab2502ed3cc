//! The messages the fake keeps (their whole JSON, so that they can be forwarded), and their
//! ids as Telegram assigns them.
//!
//! Telegram numbers messages per message box. A supergroup or a channel (the "-100..." ids)
//! has a box of its own, shared by everyone in it: its messages are numbered per chat. Private
//! chats and basic groups live in the box of each account, here the bot's: they share one
//! counter per bot, and two bots in one basic group see the same message under different ids
//! (<https://core.telegram.org/api/updates#message-related-event-sequences>: the `pts` of
//! the common message box, and one per channel; <https://core.telegram.org/bots/api#message>:
//! `message_id` is "unique message identifier inside this chat", which holds either way).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::rules;
use super::server::{Params, State};
use crate::media::MediaKind;

/// The smallest (in absolute value) id of a supergroup or channel: `-100` followed by the
/// twelve digits of the channel's own id.
const SUPERGROUP_IDS: i64 = -1_000_000_000_000;

/// Whether `chat` is a supergroup or a channel, which numbers its own messages.
pub(super) fn is_supergroup(chat: i64) -> bool {
    chat <= SUPERGROUP_IDS
}

/// The `type` of [Chat](https://core.telegram.org/bots/api#chat) for an id: "private" for a
/// user, "group" for a basic group, "supergroup" for a "-100..." id (the fake does not tell
/// channels apart).
pub(super) fn chat_type(chat: i64) -> &'static str {
    if chat > 0 {
        "private"
    } else if is_supergroup(chat) {
        "supergroup"
    } else {
        "group"
    }
}

/// The `chat` object of a message in `chat`.
pub(super) fn chat_json(chat: i64) -> Value {
    match chat_type(chat) {
        "private" => json!({ "id": chat, "type": "private", "first_name": "Fake user" }),
        kind => json!({ "id": chat, "type": kind, "title": "Fake chat" }),
    }
}

/// The bot's [User](https://core.telegram.org/bots/api#user): what `getMe` answers and the
/// `from` of its messages.
pub(super) fn bot_user(bot: &str) -> Value {
    json!({
        "id": bot.parse::<i64>().unwrap_or(0),
        "is_bot": true,
        "first_name": "Fake bot",
        "username": format!("fake_{bot}_bot"),
    })
}

/// Now, in Unix time, as a message's `date`.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A message box: a bot's own (private chats and basic groups) or a supergroup's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MessageBox {
    Bot(String),
    Chat(i64),
}

fn message_box(bot: &str, chat: i64) -> MessageBox {
    if is_supergroup(chat) {
        MessageBox::Chat(chat)
    } else {
        MessageBox::Bot(bot.to_owned())
    }
}

/// The owner of a message as the key holds it: the bot for a bot's box, none for a
/// supergroup's (every bot in it sees the same message under the same id).
fn owner(bot: &str, chat: i64) -> Option<String> {
    (!is_supergroup(chat)).then(|| bot.to_owned())
}

/// Every message not deleted, and the next id of each box.
#[derive(Debug, Default)]
pub(super) struct Messages {
    last_id: HashMap<MessageBox, i64>,
    /// (chat, message_id, owner) -> the message as answered. Ordered, so that a look-up
    /// without the bot answers the same message every time.
    kept: BTreeMap<(i64, i64, Option<String>), Value>,
}

impl Messages {
    /// The id of a new message of `bot` in `chat`: one more than the last of its box.
    pub(super) fn next_id(&mut self, bot: &str, chat: i64) -> i64 {
        let last = self.last_id.entry(message_box(bot, chat)).or_insert(0);
        *last += 1;
        *last
    }

    /// Keeps `message` (its `message_id` taken from [`next_id`](Self::next_id)).
    pub(super) fn keep(&mut self, bot: &str, chat: i64, message: Value) {
        let id = message
            .get("message_id")
            .and_then(Value::as_i64)
            .expect("a message has an id");
        self.kept.insert((chat, id, owner(bot, chat)), message);
    }

    /// The message `id` in `chat` as `bot` sees it.
    pub(super) fn get(&self, bot: &str, chat: i64, id: i64) -> Option<&Value> {
        self.kept.get(&(chat, id, owner(bot, chat)))
    }

    /// Deletes the message `id` in `chat` as `bot` sees it; whether there was one.
    pub(super) fn remove(&mut self, bot: &str, chat: i64, id: i64) -> bool {
        self.kept.remove(&(chat, id, owner(bot, chat))).is_some()
    }

    /// The messages in `chat`, every bot's, by id.
    pub(super) fn in_chat(&self, chat: i64) -> impl Iterator<Item = &Value> {
        self.kept
            .range((chat, i64::MIN, None)..)
            .take_while(move |((c, _, _), _)| *c == chat)
            .map(|(_, m)| m)
    }

    /// The message `id` in `chat`, of whichever bot has one (the lowest bot id first).
    pub(super) fn find(&self, chat: i64, id: i64) -> Option<&Value> {
        self.kept
            .range((chat, id, None)..)
            .next()
            .filter(|((c, i, _), _)| *c == chat && *i == id)
            .map(|(_, m)| m)
    }
}

/// A new message of `bot` in `chat` carrying `body` (its media, caption, ...): numbered as
/// Telegram numbers it ([`Messages`]), dated now, sent by the bot,
/// kept whole (so that it can be forwarded), counted.
pub(super) fn create_message(state: &mut State, bot: &str, chat: i64, body: Value) -> Value {
    let message_id = state.messages.next_id(bot, chat);
    let mut message = json!({
        "message_id": message_id,
        "from": bot_user(bot),
        "date": unix_now(),
        "chat": chat_json(chat),
    });
    if let (Value::Object(m), Value::Object(b)) = (&mut message, body) {
        m.extend(b);
    }
    state.messages.keep(bot, chat, message.clone());
    state.stats.messages += 1;
    message
}

/// A send's caption, checked: `None` when the method takes none (sendSticker,
/// sendVideoNote: ignored) or it is empty; Telegram's description of the refusal when it is
/// over the limit.
pub(super) fn caption(
    caption: Option<&str>,
    kind: MediaKind,
) -> Result<Option<String>, &'static str> {
    match caption {
        Some(c) if rules::takes_caption(kind) && !c.is_empty() => {
            if rules::caption_too_long(c) {
                Err(rules::CAPTION_TOO_LONG)
            } else {
                Ok(Some(c.to_owned()))
            }
        }
        _ => Ok(None),
    }
}

pub(super) fn with_caption(body: &mut Value, caption: Option<String>) {
    if let (Value::Object(b), Some(c)) = (body, caption) {
        b.insert("caption".to_owned(), Value::String(c));
    }
}

/// `protect_content`: "Protects the contents of the sent message from forwarding and
/// saving"; the message carries `has_protected_content`.
pub(super) fn with_protection(body: &mut Value, params: &Params) {
    let protect = params
        .text
        .get("protect_content")
        .is_some_and(|v| v.trim() == "true");
    if let (Value::Object(b), true) = (body, protect) {
        b.insert("has_protected_content".to_owned(), Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_types_by_id() {
        assert_eq!(chat_type(42), "private");
        assert_eq!(chat_type(-4_012_345), "group");
        assert_eq!(chat_type(-999_999_999_999), "group");
        assert_eq!(chat_type(-1_000_000_000_000), "supergroup");
        assert_eq!(chat_type(-1_001_234_567_890), "supergroup");
    }

    #[test]
    fn a_bot_numbers_private_chats_and_groups_together_and_supergroups_apart() {
        let mut m = Messages::default();
        let sg = -1_001_234_567_890;
        assert_eq!(m.next_id("1", 7), 1);
        assert_eq!(m.next_id("1", -5), 2, "a basic group is in the bot's box");
        assert_eq!(m.next_id("1", 8), 3);
        assert_eq!(m.next_id("1", sg), 1, "a supergroup has its own");
        assert_eq!(m.next_id("2", sg), 2, "shared by every bot in it");
        assert_eq!(m.next_id("2", 7), 1, "another bot, another box");
    }
}
