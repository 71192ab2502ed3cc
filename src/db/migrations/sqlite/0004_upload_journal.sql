-- The journal of warm-up sends (UploadJournal): one row per media, written before its send
-- leaves and completed with the message Telegram answered, so that a process killed in
-- between leaves its successor the chat to look in.
CREATE TABLE upload_journal (
    bot_slug   TEXT    NOT NULL,
    sha256     BLOB    NOT NULL,
    kind       TEXT    NOT NULL,
    chat       INTEGER NOT NULL,
    after_id   INTEGER,             -- the message id the send comes after, if any was seen
    started_at INTEGER NOT NULL,    -- unix ms
    message_id INTEGER,             -- once delivered: the message and its file_id
    file_id    TEXT,
    PRIMARY KEY (bot_slug, sha256, kind)
) WITHOUT ROWID;
-- `entries(bot, since)`, `pending(bot)` and `prune` read a bot's rows by start time.
CREATE INDEX ix_upload_journal_started ON upload_journal (bot_slug, started_at);
-- The highest id of a bot's messages in each chat (UploadJournal::high_water), kept apart
-- from the rows above so that no `begin`, `forget` or prune lowers it: `deliver` and `raise`
-- only ever raise it.
CREATE TABLE upload_journal_chats (
    bot_slug   TEXT    NOT NULL,
    chat       INTEGER NOT NULL,
    high_water INTEGER NOT NULL,
    PRIMARY KEY (bot_slug, chat)
) WITHOUT ROWID;
