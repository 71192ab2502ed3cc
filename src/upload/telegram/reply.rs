//! Bot API replies: the `{"ok": ...}` envelope, the file a sent message carries, and what an
//! error reply means for the caller.
//!
//! <https://core.telegram.org/bots/api#making-requests>

use std::time::Duration;

use serde::Deserialize;

use crate::media::MediaKind;

/// The envelope of every Bot API reply.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) ok: bool,
    pub(crate) result: Option<T>,
    pub(crate) error_code: Option<u16>,
    pub(crate) description: Option<String>,
    pub(crate) parameters: Option<ResponseParameters>,
}

/// <https://core.telegram.org/bots/api#responseparameters>
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseParameters {
    pub(crate) retry_after: Option<u64>,
    pub(crate) migrate_to_chat_id: Option<i64>,
}

/// The parts of a `Message` we read.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) message_id: i64,
    pub(crate) chat: Chat,
    pub(crate) caption: Option<String>,
    #[serde(default)]
    pub(crate) photo: Vec<PhotoSize>,
    pub(crate) video: Option<File>,
    pub(crate) animation: Option<File>,
    pub(crate) document: Option<File>,
    pub(crate) audio: Option<File>,
    pub(crate) voice: Option<File>,
    pub(crate) video_note: Option<File>,
    pub(crate) sticker: Option<File>,
    /// On a forwarded message: who sent the original, and when.
    pub(crate) forward_origin: Option<Origin>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Chat {
    pub(crate) id: i64,
}

/// <https://core.telegram.org/bots/api#messageorigin>: `type` "user" carries `sender_user`;
/// the other types (a hidden user, a chat, a channel) do not, and are no bot's own message.
#[derive(Debug, Deserialize)]
pub(crate) struct Origin {
    /// When the original was sent, in Unix time.
    pub(crate) date: i64,
    pub(crate) sender_user: Option<User>,
}

/// <https://core.telegram.org/bots/api#user>
#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub(crate) id: i64,
}

/// Any file object: they all carry these two ids.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct File {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: Option<String>,
    pub(crate) file_size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PhotoSize {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: Option<String>,
    #[serde(default)]
    pub(crate) width: u64,
    #[serde(default)]
    pub(crate) height: u64,
    pub(crate) file_size: Option<u64>,
}

impl Message {
    /// The file this message carries as `kind`: the largest photo size for photos, the
    /// `animation` (not the `document` Telegram also fills) for animations.
    pub(crate) fn file(&self, kind: MediaKind) -> Option<File> {
        let one = match kind {
            MediaKind::Photo => {
                // Telegram lists sizes smallest first, but nothing promises it: pick by area,
                // then by bytes.
                return self
                    .photo
                    .iter()
                    .max_by_key(|p| (p.width * p.height, p.file_size.unwrap_or(0)))
                    .map(|p| File {
                        file_id: p.file_id.clone(),
                        file_unique_id: p.file_unique_id.clone(),
                        file_size: p.file_size,
                    });
            }
            MediaKind::Video => &self.video,
            MediaKind::Animation => {
                return self.animation.clone().or_else(|| self.document.clone());
            }
            MediaKind::Document => &self.document,
            MediaKind::Audio => &self.audio,
            MediaKind::Voice => &self.voice,
            MediaKind::VideoNote => &self.video_note,
            MediaKind::Sticker => &self.sticker,
        };
        one.clone()
    }
}

/// A failed Bot API call, before it becomes a [`crate::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// HTTP 429, or a 400 whose description says "retry after N" (albums).
    RateLimited {
        retry_after: Duration,
        description: String,
    },
    /// Telegram could not use the URL we gave: fall back to uploading the bytes.
    UrlRefused { description: String },
    /// The file_id was not accepted.
    WrongFileId { description: String },
    /// A problem with the chat itself (missing, bot removed, no rights): try another chat.
    ChatUnusable { code: u16, description: String },
    /// The group became a supergroup with another id: the old id never works again.
    ChatMigrated { to: i64, description: String },
    /// 401: the token is wrong or revoked.
    Unauthorized { description: String },
    /// 413: the body is too large for the server.
    TooLarge { description: String },
    /// Another 4xx: the request itself is wrong.
    Rejected { code: u16, description: String },
    /// 5xx, an unreadable reply, or a network error: try again later.
    Unavailable { description: String },
}

