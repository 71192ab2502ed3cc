use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::{GetResult, MediaStore, ObjectMeta, PutOutcome, PutPayload, verified};
use crate::error::{Error, Result};
use crate::media::ObjectKey;

/// An in-memory [`MediaStore`], for tests and short-lived tools.
///
/// # Clone
/// Clones share one map of objects.
///
/// ```
/// use bytes::Bytes;
/// use prewarm::store::{MediaStoreExt, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let (key, _) = store.put_bytes(Bytes::from_static(b"hello")).await?;
/// assert_eq!(store.get_bytes(&key).await?, Bytes::from_static(b"hello"));
/// # Ok::<(), prewarm::Error>(())
/// # })?;
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    // A std mutex: held only for a map lookup or insert, never across an `.await`.
    objects: Arc<Mutex<HashMap<ObjectKey, Object>>>,
}

/// One stored object: its bytes and the content type it was put with.
#[derive(Debug, Clone)]
struct Object {
    bytes: Bytes,
    content_type: Option<String>,
}

impl Object {
    fn meta(&self, key: &ObjectKey) -> ObjectMeta {
        ObjectMeta {
            key: key.clone(),
            size: self.bytes.len() as u64,
            content_type: self.content_type.clone(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Object>> {
        // Each critical section is one map call: a poisoned lock holds a consistent map.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(key: &ObjectKey) -> Error {
        Error::NotFound {
            what: format!("object {key}"),
        }
    }
}

#[async_trait]
impl MediaStore for MemoryStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<PutOutcome> {
        if self.lock().contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let mut buf = BytesMut::with_capacity(usize::try_from(payload.len()).unwrap_or(0));
        let content_type = payload.content_type().map(str::to_owned);
        let mut body = verified(payload);
        while let Some(chunk) = body.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(
            key.clone(),
            Object {
                bytes: buf.freeze(),
                content_type,
            },
        );
        Ok(PutOutcome::Created)
    }

    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        let object = self
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| Self::not_found(key))?;
        let meta = object.meta(key);
        let bytes = object.bytes;
        Ok(GetResult {
            meta,
            body: stream::once(async move { Ok(bytes) }).boxed(),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.lock()
            .get(key)
            .map(|o| o.meta(key))
            .ok_or_else(|| Self::not_found(key))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().remove(key);
        Ok(())
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
