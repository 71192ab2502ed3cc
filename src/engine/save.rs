//! Saving media: hashed once, off the runtime's threads, stored, queued.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::PrewarmEngine;
use crate::error::{Error, Result};
use crate::media::format::OCTET_STREAM;
use crate::media::{BotId, Job, MediaKey, MediaKind, Sha256, Sha256Hasher};
use crate::store::{PutOutcome, PutPayload};

/// Hashing a large media takes milliseconds: do it off the async workers.
const HASH_INLINE_MAX: usize = 256 * 1024;

impl PrewarmEngine {
    /// Saves `bytes` as a media of `kind` for `bot`: stores them content-addressed (once, however
    /// many times they are saved) and queues a warm unless the file_id is already cached.
    /// Answers the media's key.
    ///
    /// # Errors
    /// [`Error::EmptyMedia`] and [`Error::TooLarge`] before anything is stored;
    /// [`Error::UnknownBot`] when no uploader serves `bot`; the store's or queue's error.
    pub async fn save(&self, bot: &BotId, bytes: Bytes, kind: MediaKind) -> Result<MediaKey> {
        // Checked before the hash: an oversized media costs nothing.
        self.inner.config.limits.check(kind, bytes.len() as u64)?;
        self.uploader(bot)?;
        let sha = sha256_of(&bytes).await?;
        Ok(self.save_hashed(bot, bytes, kind, sha).await?.key)
    }

    /// [`save`](Self::save) for bytes the caller hashed already (the bulk path hashes first
    /// to tell a warm media apart): `sha` must be the SHA-256 of `bytes`, computed from these
    /// very bytes, or they are stored under another media's address. Answers whether the
    /// media was warm already (then nothing was stored or queued).
    pub(crate) async fn save_hashed(
        &self,
        bot: &BotId,
        bytes: Bytes,
        kind: MediaKind,
        sha: Sha256,
    ) -> Result<SaveOutcome> {
        let inner = &self.inner;
        inner.config.limits.check(kind, bytes.len() as u64)?;
        self.uploader(bot)?;
        let key = MediaKey::new(bot.clone(), sha, kind);
        if inner.cache.get(&key).await?.is_some() {
            return Ok(SaveOutcome::warm(key));
        }
        let body = futures::stream::once({
            let bytes = bytes.clone();
            async move { Ok(bytes) }
        })
        .boxed();
        let size = bytes.len() as u64;
        let payload = PutPayload::from_hashed_stream(size, sha, body);
        self.store_and_enqueue(&key, payload, Some(bytes)).await?;
        Ok(SaveOutcome::saved(key))
    }

    /// Saves a media from a stream, without holding it in memory: the bytes are spooled to a
    /// temporary file while hashed, checked against the kind's limit as they arrive, then
    /// stored. Otherwise as [`save`](Self::save).
    ///
    /// # Errors
    /// As [`save`](Self::save), plus [`Error::Io`] from the stream or the spool file.
    pub async fn save_stream<S, E>(
        &self,
        bot: &BotId,
        stream: S,
        kind: MediaKind,
    ) -> Result<MediaKey>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Ok(self.save_stream_outcome(bot, stream, kind).await?.key)
    }

    /// [`save_stream`](Self::save_stream), answering whether the media was warm already.
    pub(crate) async fn save_stream_outcome<S, E>(
        &self,
        bot: &BotId,
        stream: S,
        kind: MediaKind,
    ) -> Result<SaveOutcome>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
        self.uploader(bot)?;
        let limit = inner.config.limits.limit(kind);
        // Removed when this future ends, however it ends: a cancelled save leaves nothing.
        let spool_file = SpoolFile(
            inner
                .config
                .spool_dir
                .join(format!(".prewarm-spool-{:016x}", fastrand::u64(..))),
        );
        let path = &spool_file.0;
        let (size, sha) = spool(path, stream, kind, limit).await?;
        inner.config.limits.check(kind, size)?;
        let key = MediaKey::new(bot.clone(), sha, kind);
        if inner.cache.get(&key).await?.is_some() {
            return Ok(SaveOutcome::warm(key));
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::io("reopening the spool file", e))?;
        let body = crate::store::file_stream(file);
        let payload = PutPayload::from_hashed_stream(size, sha, body);
        self.store_and_enqueue(&key, payload, None).await?;
        Ok(SaveOutcome::saved(key))
    }

    /// Stores a media's bytes at its content address and queues its warm. `bytes`, when the
    /// caller holds them, go to the byte cache: pinned there, and the job hot, when the
    /// upload will need them (see [`Job::hot`]), so that a worker takes them before later
    /// saves push them out.
    async fn store_and_enqueue(
        &self,
        key: &MediaKey,
        payload: PutPayload,
        bytes: Option<Bytes>,
    ) -> Result<()> {
        let inner = &self.inner;
        let size = payload.len();
        let payload = payload.with_sniffed_content_type(key.kind).await;
        // An unknown format is left for the uploader to find out as before.
        let content_type = payload
            .content_type()
            .filter(|ct| *ct != OCTET_STREAM)
            .map(str::to_owned);
        if inner.store.put(&key.object_key(), payload).await? == PutOutcome::Created {
            inner.metrics.stored(size);
        }
        // Held before the job exists, so that its worker finds the bytes here.
        let pinned = match bytes {
            Some(bytes) if self.needs_bytes(key, size, content_type.as_deref()).await => {
                inner.bytes.insert_pinned(key.sha256, bytes)
            }
            Some(bytes) => {
                inner.bytes.insert(key.sha256, bytes);
                false
            }
            None => false,
        };
        let mut job = Job::new(key.clone(), size, inner.clock.now());
        job.hot = pinned;
        self.enqueue_typed(job, content_type, pinned).await?;
        Ok(())
    }

    /// Whether uploading `key` will read its bytes: its uploader says so
    /// ([`Uploader::needs_bytes`](crate::Uploader::needs_bytes)), or the store has no URL to
    /// hand it instead.
    async fn needs_bytes(&self, key: &MediaKey, size: u64, content_type: Option<&str>) -> bool {
        let inner = &self.inner;
        let Some(uploader) = inner.uploaders.get(&key.bot) else {
            return false;
        };
        if uploader.needs_bytes(key.kind, size, content_type) {
            return true;
        }
        let url = inner
            .store
            .url(&key.object_key(), inner.config.url_ttl, content_type)
            .await;
        !matches!(url, Ok(Some(_)))
    }
}

