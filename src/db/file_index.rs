//! [`FileIndex`]: (path, size, modification time) to content hash, in the embedded database,
//! so that a rerun over a folder costs a `stat` per file rather than a read and a hash.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};
use crate::media::{MediaKind, Sha256};

/// This table's migrations, recorded in `file_index_migrations` (apart from the cache and
/// queue's `schema_migrations`, so that each part of the file evolves on its own).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "file_index",
    "CREATE TABLE file_index (
         path        BLOB    PRIMARY KEY,
         size        INTEGER NOT NULL,
         modified_ns INTEGER NOT NULL,
         sha256      BLOB    NOT NULL,
         kind        TEXT    NOT NULL,
         indexed_at  INTEGER NOT NULL DEFAULT (unixepoch())
     ) WITHOUT ROWID;",
)];

/// What the index keys a file by: its path and what `stat` tells of its content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileStat {
    /// The file's path, as the caller names it (make it absolute to share one index
    /// between working folders).
    pub path: PathBuf,
    /// Its length in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the Unix epoch.
    pub modified_ns: i64,
}

impl FileStat {
    /// The stat of `path` from its metadata.
    pub fn new(path: impl Into<PathBuf>, meta: &std::fs::Metadata) -> Self {
        let modified_ns = meta
            .modified()
            .ok()
            .map_or(0, |t| match t.duration_since(UNIX_EPOCH) {
                Ok(d) => nanos(d),
                Err(e) => -nanos(e.duration()),
            });
        Self {
            path: path.into(),
            size: meta.len(),
            modified_ns,
        }
    }

    /// The modification time as a [`SystemTime`].
    pub fn modified(&self) -> SystemTime {
        let d = Duration::from_nanos(self.modified_ns.unsigned_abs());
        if self.modified_ns >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What the index knows of a file whose path, size and modification time all match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedFile {
    /// The SHA-256 of the file's bytes when it was indexed.
    pub sha256: Sha256,
    /// The kind detected from its bytes then.
    pub kind: MediaKind,
}

/// An index of files already hashed: (path, size, modification time) to the content's
/// SHA-256 and kind, in the table `file_index` of an SQLite file (the embedded database
/// beside the cache and queue, or a file of its own).
///
/// A file whose size or modification time differs from its entry is a changed file: the
/// lookup misses, and the caller hashes it again and records it. What a lookup trusts is
/// what `rsync` and `make` trust: a writer that keeps a file's size and restores its
/// modification time goes unseen (rehash to be sure).
///
/// The index has its own connection to the file (WAL mode lets it share the file with a
/// `SqliteStore`), used from the blocking thread pool.
///
/// # Clone
/// Clones share one connection.
///
/// ```no_run
/// use prewarm::db::{FileIndex, FileStat};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> prewarm::Result<()> {
/// let index = FileIndex::open(".prewarm/warm_dir.sqlite").await?;
/// let meta = std::fs::metadata("photos/cat.jpg").unwrap();
/// let stat = FileStat::new("photos/cat.jpg", &meta);
/// match index.lookup(vec![stat]).await?.pop().flatten() {
///     Some(known) => println!("unchanged, sha256 {}", known.sha256),
///     None => println!("new or changed: hash it, then record it"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileIndex {
    // A std lock: held only inside `spawn_blocking` closures, never across an `.await`.
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl fmt::Debug for FileIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileIndex {
    /// Opens (creating if needed) the SQLite file at `path` and its `file_index` table.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be opened or migrated; [`Error::Config`] when
    /// its index was written by a newer prewarm.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let p = path.clone();
        let conn = blocking(move || {
            let mut conn = Connection::open(&p)
                .map_err(|e| sqlite_err(&format!("opening the index file {}", p.display()), e))?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| sqlite_err("setting the busy timeout", e))?;
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                .map_err(|e| sqlite_err("switching the index file to WAL", e))?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// For each file, its entry when path, size and modification time all match, in order.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database cannot be read, or holds a row prewarm did not
    /// write.
    pub async fn lookup(&self, files: Vec<FileStat>) -> Result<Vec<Option<IndexedFile>>> {
        let conn = self.conn.clone();
        blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sha256, kind FROM file_index
                     WHERE path = ?1 AND size = ?2 AND modified_ns = ?3",
                )
                .map_err(|e| sqlite_err("preparing an index lookup", e))?;
            files
                .iter()
                .map(|f| {
                    let row: Option<(Vec<u8>, String)> = stmt
                        .query_row(
                            params![path_bytes(&f.path), size(f.size), f.modified_ns],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(|e| sqlite_err("reading the file index", e))?;
                    row.map(|(sha, kind)| entry(&sha, &kind)).transpose()
                })
                .collect()
        })
        .await
    }

    /// Records each file's hash and kind (replacing what was recorded for its path), in one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database cannot be written.
    pub async fn record(&self, entries: Vec<(FileStat, IndexedFile)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let conn = self.conn.clone();
        blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sqlite_err("locking the file index", e))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO file_index (path, size, modified_ns, sha256, kind)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                             modified_ns = excluded.modified_ns, sha256 = excluded.sha256,
                             kind = excluded.kind, indexed_at = unixepoch()",
                    )
                    .map_err(|e| sqlite_err("preparing an index write", e))?;
                for (f, known) in &entries {
                    stmt.execute(params![
                        path_bytes(&f.path),
                        size(f.size),
                        f.modified_ns,
                        known.sha256.as_bytes().as_slice(),
                        known.kind.as_str(),
                    ])
                    .map_err(|e| sqlite_err("writing the file index", e))?;
                }
            }
            tx.commit()
                .map_err(|e| sqlite_err("committing the file index", e))
        })
        .await
    }

    /// Entries in the index.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database cannot be read.
    pub async fn len(&self) -> Result<u64> {
        let conn = self.conn.clone();
        blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row("SELECT count(*) FROM file_index", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| sqlite_err("counting the file index", e))
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE: two processes opening one new file migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_err("locking the database to migrate the file index", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS file_index_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at INTEGER NOT NULL DEFAULT (unixepoch()))",
    )
    .map_err(|e| sqlite_err("creating file_index_migrations", e))?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM file_index_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sqlite_err("reading file_index_migrations", e))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(Error::Config {
            message: format!(
                "the file index is at schema version {current}, newer than this prewarm knows \
                 ({latest}): upgrade prewarm or use another file"
            ),
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql).map_err(|e| {
            sqlite_err(
                &format!("applying file index migration {version} ({name})"),
                e,
            )
        })?;
        tx.execute(
            "INSERT INTO file_index_migrations (version, name) VALUES (?1, ?2)",
            params![version, name],
        )
        .map_err(|e| sqlite_err("recording a file index migration", e))?;
    }
    tx.commit()
        .map_err(|e| sqlite_err("committing the file index migrations", e))
}

