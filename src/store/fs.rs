use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::TryStreamExt;
use tokio::io::AsyncWriteExt;

use super::{GetResult, MediaStore, ObjectMeta, PutOutcome, PutPayload, file_stream, verified};
use crate::error::{Error, Result};
use crate::media::ObjectKey;

/// The folder under the root where puts write before they publish.
const TMP_DIR: &str = ".prewarm-tmp";
/// The folder under the root holding each object's content type, at the object's key.
const TYPE_DIR: &str = ".prewarm-types";

/// A [`MediaStore`] in a local directory: the embedded default for one machine.
///
/// Each object is a file at `root/<key>`. A put writes a temporary file under
/// `root/.prewarm-tmp/`, syncs it, and publishes it with a hard link, which fails rather than
/// replace an existing object: readers never see a partial file, and a crash mid-put leaves
/// only a temporary file, removed on the next start. An object's content type, when the put
/// gave one, is a small file at the same key under `root/.prewarm-types/`, written before the
/// object is published. Keys are validated by [`ObjectKey`] (no `..`, no absolute paths) and
/// may not enter either folder, so no key reaches outside the root.
///
/// # Clone
/// Clones use the same directory.
///
/// ```no_run
/// use prewarm::store::FsStore;
///
/// # async fn demo() -> prewarm::Result<()> {
/// let store = FsStore::open("/var/lib/mybot/media").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes temporary files left by
    /// an interrupted put.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created or read.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let tmp = root.join(TMP_DIR);
        match tokio::fs::remove_dir_all(&tmp).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("clearing {}", tmp.display()), e)),
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        Ok(Self { root })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> Result<PathBuf> {
        let key_str = key.as_str();
        let first = key_str.split('/').next().unwrap_or("");
        if first == TMP_DIR || first == TYPE_DIR {
            return Err(Error::InvalidKey {
                key: key_str.to_owned(),
                reason: "enters one of the store's own folders (.prewarm-tmp, .prewarm-types)",
            });
        }
        Ok(under(&self.root, key))
    }

    fn type_path(&self, key: &ObjectKey) -> PathBuf {
        under(&self.root.join(TYPE_DIR), key)
    }

    /// The content type stored with `key`, if any.
    async fn content_type(&self, key: &ObjectKey) -> Result<Option<String>> {
        let path = self.type_path(key);
        match tokio::fs::read_to_string(&path).await {
            Ok(t) => Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn not_found(key: &ObjectKey) -> Error {
        Error::NotFound {
            what: format!("object {key}"),
        }
    }
}

#[async_trait]
impl MediaStore for FsStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
        let path = self.path(key)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let tmp = self.root.join(TMP_DIR).join(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ));
        if let Some(content_type) = payload.content_type() {
            // Before the object is visible, so that a visible object has its type. A crash
            // in between leaves a type file for no object, which the next put overwrites.
            let type_path = self.type_path(key);
            write_small(&type_path, content_type.as_bytes()).await?;
        }
        let written = write_file(&tmp, verified(payload)).await;
        let outcome = match written {
            Ok(()) => publish(&tmp, &path).await,
            Err(e) => Err(e),
        };
        // The temporary file is removed whatever happened; once linked, the object has its own
        // directory entry.
        let _ = tokio::fs::remove_file(&tmp).await;
        outcome
    }

    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Self::not_found(key)),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        let body = file_stream(file);
        Ok(GetResult {
            meta: ObjectMeta {
                key: key.clone(),
                size,
                content_type: self.content_type(key).await?,
            },
            body,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(ObjectMeta {
                key: key.clone(),
                size: m.len(),
                content_type: self.content_type(key).await?,
            }),
            Ok(_) => Err(Self::not_found(key)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Self::not_found(key)),
            Err(e) => Err(Error::io(
                format!("reading metadata of {}", path.display()),
                e,
            )),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path(key)?;
        remove(&path).await?;
        remove(&self.type_path(key)).await
    }

    async fn url(
        &self,
        _key: &ObjectKey,
        _expires_in: Duration,
        _content_type: Option<&str>,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// `root/<key>`, one path segment per key segment.
fn under(root: &Path, key: &ObjectKey) -> PathBuf {
    key.as_str()
        .split('/')
        .fold(root.to_path_buf(), |p, seg| p.join(seg))
}

async fn remove(path: &Path) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Writes a small file whole, creating its folder.
async fn write_small(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    tokio::fs::write(path, bytes)
        .await
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

async fn write_file(tmp: &Path, mut body: super::ByteStream) -> Result<()> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    while let Some(chunk) = body.try_next().await? {
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    }
    // Durable before it becomes visible: a crash after the link must not expose a short file.
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))
}

/// Links the finished temporary file at its key, refusing to replace an existing object.
async fn publish(tmp: &Path, path: &Path) -> Result<PutOutcome> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    match tokio::fs::hard_link(tmp, path).await {
        Ok(()) => Ok(PutOutcome::Created),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
        Err(e) => Err(Error::io(format!("publishing {}", path.display()), e)),
    }
}
