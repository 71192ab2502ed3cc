//! The durable [`UploadJournal`]: the tables `upload_journal` (one row per media) and
//! `upload_journal_chats` (each chat's high water), beside the queue.
//!
//! Each call is one statement in autocommit: `begin` and `deliver` answer once it is
//! committed, and `deliver` writes both tables in that one statement.

use super::*;
use crate::db::{JournalRow, key_in};
use crate::upload::{Delivered, JournalEntry, UploadJournal};

/// The columns of one entry, read by `journal_row`.
const COLUMNS: &str = "bot_slug, sha256, kind, chat, after_id, started_at, message_id, file_id";

fn journal_row(r: &Row) -> Result<JournalEntry> {
    JournalRow {
        key: key_in("upload_journal", r.get(0), r.get(1), r.get(2))?,
        chat: r.get(3),
        after: r.get(4),
        started_at: r.get(5),
        message_id: r.get(6),
        file_id: r.get(7),
    }
    .entry()
}

impl PostgresStore {
    /// The entries `sql` selects with `args`.
    async fn journal_entries(
        &self,
        what: &str,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<JournalEntry>> {
        let s = self.schema();
        self.query(
            what,
            &format!("SELECT {COLUMNS} FROM {s}.upload_journal WHERE {sql} ORDER BY started_at"),
            args,
        )
        .await?
        .iter()
        .map(journal_row)
        .collect()
    }
}

#[async_trait]
impl UploadJournal for PostgresStore {
    async fn begin(&self, entry: &JournalEntry) -> Result<()> {
        let (bot, sha, kind) = key_args(&entry.media);
        let s = self.schema();
        self.execute(
            "journaling a send",
            &format!(
                "INSERT INTO {s}.upload_journal \
                   (bot_slug, sha256, kind, chat, after_id, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bot_slug, sha256, kind) DO UPDATE \
                 SET chat = EXCLUDED.chat, after_id = EXCLUDED.after_id, \
                   started_at = EXCLUDED.started_at, message_id = NULL, file_id = NULL"
            ),
            &[
                &bot,
                &sha,
                &kind,
                &entry.chat,
                &entry.after,
                &ms(entry.started_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn deliver(&self, media: &MediaKey, delivered: &Delivered) -> Result<()> {
        let (bot, sha, kind) = key_args(media);
        let s = self.schema();
        // One statement, so one commit. Two processes raising the same chat at once meet on
        // its row: the second's ON CONFLICT waits for the first's, then compares with what
        // the first wrote.
        self.execute(
            "journaling a delivery",
            &format!(
                "WITH d AS ( \
                   UPDATE {s}.upload_journal SET message_id = $4, file_id = $5 \
                   WHERE bot_slug = $1 AND sha256 = $2 AND kind = $3 RETURNING chat) \
                 INSERT INTO {s}.upload_journal_chats AS h (bot_slug, chat, high_water) \
                 SELECT $1, chat, $4 FROM d ON CONFLICT (bot_slug, chat) DO UPDATE \
                 SET high_water = GREATEST(h.high_water, EXCLUDED.high_water)"
            ),
            &[
                &bot,
                &sha,
                &kind,
                &delivered.message_id,
                &delivered.file_id.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn raise(&self, bot: &BotId, chat: i64, message_id: i64) -> Result<()> {
        let s = self.schema();
        self.execute(
            "raising the journal's high water",
            &format!(
                "INSERT INTO {s}.upload_journal_chats AS h (bot_slug, chat, high_water) \
                 VALUES ($1, $2, $3) ON CONFLICT (bot_slug, chat) DO UPDATE \
                 SET high_water = GREATEST(h.high_water, EXCLUDED.high_water)"
            ),
            &[&bot.as_str(), &chat, &message_id],
        )
        .await?;
        Ok(())
    }

    async fn forget(&self, media: &MediaKey, file_id: Option<&FileId>) -> Result<()> {
        let (bot, sha, kind) = key_args(media);
        let s = self.schema();
        // With no file_id, `$4 IS NULL` drops the row whatever it holds; with one, only a row
        // delivered with it (a pending row's NULL file_id matches nothing). A `begin` that
        // replaced the row first leaves it pending, so it survives.
        self.execute(
            "forgetting a journaled send",
            &format!(
                "DELETE FROM {s}.upload_journal WHERE bot_slug = $1 AND sha256 = $2 AND kind = $3 \
                 AND ($4::TEXT IS NULL OR file_id = $4)"
            ),
            &[&bot, &sha, &kind, &file_id.map(FileId::as_str)],
        )
        .await?;
        Ok(())
    }

    async fn entry(&self, media: &MediaKey) -> Result<Option<JournalEntry>> {
        let (bot, sha, kind) = key_args(media);
        let mut entries = self
            .journal_entries(
                "reading a journaled send",
                "bot_slug = $1 AND sha256 = $2 AND kind = $3",
                &[&bot, &sha, &kind],
            )
            .await?;
        Ok(entries.pop())
    }

    async fn entries(&self, bot: &BotId, since: Timestamp) -> Result<Vec<JournalEntry>> {
        self.journal_entries(
            "listing journaled sends",
            "bot_slug = $1 AND started_at >= $2",
            &[&bot.as_str(), &ms(since)],
        )
        .await
    }

    async fn pending(&self, bot: &BotId) -> Result<Vec<JournalEntry>> {
        self.journal_entries(
            "listing pending sends",
            "bot_slug = $1 AND message_id IS NULL",
            &[&bot.as_str()],
        )
        .await
    }

    async fn high_water(&self, bot: &BotId) -> Result<Vec<(i64, i64)>> {
        let s = self.schema();
        let rows = self
            .query(
                "reading the journal's high water",
                &format!(
                    "SELECT chat, high_water FROM {s}.upload_journal_chats WHERE bot_slug = $1"
                ),
                &[&bot.as_str()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn prune(&self, bot: &BotId, before: Timestamp) -> Result<u64> {
        let s = self.schema();
        self.execute(
            "pruning the journal",
            &format!("DELETE FROM {s}.upload_journal WHERE bot_slug = $1 AND started_at < $2"),
            &[&bot.as_str(), &ms(before)],
        )
        .await
    }
}
