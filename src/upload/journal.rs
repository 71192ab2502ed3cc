//! The journal of warm-up sends: which media went to which chat, and what came back.
//!
//! The Bot API has no idempotency key. A process killed while Telegram handles its upload
//! never hears the file_id, and the media's next attempt would upload it again. An uploader
//! that writes an [`UploadJournal`] entry before each send, durably, leaves its successor what
//! it needs to look for that message instead: the chat, and a message id the new message
//! comes after. Once Telegram answers, the entry holds the message and its file_id, so that
//! a process killed between Telegram's answer and the file_id reaching the cache hands the
//! file_id on as well.
//!
//! [`MemoryJournal`] keeps the entries in the process (for tests: it survives nothing); the
//! embedded database and PostgreSQL backends keep them beside the queue.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::Result;
use crate::media::{BotId, FileId, MediaKey, Timestamp};

/// One warm-up send as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The media sent.
    pub media: MediaKey,
    /// The chat it was sent to.
    pub chat: i64,
    /// A message id the send's message comes after in `chat`: the highest the sender had
    /// seen there when the send left. `None` when it had seen none.
    pub after: Option<i64>,
    /// When the send was journaled.
    pub started_at: Timestamp,
    /// What Telegram answered, once it did.
    pub delivered: Option<Delivered>,
}

/// The message a journaled send became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its id in the entry's chat.
    pub message_id: i64,
    /// The file_id it carries.
    pub file_id: FileId,
}

/// A durable record of the warm-up sends of one or more bots, one entry per media.
///
/// # Contract
/// - [`begin`](Self::begin) is durable when it returns: a process killed right after it
///   leaves the entry to the next one. It replaces any entry the media had.
/// - [`deliver`](Self::deliver) records the message of the media's entry, durably; it
///   changes nothing when the media has no entry (a later [`forget`](Self::forget) won).
/// - [`entries`](Self::entries) answers a bot's entries begun at or after a time, of every
///   chat, delivered or not; [`pending`](Self::pending) those of a bot not delivered, however
///   old; [`high_water`](Self::high_water) the highest delivered message id of each chat.
/// - [`prune`](Self::prune) drops a bot's delivered entries begun before a time, except the
///   one with the highest message id in each chat (what `high_water` answers survives), and
///   the pending entries begun before a time given apart.
/// - Bots never see each other's entries.
#[async_trait]
pub trait UploadJournal: Send + Sync + Debug + 'static {
    /// Records that a send of `entry.media` to `entry.chat` is about to leave, replacing the
    /// media's earlier entry.
    async fn begin(&self, entry: &JournalEntry) -> Result<()>;

    /// Records the message the media's send became.
    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()>;

    /// Drops the media's entry: its send was refused, so no message exists.
    async fn forget(&self, media: &MediaKey) -> Result<()>;

    /// The media's entry, if any.
    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>>;

    /// The bot's entries begun at or after `since`.
    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>>;

    /// The bot's entries with no message recorded.
    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>>;

    /// The highest delivered message id in each of the bot's chats, as `(chat, message_id)`.
    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>>;

    /// Drops the bot's delivered entries begun before `delivered_before` (keeping each chat's
    /// highest) and its pending ones begun before `pending_before`. Answers how many went.
    async fn prune(
        &self,
        bot: &BotId,
        delivered_before: Timestamp,
        pending_before: Timestamp,
    ) -> Result<u64>;
}

/// An [`UploadJournal`] in the process's memory: survives nothing, for tests.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<HashMap<MediaKey, JournalEntry>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MediaKey, JournalEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl UploadJournal for MemoryJournal {
    async fn begin(&self, entry: &JournalEntry) -> Result<()> {
        self.lock().insert(entry.media.clone(), entry.clone());
        Ok(())
    }

    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()> {
        if let Some(entry) = self.lock().get_mut(media) {
            entry.delivered = Some(delivered.clone());
        }
        Ok(())
    }

    async fn forget(&self, media: &MediaKey) -> Result<()> {
        self.lock().remove(media);
        Ok(())
    }

    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>> {
        Ok(self.lock().get(media).cloned())
    }

    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>> {
        Ok(self
            .lock()
            .values()
            .filter(|e| &e.media.bot == bot && e.started_at >= since)
            .cloned()
            .collect())
    }

    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>> {
        Ok(self
            .lock()
            .values()
            .filter(|e| &e.media.bot == bot && e.delivered.is_none())
            .cloned()
            .collect())
    }

    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>> {
        let mut high: HashMap<i64, i64> = HashMap::new();
        for e in self.lock().values().filter(|e| &e.media.bot == bot) {
            if let Some(d) = &e.delivered {
                let h = high.entry(e.chat).or_insert(d.message_id);
                *h = (*h).max(d.message_id);
            }
        }
        Ok(high.into_iter().collect())
    }

    async fn prune(
        &self,
        bot: &BotId,
        delivered_before: Timestamp,
        pending_before: Timestamp,
    ) -> Result<u64> {
        let high: HashMap<i64, i64> = self.high_water(bot).await?.into_iter().collect();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| {
            if &e.media.bot != bot {
                return true;
            }
            match &e.delivered {
                Some(d) => {
                    e.started_at >= delivered_before || high.get(&e.chat) == Some(&d.message_id)
                }
                None => e.started_at >= pending_before,
            }
        });
        Ok((before - entries.len()) as u64)
    }
}
