//! Which message is a media's warm-up message, and which ids to look at for it.

use std::collections::{HashMap, HashSet};

use super::super::client::takes_caption;
use super::super::reply::{File, Message};
use crate::media::{MediaKey, MediaKind, Sha256};
use crate::upload::JournalEntry;

/// Ids tried beyond the number of sends pending with the one looked for.
const SLACK: usize = 3;

/// At most this many ids are tried for one media.
const MAX_TRIES: usize = 64;

/// The caption naming a warm-up message's media.
pub(in super::super) fn marker(key: &MediaKey) -> Option<String> {
    takes_caption(key.kind).then(|| format!("prewarm:{}:{}", key.kind, key.sha256))
}

/// The media a warm-up caption names, as `(kind, sha256)`.
fn parse_marker(caption: &str) -> Option<(MediaKind, Sha256)> {
    let rest = caption.trim().strip_prefix("prewarm:")?;
    let (kind, sha) = rest.split_once(':')?;
    Some((kind.parse().ok()?, sha.parse().ok()?))
}

/// Whether `chat` numbers its messages on its own (a supergroup or a channel: `-100…`).
pub(super) fn own_counter(chat: i64) -> bool {
    chat <= -1_000_000_000_000
}

/// What a warm-up message of a media sent by this bot looks like.
pub(super) struct Sent {
    /// The bot's user id, when its token tells it.
    pub(super) by: Option<i64>,
    /// The earliest Unix time the message can have been sent.
    pub(super) not_before: i64,
}

impl Sent {
    /// The file of `media` in `message` (a forwarded copy), when the original is the warm-up
    /// message of that media: the bot sent it, and its caption names the media or (for kinds
    /// without a caption) it holds a file of that kind and of exactly the media's size, sent
    /// after the warm began.
    pub(super) fn is_of(&self, message: &Message, media: &MediaKey, size: u64) -> Option<File> {
        let origin = message.forward_origin.as_ref()?;
        let sender = origin.sender_user.as_ref()?.id;
        if self.by.is_some_and(|by| by != sender) {
            return None;
        }
        let file = message.file(media.kind)?;
        let named = message.caption.as_deref().and_then(parse_marker);
        match named {
            Some((kind, sha)) => (kind == media.kind && sha == media.sha256).then_some(file),
            None if !takes_caption(media.kind) => {
                (file.file_size == Some(size) && origin.date >= self.not_before).then_some(file)
            }
            None => None,
        }
    }
}

/// How many ids to try for the pending `entry`: the sends pending alongside it, plus a few.
pub(super) fn wanted(entry: &JournalEntry, around: &[JournalEntry]) -> usize {
    (pending_with(entry, around).len() + SLACK).min(MAX_TRIES)
}

/// The sends pending in `entry`'s message box, `entry` among them, in the order they began.
fn pending_with<'a>(entry: &'a JournalEntry, around: &'a [JournalEntry]) -> Vec<&'a JournalEntry> {
    let same_counter = same_counter(entry.chat, around);
    let mut pending: Vec<&JournalEntry> = around
        .iter()
        .filter(|e| e.delivered.is_none() && same_counter(e.chat))
        .collect();
    if !pending.iter().any(|e| e.media == entry.media) {
        pending.push(entry);
    }
    pending.sort_by_key(|e| (e.started_at, e.media.sha256.to_hex()));
    pending
}

/// Which chats share a message counter with `chat`.
fn same_counter(chat: i64, around: &[JournalEntry]) -> impl Fn(i64) -> bool {
    let shared = !own_counter(chat) && !numbered_apart(around);
    move |c: i64| c == chat || (shared && !own_counter(c))
}

/// The message ids to try for the pending `entry`, best first: the ids above `after` that no
/// delivered entry accounts for, up to [`MAX_TRIES`], the first [`wanted`] of them from the
/// one at the entry's place among the pending sends outwards, the rest in order.
pub(super) fn candidates(entry: &JournalEntry, after: i64, around: &[JournalEntry]) -> Vec<i64> {
    let same_counter = same_counter(entry.chat, around);
    let known: HashSet<i64> = around
        .iter()
        .filter(|e| same_counter(e.chat))
        .filter_map(|e| e.delivered.as_ref().map(|d| d.message_id))
        .collect();
    let pending = pending_with(entry, around);
    let place = pending
        .iter()
        .position(|e| e.media == entry.media)
        .unwrap_or(0);
    let wanted = wanted(entry, around);
    let unknown: Vec<i64> = (after.saturating_add(1)..=i64::MAX)
        .filter(|id| !known.contains(id))
        .take(MAX_TRIES)
        .collect();
    let first = wanted.min(unknown.len());
    // From the entry's place outwards: place, place-1, place+1, place-2, ...
    let start = place.min(first.saturating_sub(1));
    let mut order = Vec::with_capacity(unknown.len());
    for step in 0..first * 2 {
        let offset = (step as i64 + 1) / 2 * if step % 2 == 1 { -1 } else { 1 };
        let i = start as i64 + offset;
        if (0..first as i64).contains(&i) {
            order.push(unknown[i as usize]);
        }
        if order.len() == first {
            break;
        }
    }
    order.extend_from_slice(&unknown[first..]);
    order
}