/// The path's bytes as the OS gives them: file names need not be UTF-8.
fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

fn size(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn entry(sha: &[u8], kind: &str) -> Result<IndexedFile> {
    let corrupt = |what: &str| Error::Backend {
        backend: "sqlite",
        message: format!(
            "the file_index table holds a row prewarm did not write: {what}; delete the row or \
             rerun with --rehash"
        ),
        retryable: false,
    };
    let sha: [u8; 32] = sha
        .try_into()
        .map_err(|_| corrupt("a sha256 is not 32 bytes"))?;
    Ok(IndexedFile {
        sha256: Sha256::from_bytes(sha),
        kind: kind
            .parse()
            .map_err(|_| corrupt("a kind is not a media kind"))?,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend {
            backend: "sqlite",
            message: format!("a file index call panicked: {e}"),
            retryable: false,
        })?
}

fn sqlite_err(context: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::Backend {
        backend: "sqlite",
        message: format!("{context}: {e}"),
        retryable: busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &str, size: u64, modified_ns: i64) -> FileStat {
        FileStat {
            path: PathBuf::from(path),
            size,
            modified_ns,
        }
    }

    #[tokio::test]
    async fn a_lookup_matches_path_size_and_mtime_only() {
        let dir = tempfile::tempdir().unwrap();
        let index = FileIndex::open(dir.path().join("i.sqlite")).await.unwrap();
        let known = IndexedFile {
            sha256: Sha256::of(b"x"),
            kind: MediaKind::Photo,
        };
        index
            .record(vec![(stat("/a/p.jpg", 10, 1_000), known)])
            .await
            .unwrap();
        let found = index
            .lookup(vec![
                stat("/a/p.jpg", 10, 1_000),
                stat("/a/p.jpg", 11, 1_000),
                stat("/a/p.jpg", 10, 1_001),
                stat("/a/q.jpg", 10, 1_000),
            ])
            .await
            .unwrap();
        assert_eq!(found, vec![Some(known), None, None, None]);

        // A changed file recorded again replaces its entry; a reopened index keeps it.
        let changed = IndexedFile {
            sha256: Sha256::of(b"y"),
            kind: MediaKind::Document,
        };
        index
            .record(vec![(stat("/a/p.jpg", 12, 2_000), changed)])
            .await
            .unwrap();
        drop(index);
        let index = FileIndex::open(dir.path().join("i.sqlite")).await.unwrap();
        assert_eq!(index.len().await.unwrap(), 1);
        let found = index
            .lookup(vec![
                stat("/a/p.jpg", 10, 1_000),
                stat("/a/p.jpg", 12, 2_000),
            ])
            .await
            .unwrap();
        assert_eq!(found, vec![None, Some(changed)]);
    }

    #[test]
    fn a_stat_keeps_the_modification_time_to_the_nanosecond() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let when = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let s = FileStat::new(&path, &std::fs::metadata(&path).unwrap());
        assert_eq!(s.size, 3);
        assert_eq!(s.modified_ns, 1_700_000_000_123_456_789);
        assert_eq!(s.modified(), when);
    }
}
