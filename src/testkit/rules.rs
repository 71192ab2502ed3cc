//! The Bot API's numbers and rules as the fake applies them, each from Telegram's
//! documentation (<https://core.telegram.org/bots/api#sending-files> unless noted), kept
//! apart from the client's own copies so that a mistake in one is caught by the other.

use crate::media::MediaKind;

/// A megabyte in "10 MB max size for photos, 50 MB for other files": the documentation does
/// not say which; the fake takes the stricter, decimal reading, so that what passes here
/// passes at Telegram.
const MB: u64 = 1000 * 1000;

/// The largest upload Telegram takes for `kind` by multipart.
pub(super) fn upload_limit(kind: MediaKind) -> u64 {
    match kind {
        MediaKind::Photo => 10 * MB,
        _ => 50 * MB,
    }
}

/// "5 MB max size for photos and 20 MB max for other types of content" by URL.
pub(super) fn url_limit(kind: MediaKind) -> u64 {
    match kind {
        MediaKind::Photo => 5 * MB,
        _ => 20 * MB,
    }
}

/// sendVoice by URL: "the file must have the type audio/ogg and be no more than 1MB in size.
/// 1-20MB voice notes will be sent as files."
pub(super) const VOICE_URL_LIMIT: u64 = MB;

/// What Telegram does with a URL whose content it fetched.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UrlVerdict {
    /// Sent as the kind asked for.
    Take,
    /// Sent, but as a document (a voice note over 1 MB).
    AsDocument,
    /// Refused with this description.
    Refuse(&'static str),
}

/// "Bad Request: wrong type of the web page content": the served type is not one the method
/// takes (the Bot API server's text for WEBPAGE_MEDIA_EMPTY).
pub(super) const WRONG_TYPE: &str = "Bad Request: wrong type of the web page content";
/// "Bad Request: failed to get HTTP URL content" (WEBPAGE_CURL_FAILED): unreachable, not a
/// 2xx, too large, empty.
pub(super) const FETCH_FAILED: &str = "Bad Request: failed to get HTTP URL content";
/// "Bad Request: can't upload file by URL": the Bot API server's text for TDLib's "File
/// generation failed" (tdlib/telegram-bot-api `Client.cpp`), content fetched but unusable.
pub(super) const CANT_UPLOAD_BY_URL: &str = "Bad Request: can't upload file by URL";
/// The answer to a file_id Telegram does not know, or a URL the method cannot use
/// (MEDIA_EMPTY).
pub(super) const WRONG_FILE_ID: &str = "Bad Request: wrong file identifier/HTTP URL specified";

/// The served MIME types each method takes by URL ("When sending by URL the target file must
/// have the correct MIME type (e.g., audio/mpeg for sendAudio, etc.)"):
/// - sendPhoto: an image Telegram recompresses (JPEG, PNG, WEBP, GIF);
/// - sendVideo: "Telegram clients support MPEG4 videos";
/// - sendAnimation: "GIF or H.264/MPEG-4 AVC video without sound";
/// - sendDocument: "sending by URL will currently only work for GIF, PDF and ZIP files";
/// - sendAudio: "must be in the .MP3 or .M4A format";
/// - sendVoice: "audio/ogg";
/// - sendVideoNote: "Sending video notes by a URL is currently unsupported";
/// - sendSticker: "a .WEBP sticker from the Internet"; animated and video stickers "can't be
///   sent via an HTTP URL".
fn url_types(kind: MediaKind) -> &'static [&'static str] {
    match kind {
        MediaKind::Photo => &["image/jpeg", "image/png", "image/webp", "image/gif"],
        MediaKind::Video => &["video/mp4"],
        MediaKind::Animation => &["image/gif", "video/mp4"],
        MediaKind::Document => &["application/pdf", "application/zip", "image/gif"],
        MediaKind::Audio => &["audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a"],
        MediaKind::Voice => &["audio/ogg"],
        MediaKind::VideoNote => &[],
        MediaKind::Sticker => &["image/webp"],
    }
}

/// Telegram's verdict on `len` bytes served with `content_type` for `kind`.
pub(super) fn judge_url(kind: MediaKind, content_type: &str, len: u64) -> UrlVerdict {
    if kind == MediaKind::VideoNote {
        return UrlVerdict::Refuse(WRONG_FILE_ID);
    }
    if len == 0 || len > url_limit(kind) {
        return UrlVerdict::Refuse(FETCH_FAILED);
    }
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !url_types(kind).contains(&essence.as_str()) {
        return UrlVerdict::Refuse(WRONG_TYPE);
    }
    if kind == MediaKind::Voice && len > VOICE_URL_LIMIT {
        return UrlVerdict::AsDocument;
    }
    UrlVerdict::Take
}

