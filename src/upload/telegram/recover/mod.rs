//! Finding a warm-up message whose reply never arrived, instead of uploading its media again.
//!
//! The Bot API has no idempotency key, and a bot cannot read a chat's history. What it can do
//! is forward a message by its id (`forwardMessage` answers the whole new Message, with the
//! media's file_id and the caption). So every warm-up send is journaled before it leaves (the
//! chat, and the highest message id seen there), and carries a caption naming its media. When
//! a media's next attempt finds its entry pending (the process was killed, or the reply was
//! lost), the uploader forwards the ids above the journaled one, within the chat, until it
//! meets the caption naming the media, and takes the file_id from the copy.
//!
//! Message ids: supergroups and channels number their messages per chat; private chats and
//! basic groups share one counter per bot, so there the ids of the bot's other chats sit in
//! between, and a send's place is after the highest id the bot has seen in any of them. The
//! journal knows the ids it delivered in every chat, so those are skipped; the ids left to
//! try are those of the sends that were pending with this one, plus a few, plus one for each
//! message found that is not the one looked for (another bot's or a person's, an album). A
//! fake or a server that numbers every chat on its own is told apart by two chats answering
//! the same id: then each chat is searched alone.
//!
//! A chat where no message id is known yet gets a short text first, deleted at once: its id
//! is the place the chat's first warms come after ([`Inner::anchor`]).
//!
//! A message is the media's when the bot itself sent it (the copy's `forward_origin`) and
//! its caption names the media. Stickers and video notes take no caption: one of those is
//! the media's when it is of its kind and exactly its size, was sent after the send began,
//! and no other send of that kind was pending around it; otherwise the media is uploaded
//! again rather than risk another media's file_id.

mod search;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

pub(super) use self::search::marker;
use self::search::{Sent, candidates, own_counter, wanted};
use super::Inner;
use super::client::takes_caption;
use super::ratelimit::{Permit, Purpose};
use super::reply::ApiError;
use crate::error::{Error, Result};
use crate::media::{FileId, MediaKey, Timestamp};
use crate::upload::{Delivered, JournalEntry, UploadRequest, Uploaded};

/// How far before a pending send's start the journal is read for the ids delivered around it:
/// an upload that started earlier may have been answered after it.
const AROUND: Duration = Duration::from_secs(600);

/// How old an entry gets before it is pruned, delivered or not: a delivered one holds the
/// file_id of a media whose process may have died before caching it, and its successor may
/// start days later.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the journal is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(900);

/// What a chat's place-marking text says to anyone who sees it before it is deleted.
const ANCHOR_TEXT: &str = "prewarm: warm-up chat ready";

/// The highest message id seen in each chat, loaded from the journal once, and the chats'
/// anchors in flight.
#[derive(Debug, Default)]
pub(super) struct Seen {
    high: Mutex<High>,
    loaded: tokio::sync::OnceCell<()>,
    pruned_at: Mutex<Option<tokio::time::Instant>>,
    /// Per chat being anchored: `true` once its anchor is done (or given up).
    anchors: Mutex<HashMap<i64, watch::Receiver<bool>>>,
}

#[derive(Debug, Default)]
struct High {
    chats: HashMap<i64, i64>,
    /// The highest id of the bot's message box (its private chats and basic groups).
    shared: Option<i64>,
}

/// Whose turn it is to anchor a chat.
pub(super) enum Turn {
    /// A message id is known in the chat: nothing to do.
    Known,
    /// Another send is anchoring it: wait for it to finish.
    Wait(watch::Receiver<bool>),
    /// This send anchors it, and says so when done.
    Mine(watch::Sender<bool>),
}

impl Seen {
    /// Notes that `chat` holds message `message_id`.
    pub(super) fn note(&self, chat: i64, message_id: i64) {
        let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
        let h = high.chats.entry(chat).or_insert(message_id);
        *h = (*h).max(message_id);
        if !own_counter(chat) {
            high.shared = Some(high.shared.map_or(message_id, |s| s.max(message_id)));
        }
    }

    /// The id a message sent to `chat` now comes after: the chat's highest, or in the bot's
    /// message box the box's highest.
    fn after(&self, chat: i64) -> Option<i64> {
        let high = self.high.lock().unwrap_or_else(|p| p.into_inner());
        let own = high.chats.get(&chat).copied();
        if own_counter(chat) {
            own
        } else {
            own.max(high.shared)
        }
    }

    fn turn(&self, chat: i64) -> Turn {
        if self.after(chat).is_some() {
            return Turn::Known;
        }
        let mut anchors = self.anchors.lock().unwrap_or_else(|p| p.into_inner());
        match anchors.get(&chat) {
            Some(done) if *done.borrow() => Turn::Known,
            // Its sender is alive: an anchor is in flight.
            Some(done) if done.has_changed().is_ok() => Turn::Wait(done.clone()),
            _ => {
                let (tx, rx) = watch::channel(false);
                anchors.insert(chat, rx);
                Turn::Mine(tx)
            }
        }
    }
}

