//! Warm-up chats Telegram refuses, against the fake Bot API over loopback HTTP: a chat
//! problem takes the chat out of the pool and the warm moves on; with no chat left the error
//! names every chat, why, and the fix. And albums meet the front end's HTML 502s too.
//!
//! `cargo test --features testkit --test telegram_chats`

use bytes::Bytes;
use prewarm::testkit::{ChatProblem, FakeBotApi, FakeLimits, Faults};
use prewarm::upload::{MediaSource, RateLimits, UploadRequest};
use prewarm::{Error, MediaKey, MediaKind, Sha256, TelegramUploader, Uploader};

const TOKEN: &str = "777001:chat-tests-token-0123456789";
const NO_ADMIN: i64 = -1_001_000_000_001;
const KICKED: i64 = -1_001_000_000_002;
const GOOD: i64 = -1_001_000_000_003;

fn jpeg(n: u32) -> Bytes {
    let mut v = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v.resize(2_000, n as u8);
    Bytes::from(v)
}

fn request(up: &TelegramUploader, kind: MediaKind, bytes: Bytes) -> UploadRequest {
    UploadRequest {
        key: MediaKey::new(up.bot().clone(), Sha256::of(&bytes), kind),
        size: bytes.len() as u64,
        source: MediaSource::from_bytes(bytes),
    }
}

fn uploader(fake: &FakeBotApi, chats: &[i64]) -> TelegramUploader {
    TelegramUploader::builder()
        .with_token(TOKEN)
        .with_api_base(fake.base_url())
        .with_warmup_chats(chats.iter().copied())
        .with_rate_limits(RateLimits::unlimited())
        .build()
        .expect("uploader")
}

#[tokio::test]
async fn chat_problems_move_the_warm_and_only_an_empty_pool_kills_it() {
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([NO_ADMIN, KICKED, GOOD])
        .with_chat_problem(NO_ADMIN, ChatProblem::NotAdministrator)
        .with_chat_problem(KICKED, ChatProblem::Kicked)
        .with_limits(FakeLimits::off())
        .start()
        .await
        .unwrap();
    let up = uploader(&fake, &[NO_ADMIN, KICKED, GOOD]);
    for n in 0..6 {
        up.upload(request(&up, MediaKind::Photo, jpeg(n)))
            .await
            .expect("the warm moves to the chat that takes it");
    }
    assert_eq!(fake.messages_in(GOOD), 6);
    for chat in [NO_ADMIN, KICKED] {
        let tries = fake
            .events()
            .iter()
            .filter(|e| e.chat == Some(chat))
            .count();
        assert_eq!(tries, 1, "chat {chat}: one refusal, then it sits out");
    }

    // The last chat breaks too: nothing is left, and the error says which chats, why, and
    // what to do. It is permanent: a retry would meet the same chats.
    fake.set_chat_problem(GOOD, Some(ChatProblem::NotMember));
    let err = up
        .upload(request(&up, MediaKind::Photo, jpeg(99)))
        .await
        .expect_err("no chat left");
    let text = err.to_string();
    assert!(
        matches!(err, Error::Rejected { .. }) && !err.is_retryable(),
        "{err:?}"
    );
    for needle in [
        format!("chat {NO_ADMIN}: Bad Request: need administrator rights in the channel chat"),
        format!("chat {KICKED}: Forbidden: bot was kicked from the group chat"),
        format!("chat {GOOD}: Forbidden: bot is not a member of the channel chat"),
        "MEDIA_WARMUP_CHAT_IDS".to_owned(),
        "administrator".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing from: {text}");
    }
    assert!(!text.contains("chat-tests-token"), "{text}");
    fake.shutdown().await;
}

/// A chat problem met by a direct send to a user is that user's, not the pool's: it is
/// answered, and the warm-up chats go on.
#[tokio::test]
async fn a_direct_send_to_a_refusing_chat_is_answered_and_benches_nothing() {
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([KICKED, GOOD])
        .with_chat_problem(KICKED, ChatProblem::Kicked)
        .with_limits(FakeLimits::off())
        .start()
        .await
        .unwrap();
    let up = uploader(&fake, &[GOOD]);
    let err = up
        .send_upload(KICKED, request(&up, MediaKind::Photo, jpeg(1)))
        .await
        .expect_err("kicked");
    assert!(err.to_string().contains("bot was kicked"), "{err}");
    up.upload(request(&up, MediaKind::Photo, jpeg(2)))
        .await
        .expect("the pool is untouched");
    fake.shutdown().await;
}

/// Telegram's front end answers some 502s with an HTML page, albums included: the album's
/// error is a retryable `Unavailable`, whichever form the 5xx took.
#[tokio::test]
async fn albums_meet_html_502s_as_retryable_errors() {
    let fake = FakeBotApi::builder()
        .with_bot(TOKEN)
        .with_chats([GOOD])
        .with_limits(FakeLimits::off())
        .with_faults(Faults::none().with_server_errors(1.0))
        .start()
        .await
        .unwrap();
    let up = uploader(&fake, &[GOOD]);
    let mut html = 0;
    for n in 0..24 {
        let album = vec![
            request(&up, MediaKind::Photo, jpeg(2 * n)),
            request(&up, MediaKind::Photo, jpeg(2 * n + 1)),
        ];
        let err = up
            .upload_group(album)
            .await
            .expect_err("every request fails");
        assert!(
            matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
            "{err:?}"
        );
        html += usize::from(err.to_string().contains("non-JSON"));
    }
    let statuses: Vec<u16> = fake.events().iter().map(|e| e.status).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(html > 0, "some album errors were HTML pages");
    fake.shutdown().await;
}
