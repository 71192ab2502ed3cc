//! The [`UploadJournal`] of [`SqliteStore`]: the tables `upload_journal` (one row per media)
//! and `upload_journal_chats` (each chat's high water), beside the queue.
//!
//! Every call goes through the store's writer thread like the queue's, in one savepoint of an
//! IMMEDIATE transaction, so `deliver`'s two statements commit together and no other process
//! writes between them; `begin` and `deliver` answer once their transaction is committed
//! under the store's [`Durability`](super::Durability).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::sqlite::key_params;
use super::{JournalRow, SqliteStore, key_in, ms};
use crate::error::Result;
use crate::media::{BotId, FileId, MediaKey, Timestamp};
use crate::upload::{Delivered, JournalEntry, UploadJournal};

/// The columns of one entry, read by `journal_row`.
const COLUMNS: &str = "bot_slug, sha256, kind, chat, after_id, started_at, message_id, file_id";

fn journal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JournalEntry>> {
    let bot: String = r.get(0)?;
    let sha: Vec<u8> = r.get(1)?;
    let kind: String = r.get(2)?;
    let key = match key_in("upload_journal", &bot, &sha, &kind) {
        Ok(key) => key,
        Err(e) => return Ok(Err(e)),
    };
    Ok(JournalRow {
        key,
        chat: r.get(3)?,
        after: r.get(4)?,
        started_at: r.get(5)?,
        message_id: r.get(6)?,
        file_id: r.get(7)?,
    }
    .entry())
}

/// Raises the high water of `(bot, chat)` to `message_id`, never lowering it.
const RAISE: &str = "INSERT INTO upload_journal_chats (bot_slug, chat, high_water) \
     VALUES (?1, ?2, ?3) ON CONFLICT (bot_slug, chat) DO UPDATE \
     SET high_water = max(high_water, excluded.high_water)";

/// The entries `sql` selects with `args`.
fn entries_where(
    c: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Result<Vec<JournalEntry>>> {
    let rows: Vec<Result<JournalEntry>> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM upload_journal WHERE {sql} ORDER BY started_at"
        ))?
        .query_map(args, journal_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows.into_iter().collect())
}

#[async_trait]
impl UploadJournal for SqliteStore {
    async fn begin(&self, entry: &JournalEntry) -> Result<()> {
        let (bot, sha, kind) = key_params(&entry.media);
        let (chat, after, started_at) = (entry.chat, entry.after, ms(entry.started_at));
        self.call("journaling a send", move |c, _| {
            c.prepare_cached(
                "INSERT INTO upload_journal (bot_slug, sha256, kind, chat, after_id, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (bot_slug, sha256, kind) DO UPDATE \
                 SET chat = excluded.chat, after_id = excluded.after_id, \
                   started_at = excluded.started_at, message_id = NULL, file_id = NULL",
            )?
            .execute(params![bot, sha, kind, chat, after, started_at])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()> {
        let (bot, sha, kind) = key_params(media);
        let message_id = delivered.message_id;
        let file_id = delivered.file_id.as_str().to_owned();
        self.call("journaling a delivery", move |c, _| {
            let chat: Option<i64> = c
                .prepare_cached(
                    "UPDATE upload_journal SET message_id = ?4, file_id = ?5 \
                     WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 RETURNING chat",
                )?
                .query_row(params![bot, sha, kind, message_id, file_id], |r| r.get(0))
                .optional()?;
            if let Some(chat) = chat {
                c.prepare_cached(RAISE)?
                    .execute(params![bot, chat, message_id])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn raise(&self, bot: &BotId, chat: i64, message_id: i64) -> Result<()> {
        let bot = bot.as_str().to_owned();
        self.call("raising the journal's high water", move |c, _| {
            c.prepare_cached(RAISE)?
                .execute(params![bot, chat, message_id])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn forget(&self, media: &MediaKey, file_id: Option<&FileId>) -> Result<()> {
        let (bot, sha, kind) = key_params(media);
        let file_id = file_id.map(|id| id.as_str().to_owned());
        self.call("forgetting a journaled send", move |c, _| {
            // With no file_id, `?4 IS NULL` drops the row whatever it holds; with one, only a
            // row delivered with it (a pending row's NULL file_id matches nothing).
            c.prepare_cached(
                "DELETE FROM upload_journal WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3 \
                 AND (?4 IS NULL OR file_id = ?4)",
            )?
            .execute(params![bot, sha, kind, file_id])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>> {
        let (bot, sha, kind) = key_params(media);
        self.call("reading a journaled send", move |c, _| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM upload_journal \
                     WHERE bot_slug = ?1 AND sha256 = ?2 AND kind = ?3"
                ))?
                .query_row(params![bot, sha, kind], journal_row)
                .optional()?;
            Ok(row.transpose())
        })
        .await
    }

    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>> {
        let bot = bot.as_str().to_owned();
        self.call("listing journaled sends", move |c, _| {
            entries_where(
                c,
                "bot_slug = ?1 AND started_at >= ?2",
                params![bot, ms(since)],
            )
        })
        .await
    }

    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>> {
        let bot = bot.as_str().to_owned();
        self.call("listing pending sends", move |c, _| {
            entries_where(c, "bot_slug = ?1 AND message_id IS NULL", [bot])
        })
        .await
    }

    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>> {
        let bot = bot.as_str().to_owned();
        self.call("reading the journal's high water", move |c, _| {
            let high = c
                .prepare_cached(
                    "SELECT chat, high_water FROM upload_journal_chats WHERE bot_slug = ?1",
                )?
                .query_map([bot], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Ok(high))
        })
        .await
    }

    async fn prune(&self, bot: &BotId, before: Timestamp) -> Result<u64> {
        let (bot, before) = (bot.as_str().to_owned(), ms(before));
        self.call("pruning the journal", move |c, _| {
            let n = c
                .prepare_cached(
                    "DELETE FROM upload_journal WHERE bot_slug = ?1 AND started_at < ?2",
                )?
                .execute(params![bot, before])?;
            Ok(Ok(n as u64))
        })
        .await
    }
}