/// Whether two chats that would share a counter answered the same message id: then every
/// chat numbers its messages on its own.
fn numbered_apart(entries: &[JournalEntry]) -> bool {
    let mut owner: HashMap<i64, i64> = HashMap::new();
    for e in entries.iter().filter(|e| !own_counter(e.chat)) {
        if let Some(d) = &e.delivered {
            match owner.insert(d.message_id, e.chat) {
                Some(other) if other != e.chat => return true,
                _ => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{BotId, FileId, Timestamp};
    use crate::upload::Delivered;

    fn media(n: u8, kind: MediaKind) -> MediaKey {
        MediaKey::new(BotId::new("1").unwrap(), Sha256::of(&[n]), kind)
    }

    fn entry(n: u8, chat: i64, after: i64, at: u64, delivered: Option<i64>) -> JournalEntry {
        JournalEntry {
            media: media(n, MediaKind::Photo),
            chat,
            after: Some(after),
            started_at: Timestamp(at),
            delivered: delivered.map(|id| Delivered {
                message_id: id,
                file_id: FileId::new(format!("f{id}")),
            }),
        }
    }

    #[test]
    fn a_marker_names_its_media_and_nothing_else_parses() {
        let key = media(1, MediaKind::Video);
        let caption = marker(&key).unwrap();
        assert_eq!(parse_marker(&caption), Some((MediaKind::Video, key.sha256)));
        assert_eq!(marker(&media(1, MediaKind::Sticker)), None);
        assert_eq!(parse_marker("a holiday photo"), None);
        assert_eq!(parse_marker("prewarm:video:nothex"), None);
    }

    #[test]
    fn a_supergroup_is_searched_alone_above_its_own_ids() {
        let group = -1_001_000_000_001;
        let lost = entry(1, group, 10, 1_000, None);
        // Another chat's ids mean nothing here; the group's own delivered 12 is skipped.
        let around = vec![
            lost.clone(),
            entry(2, group, 10, 900, Some(12)),
            entry(3, 5, 0, 950, Some(11)),
        ];
        assert_eq!(candidates(&lost, 10, &around)[..4], [11, 13, 14, 15]);
    }

    #[test]
    fn private_chats_sharing_a_counter_skip_each_others_ids_and_start_at_their_place() {
        // Three sends pending at once in chats 1, 2 and 3, started in that order; ids 21 and
        // 23 were delivered in chat 4 meanwhile.
        let a = entry(1, 1, 20, 1_000, None);
        let b = entry(2, 2, 20, 1_010, None);
        let c = entry(3, 3, 20, 1_020, None);
        let around = vec![
            a.clone(),
            b.clone(),
            c.clone(),
            entry(4, 4, 20, 990, Some(21)),
            entry(5, 4, 21, 995, Some(23)),
        ];
        // Unknown ids above 20: 22, 24, 25, 26, 27, 28 (3 pending + 3 slack).
        assert_eq!(candidates(&a, 20, &around)[..6], [22, 24, 25, 26, 27, 28]);
        assert_eq!(candidates(&b, 20, &around)[..6], [24, 22, 25, 26, 27, 28]);
        assert_eq!(candidates(&c, 20, &around)[..6], [25, 24, 26, 22, 27, 28]);
        // Beyond those, in order, for messages found to be someone else's.
        let all = candidates(&c, 20, &around);
        assert_eq!(all.len(), MAX_TRIES);
        assert_eq!(all[6..9], [29, 30, 31]);
    }

    #[test]
    fn chats_that_answered_the_same_id_are_numbered_apart() {
        let lost = entry(1, 1, 20, 1_000, None);
        let around = vec![
            lost.clone(),
            entry(2, 1, 19, 900, Some(20)),
            entry(3, 2, 19, 900, Some(20)),
            entry(4, 2, 20, 950, Some(21)),
        ];
        // Chat 2's 21 belongs to chat 2 alone: chat 1's 21 is a candidate.
        assert_eq!(candidates(&lost, 20, &around)[0], 21);
    }
}
