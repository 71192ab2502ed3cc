-- One row per claim (an upload attempt started), kept about a minute: `prewarm status`
-- counts each bot's uploads in the last minute from it.
CREATE TABLE claim_log (
    bot_slug   TEXT    NOT NULL,
    claimed_at INTEGER NOT NULL
);
CREATE INDEX ix_claim_log_at ON claim_log (claimed_at);
