//! A media's kind from its first bytes, then its file name.

use std::path::Path;

use crate::media::MediaKind;

/// Bytes of a file's start that [`detect_kind`] looks at.
pub const HEAD_LEN: usize = 64;

/// The kind of a media from its first bytes (up to [`HEAD_LEN`]: JPEG, PNG, GIF, WEBP, MP4,
/// Matroska, OGG, MP3, FLAC, PDF, ZIP), then its extension; a document when neither tells.
///
/// ```
/// use std::path::Path;
/// use prewarm::MediaKind;
/// use prewarm::bulk::detect_kind;
///
/// assert_eq!(detect_kind(b"\xFF\xD8\xFF\xE0", Path::new("a.bin")), MediaKind::Photo);
/// assert_eq!(detect_kind(b"", Path::new("clip.MP4")), MediaKind::Video);
/// assert_eq!(detect_kind(b"hello", Path::new("notes.txt")), MediaKind::Document);
/// ```
pub fn detect_kind(head: &[u8], path: &Path) -> MediaKind {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let brand = head.get(8..12).unwrap_or_default();
    if starts(b"\xFF\xD8\xFF") || starts(b"\x89PNG\r\n\x1a\n") {
        return MediaKind::Photo;
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return MediaKind::Animation;
    }
    if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return MediaKind::Sticker;
    }
    if head.get(4..8) == Some(b"ftyp") {
        return if brand == b"M4A " {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
    }
    if starts(b"\x1A\x45\xDF\xA3") {
        return MediaKind::Video;
    }
    if starts(b"OggS") {
        return MediaKind::Voice;
    }
    if starts(b"ID3") || starts(b"fLaC") || starts(b"\xFF\xFB") || starts(b"\xFF\xF3") {
        return MediaKind::Audio;
    }
    if starts(b"%PDF") || starts(b"PK\x03\x04") {
        return MediaKind::Document;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" => MediaKind::Photo,
        "gif" => MediaKind::Animation,
        "mp4" | "mov" | "mkv" | "webm" => MediaKind::Video,
        "mp3" | "m4a" | "flac" | "wav" => MediaKind::Audio,
        "ogg" | "oga" | "opus" => MediaKind::Voice,
        "webp" | "tgs" => MediaKind::Sticker,
        _ => MediaKind::Document,
    }
}
