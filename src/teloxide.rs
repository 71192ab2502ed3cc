//! [teloxide](https://docs.rs/teloxide) integration: a media as teloxide's [`InputFile`], and
//! the file_id of a sent message back into the engine.
//!
//! ```no_run
//! use std::time::Duration;
//! use prewarm::{MediaKey, PrewarmEngine};
//! use teloxide::prelude::*;
//!
//! async fn reply_with(bot: Bot, msg: Message, engine: PrewarmEngine, key: MediaKey) -> prewarm::Result<()> {
//!     // The file_id when warm (or warm within 300 ms), the bytes otherwise.
//!     let photo = prewarm::teloxide::input_file(&engine, &key, Duration::from_millis(300)).await?;
//!     let sent = bot.send_photo(msg.chat.id, photo).await.map_err(|e| prewarm::Error::Unavailable {
//!         message: e.to_string(),
//!     })?;
//!     // Uploaded directly? Keep the file_id Telegram answered: the next send is instant.
//!     prewarm::teloxide::record_sent(&engine, &key, &sent).await?;
//!     Ok(())
//! }
//! ```

use std::time::Duration;

use ::teloxide::types::{FileId as TgFileId, InputFile, Message};

use crate::engine::{PrewarmEngine, Sendable};
use crate::error::Result;
use crate::media::{FileId, MediaKey, MediaKind};

/// What to send for `key`, as teloxide's [`InputFile`]: its file_id when the media is warm
/// (or warms within `wait`), otherwise its bytes, named `<sha256>.<ext>` for its kind.
///
/// # Errors
/// As [`PrewarmEngine::sendable`], plus the store's error while reading the bytes.
pub async fn input_file(
    engine: &PrewarmEngine,
    key: &MediaKey,
    wait: Duration,
) -> Result<InputFile> {
    match engine.sendable(key, wait).await? {
        Sendable::FileId(id) => Ok(InputFile::file_id(TgFileId(id.as_str().to_owned()))),
        Sendable::Upload(source) => {
            let bytes = source.read_all().await?;
            Ok(InputFile::memory(bytes).file_name(format!(
                "{}.{}",
                key.sha256,
                extension(key.kind)
            )))
        }
    }
}

/// The file_id a sent message carries for a media of `kind`: the largest photo size, or the
/// one object of the other kinds (`animation` before `document`, which Telegram fills too).
pub fn file_id_of(message: &Message, kind: MediaKind) -> Option<FileId> {
    let id = match kind {
        MediaKind::Photo => message
            .photo()?
            .iter()
            .max_by_key(|p| (u64::from(p.width) * u64::from(p.height), p.file.size))
            .map(|p| &p.file.id),
        MediaKind::Video => message.video().map(|v| &v.file.id),
        // Telegram fills both `animation` and `document` for an animation, and teloxide may
        // parse such a message as a document: the document's file_id is the same file.
        MediaKind::Animation => message
            .animation()
            .map(|a| &a.file.id)
            .or_else(|| message.document().map(|d| &d.file.id)),
        MediaKind::Document => message.document().map(|d| &d.file.id),
        MediaKind::Audio => message.audio().map(|a| &a.file.id),
        MediaKind::Voice => message.voice().map(|v| &v.file.id),
        MediaKind::VideoNote => message.video_note().map(|v| &v.file.id),
        MediaKind::Sticker => message.sticker().map(|s| &s.file.id),
    }?;
    Some(FileId::new(id.0.as_str()))
}

/// Records in the engine the file_id that `message` (a send of `key`) carries, so the media is
/// warm from now on and its queued warm uploads nothing. Answers whether one was found.
///
/// # Errors
/// The cache's error.
pub async fn record_sent(
    engine: &PrewarmEngine,
    key: &MediaKey,
    message: &Message,
) -> Result<bool> {
    match file_id_of(message, key.kind) {
        Some(id) => {
            if engine.lookup(key).as_ref() != Some(&id) {
                engine.record_file_id(key, id).await?;
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

fn extension(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Photo => "jpg",
        MediaKind::Video | MediaKind::Animation | MediaKind::VideoNote => "mp4",
        MediaKind::Document => "bin",
        MediaKind::Audio => "mp3",
        MediaKind::Voice => "ogg",
        MediaKind::Sticker => "webp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).expect("a message")
    }

    fn base(extra: serde_json::Value) -> serde_json::Value {
        let mut m = serde_json::json!({
            "message_id": 7,
            "date": 1_700_000_000,
            "chat": {"id": -100123, "type": "private", "first_name": "w"},
        });
        for (k, v) in extra.as_object().expect("object") {
            m[k] = v.clone();
        }
        m
    }

    #[test]
    fn the_largest_photo_size_is_kept() {
        let m = message(base(serde_json::json!({"photo": [
            {"file_id": "small", "file_unique_id": "u1", "width": 90, "height": 60, "file_size": 1000},
            {"file_id": "large", "file_unique_id": "u3", "width": 1280, "height": 853, "file_size": 90000},
            {"file_id": "medium", "file_unique_id": "u2", "width": 320, "height": 213, "file_size": 9000},
        ]})));
        assert_eq!(file_id_of(&m, MediaKind::Photo), Some(FileId::new("large")));
        assert_eq!(file_id_of(&m, MediaKind::Video), None, "not a video");
    }

    #[test]
    fn an_animation_is_read_from_animation_or_document() {
        let m = message(base(serde_json::json!({
            "animation": {"file_id": "anim", "file_unique_id": "a", "width": 1, "height": 1, "duration": 1},
            "document": {"file_id": "doc", "file_unique_id": "d"},
        })));
        let id = file_id_of(&m, MediaKind::Animation).expect("a file_id");
        assert!(["anim", "doc"].contains(&id.as_str()), "{id}");
        let only_doc = message(base(serde_json::json!({
            "document": {"file_id": "doc", "file_unique_id": "d"},
        })));
        assert_eq!(
            file_id_of(&only_doc, MediaKind::Animation),
            Some(FileId::new("doc"))
        );
        assert_eq!(file_id_of(&only_doc, MediaKind::Photo), None);
    }
}
