//! A media's file format, recognised from its first bytes, and the MIME type it is served
//! with.
//!
//! It sits with the domain types because three layers need it: the engine names an object's
//! content type at save, stores send it (R2 serves it on presigned and public URLs, which
//! Telegram checks: "When sending by URL the target file must have the correct MIME type",
//! <https://core.telegram.org/bots/api#sending-files>), and the uploader applies Telegram's
//! per-kind URL rules to it.

use super::MediaKind;

/// A file format recognised from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Pdf,
    Zip,
    /// ISO base media (`ftyp`): MP4, M4A, MOV.
    Mp4,
    Webm,
    Ogg,
    Mp3,
    /// gzip: an animated sticker (TGS) is gzipped Lottie JSON.
    Gzip,
}

impl Format {
    /// The format whose signature `head` starts with, if any.
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

    /// The format a MIME type names (parameters and case ignored), if it is one we know.
    pub(crate) fn of_mime(mime: &str) -> Option<Format> {
        let essence = mime.split(';').next().unwrap_or("").trim();
        let known = [
            ("image/jpeg", Format::Jpeg),
            ("image/png", Format::Png),
            ("image/gif", Format::Gif),
            ("image/webp", Format::Webp),
            ("application/pdf", Format::Pdf),
            ("application/zip", Format::Zip),
            ("video/mp4", Format::Mp4),
            ("audio/mp4", Format::Mp4),
            ("video/webm", Format::Webm),
            ("audio/ogg", Format::Ogg),
            ("audio/mpeg", Format::Mp3),
            ("application/x-tgsticker", Format::Gzip),
        ];
        known
            .iter()
            .find(|(m, _)| essence.eq_ignore_ascii_case(m))
            .map(|(_, f)| *f)
    }

    /// The MIME type of this format when it carries `kind` (an MP4 container holding a voice
    /// or audio file is `audio/mp4`).
    pub(crate) fn mime(self, kind: MediaKind) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Pdf => "application/pdf",
            Format::Zip => "application/zip",
            Format::Mp4 if matches!(kind, MediaKind::Audio | MediaKind::Voice) => "audio/mp4",
            Format::Mp4 => "video/mp4",
            Format::Webm => "video/webm",
            Format::Ogg => "audio/ogg",
            Format::Mp3 => "audio/mpeg",
            Format::Gzip => "application/x-tgsticker",
        }
    }

    /// The usual file extension.
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Pdf => "pdf",
            Format::Zip => "zip",
            Format::Mp4 => "mp4",
            Format::Webm => "webm",
            Format::Ogg => "ogg",
            Format::Mp3 => "mp3",
            Format::Gzip => "tgs",
        }
    }
}

/// The MIME type to store and serve a media of `kind` whose bytes start with `head`: the
/// sniffed format's, else `application/octet-stream`. Guessing a type from the kind alone
/// would make a URL claim what the bytes may not be; an unknown format is better sent as a
/// multipart upload, where Telegram reads the bytes.
pub(crate) fn content_type(kind: MediaKind, head: &[u8]) -> &'static str {
    match Format::of(head) {
        Some(format) => format.mime(kind),
        None => OCTET_STREAM,
    }
}

/// The type of bytes whose format is unknown.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_and_names_types() {
        assert_eq!(Format::of(b"\0\0\0\x18ftypmp42"), Some(Format::Mp4));
        assert_eq!(content_type(MediaKind::Photo, b"\x89PNG\r\n"), "image/png");
        assert_eq!(content_type(MediaKind::Voice, b"OggS\0"), "audio/ogg");
        assert_eq!(
            content_type(MediaKind::Audio, b"\0\0\0\x18ftypM4A "),
            "audio/mp4"
        );
        assert_eq!(content_type(MediaKind::Photo, b"??"), OCTET_STREAM);
        assert_eq!(
            Format::of_mime("Image/JPEG; charset=binary"),
            Some(Format::Jpeg)
        );
        assert_eq!(Format::of_mime("application/octet-stream"), None);
        for f in [Format::Jpeg, Format::Gzip, Format::Mp3, Format::Webm] {
            assert_eq!(Format::of_mime(f.mime(MediaKind::Document)), Some(f));
        }
    }
}
