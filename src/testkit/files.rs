//! The file_ids the fake issues, and the media objects of a message that carry them.

use serde_json::{Value, json};

use super::FakeFile;
use super::server::State;
use crate::media::{MediaKind, Sha256};

/// Issues a file_id for `kind` and remembers it.
fn issue(
    state: &mut State,
    bot: &str,
    kind: MediaKind,
    sha: Sha256,
    size: u64,
    (width, height, largest): (u32, u32, bool),
) -> (String, String) {
    state.next_file += 1;
    // Real file_ids start with a type tag much like these.
    let tag = match kind {
        MediaKind::Photo => "AgAC",
        MediaKind::Video => "BAAC",
        MediaKind::Animation => "CgAC",
        MediaKind::Document => "BQAC",
        MediaKind::Audio => "CQAC",
        MediaKind::Voice => "AwAC",
        MediaKind::VideoNote => "DQAC",
        MediaKind::Sticker => "CAAC",
    };
    let file_id = format!(
        "{tag}{bot}_{:06}_{:08x}",
        state.next_file,
        fastrand::u32(..)
    );
    // Stable for the same bytes across bots, as Telegram's is; distinct per photo size.
    let unique = format!("AQAD{}{width}", &sha.to_hex()[..12]);
    state.files.insert(
        file_id.clone(),
        FakeFile {
            bot_id: bot.to_owned(),
            kind,
            sha256: sha,
            size,
            width,
            height,
            largest,
        },
    );
    (file_id, unique)
}

/// The message fields carrying the media: sizes for a photo, `animation` and `document`
/// for an animation, one object otherwise.
pub(super) fn media_objects(
    state: &mut State,
    bot: &str,
    kind: MediaKind,
    sha: Sha256,
    size: u64,
) -> Value {
    let one = |state: &mut State, kind: MediaKind, extra: Value| {
        let (file_id, unique) = issue(state, bot, kind, sha, size, (0, 0, false));
        let mut v = json!({ "file_id": file_id, "file_unique_id": unique, "file_size": size });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    };
    match kind {
        MediaKind::Photo => {
            let sizes = [(90u32, 60u32, 16u64), (320, 213, 4), (800, 533, 1)];
            let photo: Vec<Value> = sizes
                .iter()
                .map(|&(w, h, div)| {
                    let s = (size / div).max(1);
                    let (file_id, unique) = issue(state, bot, kind, sha, s, (w, h, div == 1));
                    json!({ "file_id": file_id, "file_unique_id": unique, "width": w, "height": h, "file_size": s })
                })
                .collect();
            json!({ "photo": photo })
        }
        MediaKind::Animation => {
            let animation = one(
                state,
                MediaKind::Animation,
                json!({ "width": 320, "height": 240, "duration": 1, "mime_type": "video/mp4" }),
            );
            let document = one(
                state,
                MediaKind::Document,
                json!({ "file_name": "animation.mp4", "mime_type": "video/mp4" }),
            );
            json!({ "animation": animation, "document": document })
        }
        MediaKind::Video => {
            json!({ "video": one(state, kind, json!({ "width": 640, "height": 360, "duration": 1 })) })
        }
        MediaKind::Document => json!({ "document": one(state, kind, json!({})) }),
        MediaKind::Audio => json!({ "audio": one(state, kind, json!({ "duration": 1 })) }),
        MediaKind::Voice => json!({ "voice": one(state, kind, json!({ "duration": 1 })) }),
        MediaKind::VideoNote => {
            json!({ "video_note": one(state, kind, json!({ "length": 240, "duration": 1 })) })
        }
        MediaKind::Sticker => json!({ "sticker": one(state, kind, json!({
            "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false
        })) }),
    }
}
