//! A warm-up send whose reply never arrived is found in its chat, not uploaded again; a
//! file_id Telegram rejected is never answered again. Against the fake Bot API over HTTP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prewarm::testkit::{FakeBotApi, FakeLimits, Latency};
use prewarm::upload::{
    MediaSource, MemoryJournal, RateLimits, UploadJournal, UploadRequest, Uploader,
};
use prewarm::{BotId, MediaKey, MediaKind, Sha256, TelegramUploader, Timestamp};

const TOKEN: &str = "123456:AAE-fake-secret-token-0123456789";
const OTHER_BOT: &str = "654321:AAE-fake-secret-token-9876543210";
/// A private chat of the bot's, and a supergroup (its own message counter).
const PRIVATE: i64 = 101;
const GROUP: i64 = -1_001_000_000_001;
/// Two private chats (one message counter for the bot) and a supergroup.
const CHATS: [i64; 3] = [PRIVATE, 102, GROUP];
/// A user the bot talks to, outside the warm-up chats.
const USER: i64 = 555;

fn uploader(fake: &FakeBotApi, journal: Arc<dyn UploadJournal>) -> TelegramUploader {
    TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats(CHATS)
        .with_journal(journal)
        .build()
        .expect("uploader")
}

/// An uploader of `token` warming in `chats` alone, with no rate limits of its own (the fake
/// enforces none either): the tests below are about message ids, not rates.
fn quick(
    fake: &FakeBotApi,
    token: &str,
    chats: &[i64],
    journal: &Arc<dyn UploadJournal>,
) -> TelegramUploader {
    TelegramUploader::builder()
        .with_token(token)
        .with_api_base(fake.base_url())
        .with_warmup_chats(chats.iter().copied())
        .with_rate_limits(RateLimits::unlimited())
        .with_journal(journal.clone())
        .build()
        .expect("uploader")
}

/// A fake of both bots with no rate limits, taking `latency` over every request.
async fn quick_fake(latency: Duration) -> FakeBotApi {
    FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_bot(OTHER_BOT)
        .with_chats(CHATS.into_iter().chain([USER]))
        .with_limits(FakeLimits::off())
        .with_latency(Latency::fixed(latency))
        .with_file_id_latency(Latency::none())
        .start()
        .await
        .expect("fake")
}

/// Starts an upload and drops it 400 ms into its send, before its reply (the fake takes
/// 1 s over each request; `before` is how long the requests before the send take), as a
/// process killed while Telegram answers would; waits until the fake has made its message.
async fn cut_short(
    up: &TelegramUploader,
    fake: &FakeBotApi,
    key: &MediaKey,
    bytes: &Bytes,
    before: Duration,
) {
    let made = fake.uploads_of(&key.sha256).succeeded;
    let cut = before + Duration::from_millis(400);
    let attempt = tokio::time::timeout(cut, up.upload(request(key, bytes)));
    assert!(attempt.await.is_err(), "{key}: cut before its reply");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        fake.uploads_of(&key.sha256).succeeded,
        made + 1,
        "{key}: Telegram made its message"
    );
}

/// Uploads `key` with `up` and checks it was not uploaded again and is answered a file_id of
/// its bytes, and of its bot.
async fn found_not_uploaded(
    up: &TelegramUploader,
    fake: &FakeBotApi,
    key: &MediaKey,
    bytes: &Bytes,
) {
    let made = fake.uploads_of(&key.sha256).succeeded;
    let uploaded = up.upload(request(key, bytes)).await.expect("upload");
    let file = fake
        .file(uploaded.file_id.as_str())
        .expect("a file_id of the fake's");
    assert_eq!(
        (file.sha256, file.bot_id.as_str()),
        (key.sha256, key.bot.as_str()),
        "{key}: answered a file_id of its bytes and its bot"
    );
    assert_eq!(
        fake.uploads_of(&key.sha256).succeeded,
        made,
        "{key}: found in its chat, not uploaded twice"
    );
}

fn media(i: u32, kind: MediaKind) -> (MediaKey, Bytes) {
    media_of("123456", i, kind)
}