/// "Caption, 0-1024 characters after entities parsing" (sendPhoto ... sendVoice, and
/// InputMedia's `caption`). The fake parses no entities and counts the caption as sent, in
/// UTF-16 code units (the unit of the Bot API's entity offsets; an emoji outside the BMP
/// counts two), the stricter reading: what passes here passes at Telegram.
pub(super) const CAPTION_LIMIT: usize = 1024;

/// The answer to a caption over [`CAPTION_LIMIT`].
pub(super) const CAPTION_TOO_LONG: &str = "Bad Request: message caption is too long";

/// Whether Telegram refuses `caption` as too long.
pub(super) fn caption_too_long(caption: &str) -> bool {
    caption.encode_utf16().count() > CAPTION_LIMIT
}

/// Whether the method for `kind` takes a `caption`: sendSticker and sendVideoNote have none,
/// and ignore one as Telegram ignores any parameter a method does not know.
pub(super) fn takes_caption(kind: MediaKind) -> bool {
    !matches!(kind, MediaKind::Sticker | MediaKind::VideoNote)
}

/// Why a chat refuses the bot's sends, as Telegram answers each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatProblem {
    /// A channel where the bot is no administrator allowed to post: 400 "Bad Request: need
    /// administrator rights in the channel chat".
    NotAdministrator,
    /// A channel the bot is not in: 403 "Forbidden: bot is not a member of the channel chat".
    NotMember,
    /// A group the bot was removed from: 403 "Forbidden: bot was kicked from the group chat".
    Kicked,
    /// A group where members (the bot too) may not send photos: 400 "Bad Request: not enough
    /// rights to send photos to the chat" (photos only; other kinds go through).
    NoPhotoRights,
}

impl ChatProblem {
    /// The status and description Telegram answers a send of `kind` with, if this problem
    /// stops it.
    pub(super) fn answer(self, kind: Option<MediaKind>) -> Option<(u16, &'static str)> {
        Some(match self {
            ChatProblem::NotAdministrator => (
                400,
                "Bad Request: need administrator rights in the channel chat",
            ),
            ChatProblem::NotMember => (403, "Forbidden: bot is not a member of the channel chat"),
            ChatProblem::Kicked => (403, "Forbidden: bot was kicked from the group chat"),
            ChatProblem::NoPhotoRights if kind == Some(MediaKind::Photo) || kind.is_none() => (
                400,
                "Bad Request: not enough rights to send photos to the chat",
            ),
            ChatProblem::NoPhotoRights => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_count_utf16_units_up_to_1024() {
        assert!(!caption_too_long(&"a".repeat(1024)));
        assert!(caption_too_long(&"a".repeat(1025)));
        assert!(!caption_too_long(&"é".repeat(1024)), "one unit each");
        assert!(caption_too_long(&"🙂".repeat(513)), "two units each");
    }

    #[test]
    fn url_rules_per_kind() {
        use UrlVerdict::*;
        assert_eq!(judge_url(MediaKind::Photo, "image/jpeg", 10), Take);
        assert_eq!(
            judge_url(MediaKind::Photo, "application/octet-stream", 10),
            Refuse(WRONG_TYPE)
        );
        assert_eq!(
            judge_url(MediaKind::Photo, "image/jpeg", 5 * MB + 1),
            Refuse(FETCH_FAILED)
        );
        assert_eq!(judge_url(MediaKind::Document, "application/pdf", 10), Take);
        assert_eq!(
            judge_url(MediaKind::Document, "video/mp4", 10),
            Refuse(WRONG_TYPE)
        );
        assert_eq!(judge_url(MediaKind::Voice, "audio/ogg", MB), Take);
        assert_eq!(judge_url(MediaKind::Voice, "audio/ogg", MB + 1), AsDocument);
        assert_eq!(
            judge_url(MediaKind::Voice, "audio/mpeg", 10),
            Refuse(WRONG_TYPE)
        );
        assert_eq!(
            judge_url(MediaKind::VideoNote, "video/mp4", 10),
            Refuse(WRONG_FILE_ID)
        );
        assert_eq!(
            judge_url(MediaKind::Sticker, "application/x-tgsticker", 10),
            Refuse(WRONG_TYPE)
        );
        assert_eq!(
            judge_url(MediaKind::Sticker, "video/webm", 10),
            Refuse(WRONG_TYPE)
        );
        assert_eq!(
            judge_url(MediaKind::Video, "Video/MP4; codecs=avc1", 10),
            Take
        );
    }
}