impl ApiError {
    /// Classifies an error reply. `header_retry_after` is the `Retry-After` header's value.
    pub(crate) fn classify(
        status: u16,
        body: &[u8],
        header_retry_after: Option<Duration>,
    ) -> ApiError {
        let envelope = serde_json::from_slice::<Envelope<serde_json::Value>>(body).ok();
        let Some(envelope) = envelope else {
            // Telegram's front end answers some 502/504 with an HTML page.
            let description = format!("HTTP {status} with a non-JSON body ({})", snippet(body));
            return match status {
                429 => ApiError::RateLimited {
                    retry_after: header_retry_after.unwrap_or(Duration::from_secs(1)),
                    description,
                },
                401 => ApiError::Unauthorized { description },
                413 => ApiError::TooLarge { description },
                400..=499 => ApiError::Rejected {
                    code: status,
                    description,
                },
                _ => ApiError::Unavailable { description },
            };
        };
        let code = envelope.error_code.unwrap_or(status);
        let description = envelope
            .description
            .unwrap_or_else(|| format!("HTTP {status} with no description"));
        let retry_after = envelope
            .parameters
            .as_ref()
            .and_then(|p| p.retry_after)
            .map(Duration::from_secs)
            .or(header_retry_after)
            .or_else(|| retry_after_in_text(&description));
        let lower = description.to_ascii_lowercase();
        if code == 429 || (code == 400 && retry_after.is_some()) {
            return ApiError::RateLimited {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
                description,
            };
        }
        if let Some(to) = envelope.parameters.and_then(|p| p.migrate_to_chat_id) {
            return ApiError::ChatMigrated {
                to,
                description: format!("{description} (the group moved to chat {to})"),
            };
        }
        let meaning = DESCRIPTIONS
            .iter()
            .find(|(text, _)| lower.contains(text))
            .map(|(_, m)| *m);
        match (code, meaning) {
            (401, _) => ApiError::Unauthorized { description },
            (413, _) => ApiError::TooLarge { description },
            (500..=599, _) => ApiError::Unavailable { description },
            // Any 403 is about the chat or the bot's place in it.
            (400 | 403, Some(Meaning::Chat)) | (403, _) => {
                ApiError::ChatUnusable { code, description }
            }
            (400, Some(Meaning::Url)) => ApiError::UrlRefused { description },
            (400, Some(Meaning::FileId)) => ApiError::WrongFileId { description },
            _ if (400..500).contains(&code) => ApiError::Rejected { code, description },
            _ => ApiError::Unavailable { description },
        }
    }

    /// Telegram's description.
    pub(crate) fn description(&self) -> &str {
        match self {
            ApiError::RateLimited { description, .. }
            | ApiError::UrlRefused { description }
            | ApiError::WrongFileId { description }
            | ApiError::ChatUnusable { description, .. }
            | ApiError::ChatMigrated { description, .. }
            | ApiError::Unauthorized { description }
            | ApiError::TooLarge { description }
            | ApiError::Rejected { description, .. }
            | ApiError::Unavailable { description } => description,
        }
    }
}

/// What an error description means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// The chat cannot take the send: another chat can.
    Chat,
    /// Telegram could not use the URL: upload the bytes instead.
    Url,
    /// The file_id is not (or no longer) usable.
    FileId,
}

/// Telegram's error descriptions that change what we do, as lowercase fragments (Telegram's
/// capitalisation varies between versions), the first match winning. Each full text is the
/// one Telegram sends, and the comment says where it is recorded: the Bot API server's own
/// rewriting of MTProto errors (tdlib/telegram-bot-api, `Client::fail_query_with_error`),
/// the error tables of teloxide (`teloxide-core/src/errors.rs`) and telebot (`errors.go`),
/// and bot authors' reports. Any other 4xx is refused as is, 5xx retried.
const DESCRIPTIONS: &[(&str, Meaning)] = &[
    // 400 "Bad Request: chat not found" (teloxide ChatNotFound).
    ("chat not found", Meaning::Chat),
    // 403 "Forbidden: bot was kicked from the group chat", "... from the supergroup chat",
    // "... from the channel chat" (teloxide BotKicked, BotKickedFromSupergroup; telebot).
    ("bot was kicked", Meaning::Chat),
    // 403 "Forbidden: bot was blocked by the user" (teloxide BotBlocked).
    ("bot was blocked", Meaning::Chat),
    // 403 "Forbidden: bot is not a member of the channel chat", "... of the supergroup chat"
    // (teloxide BotKickedFromChannel-like reports; telebot).
    ("bot is not a member", Meaning::Chat),
    // 400 "Bad Request: need administrator rights in the channel chat" (teloxide issue #450:
    // a bot in a channel without the "Post messages" right).
    ("need administrator rights", Meaning::Chat),
    // 400 "Bad Request: not enough rights to send photos to the chat" (and "... text
    // messages", "... videos", "... documents": teloxide NotEnoughRightsToPostMessages).
    ("not enough rights", Meaning::Chat),
    // 400 "Bad Request: have no rights to send a message" (teloxide).
    ("have no rights", Meaning::Chat),
    // "Forbidden: CHAT_WRITE_FORBIDDEN", "Bad Request: CHAT_ADMIN_REQUIRED" (MTProto names
    // passed through by the Bot API server, `Client::fail_query_with_error`, as 403 or 400
    // depending on the server's version: matched by text, whatever the status).
    ("chat_write_forbidden", Meaning::Chat),
    ("chat_admin_required", Meaning::Chat),
    // 400 "Bad Request: group chat was upgraded to a supergroup chat" (teloxide
    // GroupChatUpgraded; the reply also carries `migrate_to_chat_id`).
    ("group chat was upgraded", Meaning::Chat),
    // 403 "Forbidden: user is deactivated" (teloxide UserDeactivated).
    ("user is deactivated", Meaning::Chat),
    // 403 "Forbidden: bot can't initiate conversation with a user" (teloxide).
    ("can't initiate conversation", Meaning::Chat),
    // 400 "Bad Request: PEER_ID_INVALID".
    ("peer_id_invalid", Meaning::Chat),
    // 400 "Bad Request: failed to get HTTP URL content" (telegram-bot-api's text for
    // WEBPAGE_CURL_FAILED: unreachable, non-2xx, too large, timed out).
    ("failed to get http url content", Meaning::Url),
    // 400 "Bad Request: wrong type of the web page content" (WEBPAGE_MEDIA_EMPTY: served
    // with a type the method does not take).
    ("wrong type of the web page content", Meaning::Url),
    // 400 "Bad Request: can't upload file by URL" (telegram-bot-api's text for TDLib's "File
    // generation failed": the content was fetched but no file could be made of it).
    ("can't upload file by url", Meaning::Url),
    // 400 "Bad Request: wrong HTTP URL specified" (EXTERNAL_URL_INVALID).
    ("wrong http url", Meaning::Url),
    // 400 "Bad Request: wrong file identifier/HTTP URL specified" (MEDIA_EMPTY): a file_id
    // Telegram does not know, or a URL it cannot use for this method; the caller knows which
    // it sent.
    ("wrong file identifier", Meaning::FileId),
    // 400 "Bad Request: wrong remote file identifier specified: ..." (teloxide
    // WrongFileIdOrUrl kin; telebot ErrWrongRemoteFileID).
    ("wrong remote file id", Meaning::FileId),
    // 400 "Bad Request: FILE_REFERENCE_EXPIRED" and kin (FILE_REFERENCE_INVALID, ...): the
    // MTProto names, passed through with their underscores.
    ("file_reference_", Meaning::FileId),
];

