//! Naming a media for a multipart part, from its first bytes: Telegram goes by the filename
//! and MIME type, and some kinds may travel by URL only in some formats.

use crate::media::MediaKind;

/// A file format recognised from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Pdf,
    Zip,
    Mp4,
    Webm,
    Ogg,
    Mp3,
    /// gzip: an animated sticker (TGS) is gzipped Lottie JSON.
    Gzip,
}

impl Format {
    pub(crate) fn of(head: &[u8]) -> Option<Format> {
        let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
        Some(if at(0, &[0xff, 0xd8, 0xff]) {
            Format::Jpeg
        } else if at(0, b"\x89PNG") {
            Format::Png
        } else if at(0, b"GIF8") {
            Format::Gif
        } else if at(0, b"RIFF") && at(8, b"WEBP") {
            Format::Webp
        } else if at(0, b"%PDF") {
            Format::Pdf
        } else if at(0, b"PK\x03\x04") {
            Format::Zip
        } else if at(4, b"ftyp") {
            Format::Mp4
        } else if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
            Format::Webm
        } else if at(0, b"OggS") {
            Format::Ogg
        } else if at(0, b"ID3") || at(0, &[0xff, 0xfb]) || at(0, &[0xff, 0xf3]) {
            Format::Mp3
        } else if at(0, &[0x1f, 0x8b]) {
            Format::Gzip
        } else {
            return None;
        })
    }

    fn mime_and_ext(self) -> (&'static str, &'static str) {
        match self {
            Format::Jpeg => ("image/jpeg", "jpg"),
            Format::Png => ("image/png", "png"),
            Format::Gif => ("image/gif", "gif"),
            Format::Webp => ("image/webp", "webp"),
            Format::Pdf => ("application/pdf", "pdf"),
            Format::Zip => ("application/zip", "zip"),
            Format::Mp4 => ("video/mp4", "mp4"),
            Format::Webm => ("video/webm", "webm"),
            Format::Ogg => ("audio/ogg", "ogg"),
            Format::Mp3 => ("audio/mpeg", "mp3"),
            Format::Gzip => ("application/x-tgsticker", "tgs"),
        }
    }
}

/// The filename and MIME type of a part carrying `kind` whose bytes start with `head`.
pub(crate) fn name(kind: MediaKind, head: &[u8]) -> (String, &'static str) {
    let (mime, ext) = match Format::of(head) {
        Some(format) => format.mime_and_ext(),
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

/// Whether Telegram takes `kind` by URL, given what the bytes look like (`None`: unknown).
/// Never video notes; documents only as PDF, ZIP or GIF; stickers only as static WEBP.
/// <https://core.telegram.org/bots/api#sending-files>
pub(crate) fn url_allowed(kind: MediaKind, format: Option<Format>) -> bool {
    match kind {
        MediaKind::VideoNote => false,
        MediaKind::Document => matches!(format, Some(Format::Pdf | Format::Zip | Format::Gif)),
        MediaKind::Sticker => format == Some(Format::Webp),
        _ => true,
    }
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
        assert_eq!(Format::of(b"\0\0\0\x18ftypmp42"), Some(Format::Mp4));
    }

    #[test]
    fn url_rules() {
        assert!(!url_allowed(MediaKind::VideoNote, Some(Format::Mp4)));
        assert!(url_allowed(MediaKind::Document, Some(Format::Pdf)));
        assert!(!url_allowed(MediaKind::Document, Some(Format::Mp4)));
        assert!(!url_allowed(MediaKind::Document, None));
        assert!(!url_allowed(MediaKind::Sticker, Some(Format::Gzip)));
        assert!(url_allowed(MediaKind::Photo, None));
    }
}