impl Inner {
    /// Journals a warm-up send of `key` to `chat` that is about to leave. Without a journal,
    /// nothing.
    pub(super) async fn journal_begin(&self, key: &MediaKey, chat: i64) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        self.load_seen().await;
        let entry = JournalEntry {
            media: key.clone(),
            chat,
            after: self.seen.after(chat),
            started_at: Timestamp::now(),
            delivered: None,
        };
        journal.begin(&entry).await
    }

    /// Whose turn it is to anchor `chat` before a warm is sent there: [`Turn::Known`]
    /// without a journal, or once a message id is known in the chat.
    pub(super) async fn anchor_turn(&self, chat: i64) -> Turn {
        if self.journal.is_none() {
            return Turn::Known;
        }
        self.load_seen().await;
        self.seen.turn(chat)
    }

    /// Sends a short text to the permit's chat, so that a message id is known there before
    /// the first warm: without one, a warm whose reply is lost could not be looked for. The
    /// text is journaled as the chat's high water and deleted.
    ///
    /// # Errors
    /// [`Error::RateLimited`] when Telegram limits the chat, and the classified error when
    /// it does not answer: the next warm anchors the chat. Any other refusal is logged and
    /// the chat's warms go unanchored: the warm that follows meets the same refusal and
    /// handles it.
    pub(super) async fn anchor(&self, permit: Permit, done: watch::Sender<bool>) -> Result<()> {
        let chat = permit.chat;
        match self.client.send_text(chat, ANCHOR_TEXT).await {
            Ok(message) => {
                drop(permit);
                let id = message.message_id;
                self.seen.note(chat, id);
                if let Some(journal) = &self.journal
                    && let Err(e) = journal.raise(&self.bot, chat, id).await
                {
                    tracing::warn!(chat, error = %e, "could not journal the warm-up chat's last message id");
                }
                let _ = done.send(true);
                self.delete_warmup_message(chat, id).await;
                Ok(())
            }
            Err(ApiError::RateLimited {
                retry_after,
                description,
            }) => {
                self.limited(permit, chat, retry_after, &description).await;
                Err(Error::RateLimited { retry_after })
            }
            Err(e @ ApiError::Unavailable { .. }) => Err(self.error(e, None)),
            Err(e) => {
                tracing::info!(
                    chat,
                    error = e.description(),
                    "could not mark the warm-up chat's place; its first warms cannot be looked for after a crash"
                );
                let _ = done.send(true);
                Ok(())
            }
        }
    }

    /// Notes the messages of an album sent to `chat`, in memory and in the journal, so that
    /// the warms after it come after them.
    pub(super) async fn journal_album(&self, chat: i64, message_ids: &[i64]) {
        let Some(&high) = message_ids.iter().max() else {
            return;
        };
        self.seen.note(chat, high);
        if let Some(journal) = &self.journal
            && let Err(e) = journal.raise(&self.bot, chat, high).await
        {
            tracing::warn!(chat, error = %e, "could not journal the album's message ids");
        }
    }

    /// Journals the message a warm-up send became. A journal that fails is logged: the
    /// message exists, so a later attempt finds it anyway.
    pub(super) async fn journal_delivered(
        &self,
        key: &MediaKey,
        message_id: i64,
        file_id: &FileId,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        let delivered = Delivered {
            message_id,
            file_id: file_id.clone(),
        };
        if let Err(e) = journal.deliver(key, &delivered).await {
            tracing::warn!(media = %key, error = %e, "could not journal the warm-up message");
        }
        self.prune_now_and_then().await;
    }

    /// Drops the journal entry of a send Telegram refused: no message exists.
    pub(super) async fn journal_refused(&self, key: &MediaKey) {
        let Some(journal) = &self.journal else {
            return;
        };
        if let Err(e) = journal.forget(key, None).await {
            tracing::debug!(media = %key, error = %e, "could not drop the journal entry");
        }
    }

    /// Forgets `key`'s entry when it holds `file_id`, which Telegram rejected: the journal
    /// must not answer it for the media's next warm.
    pub(super) async fn journal_rejected(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        journal.forget(key, Some(file_id)).await
    }

    async fn load_seen(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        self.seen
            .loaded
            .get_or_init(|| async {
                match journal.high_water(&self.bot).await {
                    Ok(high) => {
                        for (chat, id) in high {
                            self.seen.note(chat, id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the journal's last message ids")
                    }
                }
            })
            .await;
    }

    async fn prune_now_and_then(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        {
            let mut at = self
                .seen
                .pruned_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            if at.is_some_and(|at| now.duration_since(at) < PRUNE_EVERY) {
                return;
            }
            *at = Some(now);
        }
        let before = Timestamp(Timestamp::now().0.saturating_sub(KEEP.as_millis() as u64));
        match journal.prune(&self.bot, before).await {
            Ok(n) => tracing::debug!(pruned = n, "journal pruned"),
            Err(e) => tracing::warn!(error = %e, "could not prune the journal"),
        }
    }

    /// The file_id of an earlier attempt at `request` that reached Telegram, if the journal
    /// says so or the warm-up chat shows it; `None` when the media must be uploaded.
    ///
    /// # Errors
    /// [`Error::RateLimited`] when Telegram limits the search (the entry stays, and the next
    /// attempt searches again); a journal that cannot be read.
    pub(super) async fn recover(&self, request: &UploadRequest) -> Result<Option<Uploaded>> {
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let key = &request.key;
        let Some(entry) = journal.entry(key).await? else {
            return Ok(None);
        };
        if let Some(d) = &entry.delivered {
            tracing::info!(media = %key, chat = entry.chat, message_id = d.message_id, "the journal holds this media's file_id: nothing to upload");
            if self.delete_warmup {
                // The process that sent it may have died before deleting it.
                self.delete_warmup_message(entry.chat, d.message_id).await;
            }
            return Ok(Some(Uploaded {
                file_id: d.file_id.clone(),
                file_unique_id: None,
            }));
        }
        let Some(after) = entry.after else {
            tracing::info!(media = %key, chat = entry.chat, "an earlier send may have reached Telegram, but nothing bounds where: uploading again");
            return Ok(None);
        };
        let around = journal
            .entries(
                &self.bot,
                Timestamp(entry.started_at.0.saturating_sub(AROUND.as_millis() as u64)),
            )
            .await?;
        if !takes_caption(key.kind)
            && around.iter().any(|e| {
                e.delivered.is_none() && e.media.kind == key.kind && e.media != entry.media
            })
        {
            // Without a caption only the size tells two of them apart: not enough.
            tracing::info!(media = %key, chat = entry.chat, "an earlier send may have reached Telegram, but another {} was pending with it: uploading again", key.kind);
            return Ok(None);
        }
        let candidates = candidates(&entry, after, &around);
        let mut budget = candidates.len().min(wanted(&entry, &around));
        tracing::info!(media = %key, chat = entry.chat, after, tries = budget, "an earlier send may have reached Telegram: looking for it");
        let mut unforwardable = 0;
        for (tried, id) in candidates.into_iter().enumerate() {
            if tried == budget {
                break;
            }
            match self.probe(&entry, id, request.size).await? {
                Probe::Found(file) => {
                    let delivered = Delivered {
                        message_id: id,
                        file_id: FileId::new(file.file_id.clone()),
                    };
                    if let Err(e) = journal.deliver(key, &delivered).await {
                        tracing::warn!(media = %key, error = %e, "could not journal the message found");
                    }
                    self.seen.note(entry.chat, id);
                    tracing::info!(media = %key, chat = entry.chat, message_id = id, "found the earlier send: nothing to upload");
                    if self.delete_warmup {
                        self.delete_warmup_message(entry.chat, id).await;
                    }
                    return Ok(Some(Uploaded {
                        file_id: delivered.file_id,
                        file_unique_id: file.file_unique_id,
                    }));
                }
                // Someone else's message took an id the search counted on: one more.
                Probe::Other => budget += 1,
                Probe::NotThere => {}
                Probe::Unforwardable => unforwardable += 1,
                Probe::GiveUp => break,
            }
        }
        if unforwardable == budget {
            tracing::warn!(
                chat = entry.chat,
                "no message of the warm-up chat can be forwarded: if it protects its content, turn that off, or warms cut short by a crash are uploaded again"
            );
        }
        tracing::info!(media = %key, chat = entry.chat, "the earlier send is not in its chat: uploading again");
        Ok(None)
    }

    /// Forwards message `id` of the entry's chat to itself: whether it is the entry's media.
    async fn probe(&self, entry: &JournalEntry, id: i64, size: u64) -> Result<Probe> {
        let chat = entry.chat;
        let permit = self.acquire(&[chat], Purpose::Warm(1), None).await?;
        match self.client.forward_message(chat, chat, id).await {
            Ok(copy) => {
                drop(permit);
                self.seen.note(chat, copy.message_id);
                let sent = Sent {
                    by: self.user,
                    // A minute of slack for the clocks of this host and Telegram's.
                    not_before: (entry.started_at.0 / 1000) as i64 - 60,
                };
                let found = sent.is_of(&copy, &entry.media, size);
                // The copy is ours alone: always deleted.
                self.delete_warmup_message(chat, copy.message_id).await;
                Ok(found.map_or(Probe::Other, Probe::Found))
            }
            Err(ApiError::RateLimited {
                retry_after,
                description,
            }) => {
                self.limited(permit, chat, retry_after, &description).await;
                Err(Error::RateLimited { retry_after })
            }
            Err(ApiError::Rejected {
                code: 400,
                description,
            }) if description.contains("can't be forwarded") => Ok(Probe::Unforwardable),
            // "message to forward not found": deleted, never made, or another chat's id.
            Err(ApiError::Rejected { code: 400, .. }) => Ok(Probe::NotThere),
            Err(e) => {
                tracing::info!(
                    chat,
                    error = e.description(),
                    "cannot look in the warm-up chat"
                );
                Ok(Probe::GiveUp)
            }
        }
    }
}

enum Probe {
    /// The media's message: its file.
    Found(super::reply::File),
    /// A message, but not the media's.
    Other,
    /// No message by this id.
    NotThere,
    /// A service message, or any message of a chat that protects its content.
    Unforwardable,
    GiveUp,
}
