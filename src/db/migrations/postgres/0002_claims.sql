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