fn media_of(bot: &str, i: u32, kind: MediaKind) -> (MediaKey, Bytes) {
    let mut bytes = match kind {
        MediaKind::Photo => b"\xFF\xD8\xFF\xE0".to_vec(),
        MediaKind::Sticker => b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
        _ => b"%PDF-1.4\n".to_vec(),
    };
    bytes.extend_from_slice(format!("media {i} {kind} of {bot}").as_bytes());
    bytes.resize(2_000 + i as usize, b'.');
    let key = MediaKey::new(BotId::new(bot).expect("bot"), Sha256::of(&bytes), kind);
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

/// The first warm into a chat where no message id is known (a fresh journal) is found after
/// a crash too: a text marked the chat's place first, and was deleted.
#[tokio::test]
async fn the_first_warm_into_a_fresh_chat_is_found_after_a_crash() {
    let fake = quick_fake(Duration::from_millis(1_000)).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let (key, bytes) = media(1, MediaKind::Photo);
    // The text that marks the chat's place, and its deletion, go first.
    let up = quick(&fake, TOKEN, &[GROUP], &journal);
    cut_short(&up, &fake, &key, &bytes, Duration::from_secs(2)).await;
    found_not_uploaded(
        &quick(&fake, TOKEN, &[GROUP], &journal),
        &fake,
        &key,
        &bytes,
    )
    .await;
    let stats = fake.stats();
    assert_eq!(
        stats.texts, 1,
        "one text marked the chat's place: {stats:?}"
    );
    assert_eq!(
        fake.messages_in(GROUP),
        1,
        "the text and the forward's copy were deleted; the media's message stays"
    );
}

/// Messages the journal never saw (the bot's sends to users in its message box, another
/// bot's warms in a shared supergroup, an album) do not push a lost warm out of the search.
#[tokio::test]
async fn messages_the_journal_never_saw_do_not_hide_a_lost_warm() {
    let fake = quick_fake(Duration::from_millis(1_000)).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());

    // A private warm-up chat; then five sends to a user take ids of the bot's message box.
    let up = quick(&fake, TOKEN, &[PRIVATE], &journal);
    let (warm, warm_bytes) = media(0, MediaKind::Photo);
    let warmed = up.upload(request(&warm, &warm_bytes)).await.expect("warm");
    for _ in 0..5 {
        up.send_file_id(USER, &warm, &warmed.file_id)
            .await
            .expect("a send to a user");
    }
    let (key, bytes) = media(1, MediaKind::Photo);
    cut_short(&up, &fake, &key, &bytes, Duration::ZERO).await;
    found_not_uploaded(
        &quick(&fake, TOKEN, &[PRIVATE], &journal),
        &fake,
        &key,
        &bytes,
    )
    .await;

    // A supergroup shared with another bot. An album of our own; then the other bot warms
    // six media, the first of them the very bytes we are about to lose (its caption names
    // them too, but its file_id is the other bot's); then our warm is cut short.
    let up = quick(&fake, TOKEN, &[GROUP], &journal);
    let other = quick(&fake, OTHER_BOT, &[GROUP], &journal);
    let (warm, warm_bytes) = media(2, MediaKind::Photo);
    up.upload(request(&warm, &warm_bytes)).await.expect("warm");
    let album: Vec<UploadRequest> = (20..26)
        .map(|i| {
            let (k, b) = media(i, MediaKind::Photo);
            request(&k, &b)
        })
        .collect();
    up.upload_group(album).await.expect("an album");
    let (key, bytes) = media(3, MediaKind::Photo);
    let theirs = MediaKey::new(BotId::new("654321").unwrap(), key.sha256, key.kind);
    other
        .upload(request(&theirs, &bytes))
        .await
        .expect("the other bot's warm of the same bytes");
    for i in 30..35 {
        let (k, b) = media_of("654321", i, MediaKind::Photo);
        other
            .upload(request(&k, &b))
            .await
            .expect("the other bot's warm");
    }
    cut_short(&up, &fake, &key, &bytes, Duration::ZERO).await;
    found_not_uploaded(
        &quick(&fake, TOKEN, &[GROUP], &journal),
        &fake,
        &key,
        &bytes,
    )
    .await;
}

