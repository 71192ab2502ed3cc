//! Settings, validation and connecting.

use std::str::FromStr;

use super::*;

/// Opening a connection fails after this long by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A statement is cancelled after this long by default.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`PostgresStore`].
#[must_use]
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    pool_size: usize,
    policy: PriorityPolicy,
    poll_interval: Duration,
    synchronous_commit: bool,
    clock: QueueClock,
    depth_ttl: Duration,
    connect_timeout: Duration,
    statement_timeout: Duration,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &"******")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("policy", &self.policy)
            .field("poll_interval", &self.poll_interval)
            .field("synchronous_commit", &self.synchronous_commit)
            .field("clock", &self.clock)
            .field("depth_ttl", &self.depth_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the tables (default `prewarm`): lowercase ASCII letters, digits and
    /// `_`, not starting with a digit, at most 50 characters. Several stores in one database
    /// stay apart by schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections held at once (default 16; at least 1). One more is held to listen.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The order jobs are claimed in (default: [`PriorityPolicy::default`]). Every instance
    /// sharing a schema must use the same policy.
    pub fn with_policy(mut self, policy: PriorityPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often the notifier is raised even when no notification came (default 1 s): the
    /// bound on how late an engine hears of work should a notification be lost (the
    /// listening connection dropped and reconnected).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long opening a connection may take (default 10 s; zero waits as long as the
    /// operating system does). A store whose database is unreachable fails within it instead
    /// of hanging.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// PostgreSQL's `statement_timeout` on the store's pooled connections (default 30 s; zero
    /// for none): a statement stuck behind a lock fails, retryable, instead of holding a
    /// connection and a worker. Migrations are not bound by it (they wait for each other).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long an answer of [`depth`](PriorityQueue::depth) is reused (default 1 s; zero
    /// counts on every call). Metrics scrapes and dashboards polling it then cost one count per
    /// interval per instance, whatever their rate; each count reads the jobs' partial indexes,
    /// never the whole table.
    pub fn with_depth_ttl(mut self, ttl: Duration) -> Self {
        self.depth_ttl = ttl;
        self
    }

    /// Which clock leases and aging follow (default [`QueueClock::Database`]).
    pub fn with_clock(mut self, clock: QueueClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether each write waits for PostgreSQL to flush it to disk (default `true`).
    ///
    /// `false` sets `synchronous_commit = off` on the store's connections: writes return
    /// before the flush, several times faster under load. An engine process crashing still
    /// loses nothing; a crash of the *PostgreSQL server* (or its machine) may lose the writes
    /// of its last fraction of a second (at most three `wal_writer_delay`s, 600 ms by
    /// default): a job pushed then may vanish (the media is warmed again when next sent) and
    /// a finished job may come back (it finds its file_id cached and completes without an
    /// upload, unless that write was lost too). The database never becomes inconsistent.
    pub fn with_synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }

    /// Connects, runs the migrations the schema lacks (under an advisory lock, so instances
    /// starting together do not race) and starts listening for other instances' pushes.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or schema name, a pool size of 0, or a schema
    /// written by a newer prewarm; [`Error::Backend`] when the database cannot be reached.
    pub async fn connect(self) -> Result<PostgresStore> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| Error::Config {
                message: format!(
                    "the PostgreSQL URL is malformed ({e}): expected \
                     postgres://user[:password]@host[:port]/database"
                ),
            })?;
        if !self.connect_timeout.is_zero() {
            config.connect_timeout(self.connect_timeout);
        }
        validate_schema(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::Config {
                message: "the PostgreSQL pool size is 0, expected at least 1".to_owned(),
            });
        }
        if self.poll_interval.is_zero() {
            return Err(Error::Config {
                message: "the PostgreSQL poll interval is zero, expected at least 1 ms".to_owned(),
            });
        }
        let db_now = migrate(&config, &self.schema).await?;
        let clock = Clock {
            mode: self.clock,
            base: std::sync::Mutex::new((db_now, std::time::Instant::now())),
        };

        let mut pooled = config.clone();
        let mut options = Vec::new();
        if !self.synchronous_commit {
            options.push("-c synchronous_commit=off".to_owned());
        }
        if !self.statement_timeout.is_zero() {
            options.push(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        }
        if !options.is_empty() {
            pooled.options(options.join(" "));
        }
        let manager = Manager::from_config(
            pooled,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .build()
            .map_err(|e| Error::Config {
                message: format!("building the PostgreSQL pool: {e}"),
            })?;
        let sql = Sql::new(&self.schema);
        let notify = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            config,
            sql.channel.clone(),
            notify.clone(),
            self.poll_interval,
        ))
        .abort_handle();
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let (pushes, push_rx) = mpsc::unbounded_channel();
            let (completes, complete_rx) = mpsc::unbounded_channel();
            tokio::spawn(batcher(weak.clone(), push_rx, |store, batch| {
                Box::pin(async move { store.push_batch(batch).await })
            }));
            tokio::spawn(batcher(weak.clone(), complete_rx, |store, batch| {
                Box::pin(async move { store.complete_batch(batch).await })
            }));
            Shared {
                clock,
                depth_cache: tokio::sync::Mutex::new(None),
                depth_ttl: self.depth_ttl,
                turn: AtomicU64::new(0),
                pushes,
                completes,
                pool,
                sql,
                policy: self.policy,
                notify,
                schema: self.schema,
                listener,
            }
        });
        Ok(PostgresStore { shared })
    }
}

