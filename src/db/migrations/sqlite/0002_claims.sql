-- Claims name their bots and take from three lists per bot (see PriorityPolicy): one index
-- per list, each led by the bot, so that every branch of a claim is an index range scan.
DROP INDEX ix_media_cache_rank;
DROP INDEX ix_media_cache_age;
CREATE INDEX ix_media_cache_demanded ON media_cache (bot_slug, priority, id)
    WHERE job_state = 'queued' AND demand = 1;
CREATE INDEX ix_media_cache_aged ON media_cache (bot_slug, enqueued_at, id)
    WHERE job_state = 'queued' AND demand = 0;
CREATE INDEX ix_media_cache_fresh ON media_cache (bot_slug, priority, id)
    WHERE job_state = 'queued' AND demand = 0;

-- A push merged into a claimed job: its completion queues it again.
ALTER TABLE media_cache ADD COLUMN rerun INTEGER NOT NULL DEFAULT 0;

-- Telegram's refusals of a media's file_id, kept with or without a job until cleared.
CREATE TABLE media_rejections (
    bot_slug TEXT    NOT NULL,
    sha256   BLOB    NOT NULL,
    kind     TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (bot_slug, sha256, kind)
) WITHOUT ROWID;