/// "Too Many Requests: retry after 17" gives 17 s.
pub(crate) fn retry_after_in_text(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("retry after")? + "retry after".len();
    let digits: String = lower[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().map(Duration::from_secs)
}

/// The start of a body, printable, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > 120 {
        format!("{}...", text.trim())
    } else {
        text.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> ApiError {
        ApiError::classify(status, body.as_bytes(), None)
    }

    #[test]
    fn retry_after_from_parameters_header_or_text() {
        let e = classify(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        );
        assert!(
            matches!(e, ApiError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(7))
        );
        let e = ApiError::classify(
            429,
            br#"{"ok":false,"error_code":429,"description":"Too Many Requests"}"#,
            Some(Duration::from_secs(4)),
        );
        assert!(
            matches!(e, ApiError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(4))
        );
        // An album's flood error comes back as a 400.
        let e = classify(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: Too Many Requests: retry after 12"}"#,
        );
        assert!(
            matches!(e, ApiError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(12))
        );
    }

    #[test]
    fn classifies_the_usual_errors() {
        let bad = |d: &str| format!(r#"{{"ok":false,"error_code":400,"description":"{d}"}}"#);
        assert!(matches!(
            classify(400, &bad("Bad Request: chat not found")),
            ApiError::ChatUnusable { .. }
        ));
        assert!(matches!(
            classify(400, &bad("Bad Request: failed to get HTTP URL content")),
            ApiError::UrlRefused { .. }
        ));
        assert!(matches!(
            classify(400, &bad("Bad Request: wrong type of the web page content")),
            ApiError::UrlRefused { .. }
        ));
        assert!(matches!(
            classify(
                400,
                &bad("Bad Request: wrong file identifier/HTTP URL specified")
            ),
            ApiError::WrongFileId { .. }
        ));
        assert!(matches!(
            classify(400, &bad("Bad Request: message text is empty")),
            ApiError::Rejected { code: 400, .. }
        ));
        assert!(matches!(
            classify(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            ApiError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the group chat"}"#
            ),
            ApiError::ChatUnusable { code: 403, .. }
        ));
        assert!(matches!(
            classify(413, "Request Entity Too Large"),
            ApiError::TooLarge { .. }
        ));
        let html = classify(
            502,
            "<html><head><title>502 Bad Gateway</title></head></html>",
        );
        assert!(
            matches!(&html, ApiError::Unavailable { description } if description.contains("502"))
        );
    }

    #[test]
    fn keeps_the_largest_photo_and_the_animation() {
        let m: Message = serde_json::from_str(
            r#"{"message_id":1,"chat":{"id":-5},
                "photo":[{"file_id":"s","file_unique_id":"us","width":90,"height":60},
                         {"file_id":"l","file_unique_id":"ul","width":1280,"height":853},
                         {"file_id":"m","file_unique_id":"um","width":320,"height":213}],
                "animation":{"file_id":"a","file_unique_id":"ua"},
                "document":{"file_id":"d","file_unique_id":"ud"}}"#,
        )
        .unwrap();
        assert_eq!(m.file(MediaKind::Photo).unwrap().file_id, "l");
        assert_eq!(m.file(MediaKind::Animation).unwrap().file_id, "a");
        assert_eq!(m.file(MediaKind::Document).unwrap().file_id, "d");
        assert!(m.file(MediaKind::Video).is_none());
    }
}
