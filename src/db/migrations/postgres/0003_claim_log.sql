-- One row per claim (an upload attempt started), kept about a minute: `prewarm status`
-- counts each bot's uploads in the last minute from it.
CREATE TABLE {schema}.claim_log (
    bot_slug   TEXT   NOT NULL,
    claimed_at BIGINT NOT NULL    -- unix ms
);
CREATE INDEX ix_claim_log_at ON {schema}.claim_log (claimed_at);
