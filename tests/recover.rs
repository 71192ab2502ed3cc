//! A warm-up send whose reply never arrived is found in its chat, not uploaded again; a
//! file_id Telegram rejected is never answered again. Against the fake Bot API over HTTP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::upload::{MediaSource, MemoryJournal, UploadJournal, UploadRequest, Uploader};
use prewarm::{BotId, MediaKey, MediaKind, Sha256, TelegramUploader};

const TOKEN: &str = "123456:AAE-fake-secret-token-0123456789";
/// Two private chats (one message counter for the bot) and a supergroup (its own counter).
const CHATS: [i64; 3] = [101, 102, -1_001_000_000_001];

fn uploader(fake: &FakeBotApi, journal: Arc<dyn UploadJournal>) -> TelegramUploader {
    TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats(CHATS)
        .with_journal(journal)
        .build()
        .expect("uploader")
}

fn media(i: u32, kind: MediaKind) -> (MediaKey, Bytes) {
    let mut bytes = match kind {
        MediaKind::Photo => b"\xFF\xD8\xFF\xE0".to_vec(),
        MediaKind::Sticker => b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
        _ => b"%PDF-1.4\n".to_vec(),
    };
    bytes.extend_from_slice(format!("media {i} {kind}").as_bytes());
    bytes.resize(2_000 + i as usize, b'.');
    let key = MediaKey::new(BotId::new("123456").expect("bot"), Sha256::of(&bytes), kind);
    (key, Bytes::from(bytes))
}

fn request(key: &MediaKey, bytes: &Bytes) -> UploadRequest {
    UploadRequest {
        key: key.clone(),
        size: bytes.len() as u64,
        source: MediaSource::from_bytes(bytes.clone()),
    }
}

async fn fake(latency: Duration) -> FakeBotApi {
    FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats(CHATS)
        .with_limits(FakeLimits::telegram())
        .with_latency(Latency::fixed(latency))
        .start()
        .await
        .expect("fake")
}

/// Uploads whose replies are cut off (as a process killed while Telegram answers would cut
/// them) are found by the next uploader on the same journal: every media has a file_id
/// Telegram issued for its bytes, and was uploaded once.
#[tokio::test]
async fn sends_whose_replies_were_lost_are_found_not_uploaded_again() {
    // Telegram takes 1.5 s over each upload: the message exists long before the reply.
    let fake = fake(Duration::from_millis(1_500)).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let kinds = [
        MediaKind::Photo,
        MediaKind::Document,
        MediaKind::Photo,
        MediaKind::Document,
        MediaKind::Photo,
        MediaKind::Sticker,
    ];
    let all: Vec<(MediaKey, Bytes)> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| media(i as u32, *k))
        .collect();

    // A first uploader warms one media to completion (so each chat has a known last id),
    // then starts the rest and is cut off while Telegram handles them.
    let first = uploader(&fake, journal.clone());
    let (warm_key, warm_bytes) = media(99, MediaKind::Photo);
    first
        .upload(request(&warm_key, &warm_bytes))
        .await
        .expect("a complete warm");
    let cut =
        futures::future::join_all(all.iter().map(|(key, bytes)| {
            let first = first.clone();
            let request = request(key, bytes);
            async move {
                tokio::time::timeout(Duration::from_millis(2_500), first.upload(request)).await
            }
        }))
        .await;
    assert!(
        cut.iter().filter(|r| r.is_err()).count() >= 3,
        "most uploads were cut off before their replies"
    );
    drop(first);
    let sent: u32 = all
        .iter()
        .map(|(key, _)| fake.uploads_of(&key.sha256).succeeded)
        .sum();
    assert!(sent >= 3, "Telegram made messages of the cut-off uploads");

    let second = uploader(&fake, journal.clone());
    for (key, bytes) in &all {
        let uploaded = second
            .upload(request(key, bytes))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let file = fake
            .file(uploaded.file_id.as_str())
            .unwrap_or_else(|| panic!("{key}: the fake issued {}", uploaded.file_id));
        assert_eq!(
            file.sha256, key.sha256,
            "{key}: the file_id is of its bytes"
        );
        assert_eq!(
            fake.uploads_of(&key.sha256).succeeded,
            1,
            "{key}: uploaded once, however its first reply was lost"
        );
    }
    assert_eq!(fake.stats().violations, 0, "the search kept to the limits");
}

/// A file_id Telegram rejected is not answered again from the journal: the next warm
/// uploads. Until then, a second warm of a media answers the journal's file_id.
#[tokio::test]
async fn a_rejected_file_id_is_never_answered_again() {
    let fake = fake(Duration::ZERO).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let up = uploader(&fake, journal);
    let (key, bytes) = media(1, MediaKind::Photo);
    let one = up.upload(request(&key, &bytes)).await.expect("warm");
    let again = up.upload(request(&key, &bytes)).await.expect("warm again");
    assert_eq!(again.file_id, one.file_id, "the journal answers");
    assert_eq!(
        fake.uploads_of(&key.sha256).succeeded,
        1,
        "no second upload"
    );

    up.rejected(&key, &one.file_id).await.expect("rejected");
    let fresh = up.upload(request(&key, &bytes)).await.expect("re-warm");
    assert_ne!(fresh.file_id, one.file_id, "a new file_id");
    assert_eq!(fake.uploads_of(&key.sha256).succeeded, 2, "uploaded anew");
}
