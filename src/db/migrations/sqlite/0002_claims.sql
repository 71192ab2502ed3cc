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