/// Stickers take no caption: when two of one size were pending at a crash, the one whose
/// bytes never reached Telegram is uploaded, never answered the other's file_id.
#[tokio::test]
async fn a_sticker_is_never_answered_another_stickers_file_id() {
    let fake = quick_fake(Duration::from_millis(1_000)).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let up = quick(&fake, TOKEN, &[GROUP], &journal);
    let (warm, warm_bytes) = media(0, MediaKind::Photo);
    up.upload(request(&warm, &warm_bytes)).await.expect("warm");
    let (a, a_bytes) = media(1, MediaKind::Sticker);
    let (mut b, mut b_bytes) = media(2, MediaKind::Sticker);
    b_bytes = {
        let mut same_size = b_bytes.to_vec();
        same_size.truncate(a_bytes.len());
        Bytes::from(same_size)
    };
    b = MediaKey::new(b.bot.clone(), Sha256::of(&b_bytes), b.kind);
    cut_short(&up, &fake, &b, &b_bytes, Duration::ZERO).await;
    // A was journaled just before B, and the process died while its bytes were streaming.
    let b_entry = journal.entry(&b).await.unwrap().expect("B's entry");
    journal
        .begin(&prewarm::upload::JournalEntry {
            media: a.clone(),
            chat: GROUP,
            after: b_entry.after,
            started_at: Timestamp(b_entry.started_at.0 - 1),
            delivered: None,
        })
        .await
        .unwrap();
    let got = quick(&fake, TOKEN, &[GROUP], &journal)
        .upload(request(&a, &a_bytes))
        .await
        .expect("A");
    let file = fake
        .file(got.file_id.as_str())
        .expect("a file_id of the fake's");
    assert_eq!(file.sha256, a.sha256, "A is answered its own file");
}

/// A file_id journaled as delivered but never cached (the process died in between) is still
/// answered when the next process starts hours later, after it has pruned the journal.
#[tokio::test]
async fn a_delivered_file_id_outlives_a_late_restart() {
    let fake = quick_fake(Duration::ZERO).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let first = quick(&fake, TOKEN, &[GROUP], &journal);
    let (x, x_bytes) = media(1, MediaKind::Photo);
    let (y, y_bytes) = media(2, MediaKind::Photo);
    let x_id = first
        .upload(request(&x, &x_bytes))
        .await
        .expect("x")
        .file_id;
    first.upload(request(&y, &y_bytes)).await.expect("y");
    // Both were sent two hours ago.
    let two_hours_ago = Timestamp(Timestamp::now().0 - 2 * 3600 * 1000);
    for key in [&x, &y] {
        let mut entry = journal.entry(key).await.unwrap().expect("entry");
        let delivered = entry.delivered.take().expect("delivered");
        entry.started_at = two_hours_ago;
        journal.begin(&entry).await.unwrap();
        journal.deliver(key, &delivered).await.unwrap();
    }
    // The restarted process warms another media first (and prunes), then x.
    let rerun = quick(&fake, TOKEN, &[GROUP], &journal);
    let (z, z_bytes) = media(3, MediaKind::Photo);
    rerun.upload(request(&z, &z_bytes)).await.expect("z");
    let again = rerun.upload(request(&x, &x_bytes)).await.expect("x again");
    assert_eq!(again.file_id, x_id, "the journal's file_id");
    assert_eq!(fake.uploads_of(&x.sha256).succeeded, 1, "x uploaded once");
}

/// Two warms leave at once into a chat where no message id is known: the second waits for
/// the first's text to mark the chat's place, so that no warm leaves unbounded. Both cut
/// short while the text is in flight, neither is uploaded twice.
#[tokio::test]
async fn warms_into_a_fresh_chat_wait_for_its_place_to_be_marked() {
    let fake = quick_fake(Duration::from_millis(1_000)).await;
    let journal: Arc<dyn UploadJournal> = Arc::new(MemoryJournal::new());
    let up = quick(&fake, TOKEN, &[GROUP], &journal);
    let both = [media(1, MediaKind::Photo), media(2, MediaKind::Photo)];
    let cut = futures::future::join_all(both.iter().map(|(key, bytes)| {
        tokio::time::timeout(Duration::from_millis(500), up.upload(request(key, bytes)))
    }))
    .await;
    assert!(cut.iter().all(|r| r.is_err()), "both cut short");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let rerun = quick(&fake, TOKEN, &[GROUP], &journal);
    for (key, bytes) in &both {
        let uploaded = rerun.upload(request(key, bytes)).await.expect("upload");
        let file = fake
            .file(uploaded.file_id.as_str())
            .expect("a fake file_id");
        assert_eq!(file.sha256, key.sha256, "{key}: its own file");
        assert_eq!(
            fake.uploads_of(&key.sha256).succeeded,
            1,
            "{key}: uploaded once"
        );
    }
}
