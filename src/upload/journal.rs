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
/// - [`deliver`](Self::deliver) records the message of the media's entry, durably, and raises
///   the high water of the entry's chat to it, in the same commit; it changes nothing when
///   the media has no entry (a later [`forget`](Self::forget) won).
/// - [`forget`](Self::forget) with a file_id drops the entry only if its delivery holds that
///   file_id, in one step: an entry begun again meanwhile, by this process or another,
///   survives. Without one it drops the entry whatever it holds.
/// - A chat's high water is the highest message id [`deliver`](Self::deliver) or
///   [`raise`](Self::raise) recorded there for the bot. It never falls: no `begin`, `forget`
///   or `prune` lowers it, and neither does a lower id, however many processes record at
///   once.
/// - [`entries`](Self::entries) answers a bot's entries begun at or after a time, of every
///   chat, delivered or not; [`pending`](Self::pending) those of a bot not delivered, however
///   old; [`high_water`](Self::high_water) the high water of each of the bot's chats.
/// - [`prune`](Self::prune) drops a bot's entries begun before a time, delivered or not.
/// - Bots never see each other's entries or high waters.
#[async_trait]
pub trait UploadJournal: Send + Sync + Debug + 'static {
    /// Records that a send of `entry.media` to `entry.chat` is about to leave, replacing the
    /// media's earlier entry.
    async fn begin(&self, entry: &JournalEntry) -> Result<()>;

    /// Records the message the media's send became, and raises its chat's high water to it.
    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()>;

    /// Records that `chat` holds the bot's message `message_id`: its high water rises to it,
    /// never falls. For messages that are no journal entry's.
    async fn raise(&self, bot: &BotId, chat: i64, message_id: i64) -> Result<()>;

    /// Drops the media's entry. With `file_id`, only if its delivery holds that file_id
    /// (Telegram rejected it); without, whatever it holds (its send was refused, so no
    /// message exists).
    async fn forget(&self, media: &MediaKey, file_id: Option<&FileId>) -> Result<()>;

    /// The media's entry, if any.
    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>>;

    /// The bot's entries begun at or after `since`.
    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>>;

    /// The bot's entries with no message recorded.
    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>>;

    /// The high water of each of the bot's chats, as `(chat, message_id)`.
    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>>;

    /// Drops the bot's entries begun before `before`, delivered or not; the high water
    /// stays. Answers how many went.
    async fn prune(&self, bot: &BotId, before: Timestamp) -> Result<u64>;
}

/// An [`UploadJournal`] in the process's memory: survives nothing, for tests.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    // A plain lock: no call holds it across an `.await`.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<MediaKey, JournalEntry>,
    /// The high water of each `(bot, chat)`.
    high: HashMap<(BotId, i64), i64>,
}

impl State {
    fn raise(&mut self, bot: &BotId, chat: i64, message_id: i64) {
        let h = self.high.entry((bot.clone(), chat)).or_insert(message_id);
        *h = (*h).max(message_id);
    }
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl UploadJournal for MemoryJournal {
    async fn begin(&self, entry: &JournalEntry) -> Result<()> {
        self.lock()
            .entries
            .insert(entry.media.clone(), entry.clone());
        Ok(())
    }

    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()> {
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(media) else {
            return Ok(());
        };
        entry.delivered = Some(delivered.clone());
        let chat = entry.chat;
        state.raise(&media.bot, chat, delivered.message_id);
        Ok(())
    }

    async fn raise(&self, bot: &BotId, chat: i64, message_id: i64) -> Result<()> {
        self.lock().raise(bot, chat, message_id);
        Ok(())
    }

    async fn forget(&self, media: &MediaKey, file_id: Option<&FileId>) -> Result<()> {
        let mut state = self.lock();
        let holds = |e: &JournalEntry| match file_id {
            Some(id) => e.delivered.as_ref().is_some_and(|d| &d.file_id == id),
            None => true,
        };
        if state.entries.get(media).is_some_and(holds) {
            state.entries.remove(media);
        }
        Ok(())
    }

    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>> {
        Ok(self.lock().entries.get(media).cloned())
    }

    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>> {
        Ok(self
            .lock()
            .entries
            .values()
            .filter(|e| &e.media.bot == bot && e.started_at >= since)
            .cloned()
            .collect())
    }

    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>> {
        Ok(self
            .lock()
            .entries
            .values()
            .filter(|e| &e.media.bot == bot && e.delivered.is_none())
            .cloned()
            .collect())
    }

    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>> {
        Ok(self
            .lock()
            .high
            .iter()
            .filter(|((b, _), _)| b == bot)
            .map(|(&(_, chat), &high)| (chat, high))
            .collect())
    }

    async fn prune(&self, bot: &BotId, before: Timestamp) -> Result<u64> {
        let entries = &mut self.lock().entries;
        let had = entries.len();
        entries.retain(|_, e| &e.media.bot != bot || e.started_at >= before);
        Ok((had - entries.len()) as u64)
    }
}
