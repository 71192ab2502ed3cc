-- Claims name their bots and take from three lists per bot (see PriorityPolicy): one index
-- per list, each led by the bot, so that every branch of a claim is an index range scan
-- however large or old the backlog.
DROP INDEX {schema}.ix_media_cache_rank;
DROP INDEX {schema}.ix_media_cache_age;
CREATE INDEX ix_media_cache_demanded ON {schema}.media_cache (bot_slug, priority, id)
    WHERE job_state = 'queued' AND demand;
CREATE INDEX ix_media_cache_aged ON {schema}.media_cache (bot_slug, enqueued_at, id)
    WHERE job_state = 'queued' AND NOT demand;
CREATE INDEX ix_media_cache_fresh ON {schema}.media_cache (bot_slug, priority, id)
    WHERE job_state = 'queued' AND NOT demand;

-- A push merged into a claimed job: its completion queues it again.
ALTER TABLE {schema}.media_cache ADD COLUMN rerun BOOLEAN NOT NULL DEFAULT false;

-- Telegram's refusals of a media's file_id, kept with or without a job until cleared.
CREATE TABLE {schema}.media_rejections (
    bot_slug TEXT    NOT NULL,
    sha256   BYTEA   NOT NULL,
    kind     TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (bot_slug, sha256, kind)
);
