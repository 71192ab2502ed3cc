//! Telegram's rules for a media's format: the name and MIME type of a multipart part, and
//! which kinds may travel by URL in which formats.
//!
//! <https://core.telegram.org/bots/api#sending-files>: "When sending by URL the target file
//! must have the correct MIME type (e.g., audio/mpeg for sendAudio, etc.)"; "5 MB max size
//! for photos and 20 MB max for other types of content"; "In sendDocument, sending by URL
//! will currently only work for GIF, PDF and ZIP files"; "To use sendVoice, the file must have
//! the type audio/ogg and be no more than 1MB in size. 1-20MB voice notes will be sent as
//! files"; "Other configurations may work but we can't guarantee that they will".
//! <https://core.telegram.org/bots/api#sendvideonote>: "Sending video notes by a URL is
//! currently unsupported". <https://core.telegram.org/bots/api#sendsticker>: a static .WEBP
//! by URL; animated and video stickers only by upload or file_id.

use crate::media::MediaKind;
use crate::media::format::Format;

/// The largest voice note Telegram takes by URL as a voice message (1 MB).
const VOICE_URL_LIMIT: u64 = 1000 * 1000;

/// The filename and MIME type of a part carrying `kind` whose bytes start with `head`. An
/// unknown format is named after the kind: Telegram reads an uploaded file's bytes.
pub(crate) fn name(kind: MediaKind, head: &[u8]) -> (String, &'static str) {
    let (mime, ext) = match Format::of(head) {
        Some(format) => (format.mime(kind), format.ext()),
        None => match kind {
            MediaKind::Photo => ("image/jpeg", "jpg"),
            MediaKind::Video | MediaKind::Animation | MediaKind::VideoNote => ("video/mp4", "mp4"),
            MediaKind::Document => ("application/octet-stream", "bin"),
            MediaKind::Audio => ("audio/mpeg", "mp3"),
            MediaKind::Voice => ("audio/ogg", "ogg"),
            MediaKind::Sticker => ("image/webp", "webp"),
        },
    };
    (format!("{kind}.{ext}"), mime)
}

/// Why Telegram would not take `kind` by URL in `format` (`None`: unknown) at `size` bytes,
/// or `None` when it would. An unknown format is never sent by URL: the URL would serve a
/// type Telegram refuses.
pub(crate) fn url_refusal(kind: MediaKind, format: Option<Format>, size: u64) -> Option<String> {
    use Format::*;
    if size > kind.url_limit() {
        return Some(format!(
            "{size} bytes is over the {} bytes Telegram fetches by URL for a {kind}",
            kind.url_limit()
        ));
    }
    let Some(format) = format else {
        return Some(format!("the {kind}'s format is unknown"));
    };
    let ok = match kind {
        MediaKind::VideoNote => return Some("video notes never go by URL".to_owned()),
        MediaKind::Photo => matches!(format, Jpeg | Png | Gif | Webp),
        MediaKind::Video => format == Mp4,
        MediaKind::Animation => matches!(format, Gif | Mp4),
        MediaKind::Document => matches!(format, Pdf | Zip | Gif),
        MediaKind::Audio => matches!(format, Mp3 | Mp4),
        MediaKind::Voice if size > VOICE_URL_LIMIT => {
            return Some(format!(
                "a voice note of {size} bytes would arrive as a document (over 1 MB by URL)"
            ));
        }
        MediaKind::Voice => format == Ogg,
        // Animated (TGS, gzip) and video (WEBM) stickers only by upload.
        MediaKind::Sticker => format == Webp,
    };
    (!ok).then(|| format!("Telegram takes no {kind} by URL as {}", format.mime(kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_magic_then_by_kind() {
        assert_eq!(
            name(MediaKind::Document, b"%PDF-1.7"),
            ("document.pdf".into(), "application/pdf")
        );
        assert_eq!(
            name(MediaKind::Photo, b"\x89PNG\r\n"),
            ("photo.png".into(), "image/png")
        );
        assert_eq!(
            name(MediaKind::Voice, b"??"),
            ("voice.ogg".into(), "audio/ogg")
        );
    }

    #[test]
    fn url_rules_per_kind() {
        let ok = |k, f, s| url_refusal(k, f, s).is_none();
        assert!(!ok(MediaKind::VideoNote, Some(Format::Mp4), 10));
        assert!(ok(MediaKind::Document, Some(Format::Pdf), 10));
        assert!(ok(MediaKind::Document, Some(Format::Zip), 10));
        assert!(ok(MediaKind::Document, Some(Format::Gif), 10));
        assert!(!ok(MediaKind::Document, Some(Format::Mp4), 10));
        assert!(!ok(MediaKind::Document, None, 10));
        assert!(ok(MediaKind::Sticker, Some(Format::Webp), 10));
        assert!(!ok(MediaKind::Sticker, Some(Format::Gzip), 10));
        assert!(!ok(MediaKind::Sticker, Some(Format::Webm), 10));
        assert!(ok(MediaKind::Voice, Some(Format::Ogg), VOICE_URL_LIMIT));
        assert!(!ok(
            MediaKind::Voice,
            Some(Format::Ogg),
            VOICE_URL_LIMIT + 1
        ));
        assert!(!ok(MediaKind::Voice, Some(Format::Mp3), 10));
        assert!(ok(MediaKind::Photo, Some(Format::Jpeg), 5_000_000));
        assert!(!ok(MediaKind::Photo, Some(Format::Jpeg), 5_000_001));
        assert!(!ok(MediaKind::Photo, None, 10));
        assert!(!ok(MediaKind::Photo, Some(Format::Pdf), 10));
        assert!(ok(MediaKind::Video, Some(Format::Mp4), 20_000_000));
        assert!(!ok(MediaKind::Video, Some(Format::Mp4), 20_000_001));
        assert!(ok(MediaKind::Animation, Some(Format::Gif), 10));
        assert!(ok(MediaKind::Audio, Some(Format::Mp3), 10));
    }
}
