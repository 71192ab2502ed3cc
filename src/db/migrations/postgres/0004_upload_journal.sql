-- The journal of warm-up sends (UploadJournal): one row per media, written before its send
-- leaves and completed with the message Telegram answered, so that a process killed in
-- between leaves its successor the chat to look in.
CREATE TABLE {schema}.upload_journal (
    bot_slug   TEXT   NOT NULL,
    sha256     BYTEA  NOT NULL,
    kind       TEXT   NOT NULL,
    chat       BIGINT NOT NULL,
    after_id   BIGINT,              -- the message id the send comes after, if any was seen
    started_at BIGINT NOT NULL,     -- unix ms
    message_id BIGINT,              -- once delivered: the message and its file_id
    file_id    TEXT,
    PRIMARY KEY (bot_slug, sha256, kind)
);
-- `entries(bot, since)`, `pending(bot)` and `prune` read a bot's rows by start time.
CREATE INDEX ix_upload_journal_started ON {schema}.upload_journal (bot_slug, started_at);
-- The highest id of a bot's messages in each chat (UploadJournal::high_water), kept apart
-- from the rows above so that no `begin`, `forget` or prune lowers it: `deliver` and `raise`
-- only ever raise it.
CREATE TABLE {schema}.upload_journal_chats (
    bot_slug   TEXT   NOT NULL,
    chat       BIGINT NOT NULL,
    high_water BIGINT NOT NULL,
    PRIMARY KEY (bot_slug, chat)
);