/// A whole number from the environment within `min..=max`, naming the variable when not.
fn number(env: crate::env::Lookup<'_>, name: &str, min: u64, max: u64) -> Result<Option<u64>> {
    let Some(raw) = env(name)? else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(Error::Config {
            message: format!("{name} is {raw:?}: expected a whole number from {min} to {max}"),
        }),
    }
}

pub(super) fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 50
        && !schema.as_bytes()[0].is_ascii_digit()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            message: format!(
                "the PostgreSQL schema name {schema:?} is invalid: use 1 to 50 lowercase ASCII \
                 letters, digits and '_', not starting with a digit"
            ),
        })
    }
}

impl PostgresStore {
    /// A builder for the database at `url` (`postgres://user[:password]@host[:port]/db`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "prewarm".to_owned(),
            pool_size: 16,
            policy: PriorityPolicy::default(),
            poll_interval: Duration::from_secs(1),
            synchronous_commit: true,
            clock: QueueClock::Database,
            depth_ttl: Duration::from_secs(1),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }

    /// A builder for the database at `url`, configured from the environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `PREWARM_DB_SCHEMA` | the schema holding the tables (see [`PostgresStoreBuilder::with_schema`]): bots that must not share a queue use different schemas | `prewarm` |
    /// | `PREWARM_DB_POOL_SIZE` | most connections held at once, 1 to 1024 | 16 |
    /// | `PREWARM_DB_CONNECT_TIMEOUT_MS` | how long opening a connection may take (0: no limit) | 10000 |
    /// | `PREWARM_DB_STATEMENT_TIMEOUT_MS` | PostgreSQL's `statement_timeout` (0: none) | 30000 |
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when one is malformed.
    pub fn builder_from_env(url: impl Into<String>) -> Result<PostgresStoreBuilder> {
        Self::builder_from(url, &crate::env::process)
    }

    pub(crate) fn builder_from(
        url: impl Into<String>,
        env: crate::env::Lookup<'_>,
    ) -> Result<PostgresStoreBuilder> {
        let mut b = Self::builder(url);
        if let Some(schema) = env("PREWARM_DB_SCHEMA")? {
            validate_schema(&schema).map_err(|e| Error::Config {
                message: format!("PREWARM_DB_SCHEMA: {e}"),
            })?;
            b = b.with_schema(schema);
        }
        if let Some(size) = number(env, "PREWARM_DB_POOL_SIZE", 1, 1024)? {
            b = b.with_pool_size(size as usize);
        }
        if let Some(ms) = number(env, "PREWARM_DB_CONNECT_TIMEOUT_MS", 0, 3_600_000)? {
            b = b.with_connect_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = number(env, "PREWARM_DB_STATEMENT_TIMEOUT_MS", 0, 86_400_000)? {
            b = b.with_statement_timeout(Duration::from_millis(ms));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::from_pairs;

    #[test]
    fn settings_come_from_the_environment_with_defaults() {
        let b = PostgresStore::builder_from("postgres://h/db", &from_pairs(&[])).expect("defaults");
        assert_eq!(
            (
                b.schema.as_str(),
                b.pool_size,
                b.connect_timeout,
                b.statement_timeout
            ),
            (
                "prewarm",
                16,
                Duration::from_secs(10),
                Duration::from_secs(30)
            )
        );
        let env = from_pairs(&[
            ("PREWARM_DB_SCHEMA", "bot_two"),
            ("PREWARM_DB_POOL_SIZE", "4"),
            ("PREWARM_DB_CONNECT_TIMEOUT_MS", "1500"),
            ("PREWARM_DB_STATEMENT_TIMEOUT_MS", "0"),
        ]);
        let b = PostgresStore::builder_from("postgres://h/db", &env).expect("set");
        assert_eq!(
            (
                b.schema.as_str(),
                b.pool_size,
                b.connect_timeout,
                b.statement_timeout
            ),
            ("bot_two", 4, Duration::from_millis(1500), Duration::ZERO)
        );
        for (name, value, says) in [
            ("PREWARM_DB_SCHEMA", "Bot-Two", "lowercase"),
            ("PREWARM_DB_POOL_SIZE", "0", "from 1 to 1024"),
            ("PREWARM_DB_CONNECT_TIMEOUT_MS", "soon", "whole number"),
        ] {
            let err = PostgresStore::builder_from("postgres://h/db", &from_pairs(&[(name, value)]))
                .expect_err(name);
            let text = err.to_string();
            assert!(matches!(err, Error::Config { .. }), "{text}");
            assert!(text.contains(name) && text.contains(says), "{text}");
        }
    }
}
