-- {schema} is replaced by the configured schema name (validated: [a-z_][a-z0-9_]*).

-- What each stored media is: its content address and size (shared by bots and kinds).
CREATE TABLE {schema}.media_store (
    sha256      BYTEA PRIMARY KEY,
    object_key  TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per media (bot, sha256, kind): its cached file_id and its warm job.
CREATE TABLE {schema}.media_cache (
    id               BIGSERIAL PRIMARY KEY,
    bot_slug         TEXT  NOT NULL,
    sha256           BYTEA NOT NULL,
    kind             TEXT  NOT NULL,
    -- The cache: the file_id Telegram gave, NULL when none is cached.
    file_id          TEXT,
    status           TEXT GENERATED ALWAYS AS (
                         CASE WHEN file_id IS NOT NULL THEN 'ready'
                              WHEN job_state = 'dead' THEN 'failed'
                              ELSE 'warming' END) STORED,
    -- The queue: NULL when the media has no job.
    job_state        TEXT CHECK (job_state IN ('queued', 'delayed', 'claimed', 'dead')),
    enqueued_at      BIGINT,              -- unix ms, kept across retries (aging counts from it)
    retry_count      INTEGER NOT NULL DEFAULT 0,   -- failed attempts
    demand           BOOLEAN NOT NULL DEFAULT false,
    rank_plain       BIGINT,              -- PriorityPolicy::rank without / with demand
    rank_demanded    BIGINT,
    priority         BIGINT,              -- the rank in force: lower is claimed first
    next_retry_at    BIGINT,              -- unix ms: run-at of a delayed job
    lease_owner      TEXT,
    lease_expires_at BIGINT,              -- unix ms
    fencing_token    BIGINT NOT NULL DEFAULT 0,   -- claims so far: the lease's token
    last_error       TEXT,
    dead_seq         BIGINT,              -- order in which jobs died
    last_push        TEXT,                -- what the last push did (queued, merged, revived)
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (bot_slug, sha256, kind)
);
CREATE SEQUENCE {schema}.media_cache_dead_seq;

CREATE INDEX ix_media_cache_lookup ON {schema}.media_cache (bot_slug, sha256, kind, status)
    INCLUDE (file_id) WHERE status = 'ready';
CREATE INDEX ix_media_cache_rank ON {schema}.media_cache (priority, id) WHERE job_state = 'queued';
CREATE INDEX ix_media_cache_age ON {schema}.media_cache (enqueued_at, id) WHERE job_state = 'queued';
CREATE INDEX ix_media_cache_delayed ON {schema}.media_cache (next_retry_at) WHERE job_state = 'delayed';
CREATE INDEX ix_media_cache_leases ON {schema}.media_cache (lease_expires_at) WHERE job_state = 'claimed';
CREATE INDEX ix_media_cache_dead ON {schema}.media_cache (dead_seq) WHERE job_state = 'dead';
