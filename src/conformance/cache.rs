//! The [`FileIdCache`] contract, behaviour by behaviour.

use super::unique_key;
use crate::cache::FileIdCache;
use crate::media::{BotId, FileId, MediaKey, MediaKind};

/// Runs every cache behaviour below.
pub async fn run_all(cache: &dyn FileIdCache) {
    missing_key_is_none(cache).await;
    put_then_get(cache).await;
    put_replaces(cache).await;
    invalidate_only_if_matches(cache).await;
    invalidate_any(cache).await;
    bot_and_kind_are_part_of_the_key(cache).await;
}

fn id(tag: &str) -> FileId {
    FileId::new(format!("{tag}-{:016x}", fastrand::u64(..)))
}

/// A key never stored answers `None`, locally too.
pub async fn missing_key_is_none(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Photo);
    assert_eq!(cache.get(&key).await.expect("get"), None);
    assert_eq!(cache.get_local(&key), None);
}

/// A stored file_id is answered by `get`; `get_local` answers it or nothing, never another.
pub async fn put_then_get(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Video);
    let file_id = id("a");
    cache.put(&key, &file_id).await.expect("put");
    assert_eq!(cache.get(&key).await.expect("get"), Some(file_id.clone()));
    if let Some(local) = cache.get_local(&key) {
        assert_eq!(local, file_id, "get_local answers the stored id");
    }
}

/// A second put replaces the first.
pub async fn put_replaces(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Document);
    cache.put(&key, &id("old")).await.expect("put");
    let new = id("new");
    cache.put(&key, &new).await.expect("put again");
    assert_eq!(cache.get(&key).await.expect("get"), Some(new.clone()));
    if let Some(local) = cache.get_local(&key) {
        assert_eq!(local, new, "get_local sees the replacement");
    }
}

/// `invalidate(key, Some(id))` removes only while the entry still holds `id`.
pub async fn invalidate_only_if_matches(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Animation);
    let current = id("current");
    cache.put(&key, &current).await.expect("put");
    let removed = cache
        .invalidate(&key, Some(&id("stale")))
        .await
        .expect("invalidate");
    assert!(!removed, "a stale id must not remove a newer one");
    assert_eq!(cache.get(&key).await.expect("get"), Some(current.clone()));
    let removed = cache
        .invalidate(&key, Some(&current))
        .await
        .expect("invalidate");
    assert!(removed, "the matching id is removed");
    assert_eq!(cache.get(&key).await.expect("get"), None);
    assert_eq!(cache.get_local(&key), None, "gone locally too");
    let again = cache
        .invalidate(&key, Some(&current))
        .await
        .expect("invalidate");
    assert!(!again, "nothing left to remove");
}

/// `invalidate(key, None)` removes whatever is there.
pub async fn invalidate_any(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Audio);
    cache.put(&key, &id("x")).await.expect("put");
    assert!(cache.invalidate(&key, None).await.expect("invalidate"));
    assert_eq!(cache.get(&key).await.expect("get"), None);
}

/// The same bytes under another bot or kind are another entry.
pub async fn bot_and_kind_are_part_of_the_key(cache: &dyn FileIdCache) {
    let key = unique_key(MediaKind::Photo);
    let as_document = MediaKey::new(key.bot.clone(), key.sha256, MediaKind::Document);
    let other_bot = MediaKey::new(
        BotId::new("conformance-other").expect("bot id"),
        key.sha256,
        key.kind,
    );
    cache.put(&key, &id("photo")).await.expect("put");
    assert_eq!(
        cache.get(&as_document).await.expect("get"),
        None,
        "kind is part of the key"
    );
    assert_eq!(
        cache.get(&other_bot).await.expect("get"),
        None,
        "bot is part of the key"
    );
}
