-- One row per media (bot, sha256, kind): its cached file_id and its warm job.
CREATE TABLE media_cache (
    id             INTEGER PRIMARY KEY,
    bot_slug       TEXT    NOT NULL,
    sha256         BLOB    NOT NULL,
    kind           TEXT    NOT NULL,
    -- The cache: the file_id Telegram gave, NULL when none is cached.
    file_id        TEXT,
    status         TEXT GENERATED ALWAYS AS (
                       CASE WHEN file_id IS NOT NULL THEN 'ready'
                            WHEN job_state = 'dead' THEN 'failed'
                            ELSE 'warming' END) STORED,
    -- The queue: NULL when the media has no job.
    job_state      TEXT CHECK (job_state IN ('queued', 'delayed', 'claimed', 'dead')),
    size           INTEGER NOT NULL DEFAULT 0,
    enqueued_at    INTEGER,
    retry_count    INTEGER NOT NULL DEFAULT 0,
    demand         INTEGER NOT NULL DEFAULT 0,
    rank_plain     INTEGER,
    rank_demanded  INTEGER,
    priority       INTEGER,
    next_retry_at  INTEGER,
    lease_owner    TEXT,
    lease_expires_at INTEGER,
    fencing_token  INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    dead_seq       INTEGER,
    last_push      TEXT,
    UNIQUE (bot_slug, sha256, kind)
);
CREATE INDEX ix_media_cache_lookup ON media_cache (bot_slug, sha256, kind, status, file_id)
    WHERE status = 'ready';
CREATE INDEX ix_media_cache_rank ON media_cache (priority, id) WHERE job_state = 'queued';
CREATE INDEX ix_media_cache_age ON media_cache (enqueued_at, id) WHERE job_state = 'queued';
CREATE INDEX ix_media_cache_delayed ON media_cache (next_retry_at) WHERE job_state = 'delayed';
CREATE INDEX ix_media_cache_leases ON media_cache (lease_expires_at) WHERE job_state = 'claimed';
CREATE INDEX ix_media_cache_dead ON media_cache (dead_seq) WHERE job_state = 'dead';