/// What a save did, for the bulk path.
#[derive(Debug)]
pub(crate) struct SaveOutcome {
    /// The media's key.
    pub(crate) key: MediaKey,
    /// It had a cached file_id already: nothing was stored or queued.
    pub(crate) already_warm: bool,
}

impl SaveOutcome {
    fn warm(key: MediaKey) -> Self {
        Self {
            key,
            already_warm: true,
        }
    }

    fn saved(key: MediaKey) -> Self {
        Self {
            key,
            already_warm: false,
        }
    }
}

/// The SHA-256 of `bytes`, off the async workers when it takes long enough to matter.
pub(crate) async fn sha256_of(bytes: &Bytes) -> Result<Sha256> {
    if bytes.len() <= HASH_INLINE_MAX {
        return Ok(Sha256::of(bytes));
    }
    let b = bytes.clone();
    tokio::task::spawn_blocking(move || Sha256::of(&b))
        .await
        .map_err(|e| Error::io("hashing a media", std::io::Error::other(e)))
}

/// Writes `stream` to `path`, hashing it, and fails as soon as it passes `limit` bytes.
async fn spool<S, E>(
    path: &std::path::Path,
    stream: S,
    kind: MediaKind,
    limit: u64,
) -> Result<(u64, Sha256)>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io(format!("creating spool file {}", path.display()), e))?;
    // The hash runs on a blocking thread, chunk by chunk as the bytes pass: a large stream
    // never holds a runtime thread for a SHA-256 pass. The bounded channel paces the stream
    // to the hash.
    let (chunks, mut to_hash) = tokio::sync::mpsc::channel::<Bytes>(16);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256Hasher::new();
        while let Some(chunk) = to_hash.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finish()
    });
    let mut size = 0u64;
    let mut stream = std::pin::pin!(stream.map_err(|e| std::io::Error::other(e.into())));
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Error::io("reading the media stream", e))?
    {
        size += chunk.len() as u64;
        if size > limit {
            return Err(Error::TooLarge { kind, size, limit });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io("writing the spool file", e))?;
        if chunks.send(chunk).await.is_err() {
            break; // the hashing thread is gone: its join below says why
        }
    }
    drop(chunks);
    file.flush()
        .await
        .map_err(|e| Error::io("writing the spool file", e))?;
    let sha = hashing.await.map_err(|e| {
        Error::io(
            "hashing a streamed media",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok((size, sha))
}

/// A spool file, removed when dropped.
struct SpoolFile(std::path::PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        // One unlink: cheap enough for a drop on a runtime thread. Missing is fine (the
        // stream failed before the file was created).
        let _ = std::fs::remove_file(&self.0);
    }
}
