//! The fake Bot API's own rules, driven over real loopback HTTP by a bare HTTP client (not the
//! crate's uploader): message ids as Telegram numbers them, captions, `forwardMessage`, and
//! an upload that Telegram finishes after its client has left.
//!
//! `cargo test --features testkit --test fake`

use std::time::Duration;

use bytes::Bytes;
use prewarm::Sha256;
use prewarm::testkit::{ChatProblem, FakeBotApi, FakeLimits, FakeRate, Latency};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const TOKEN: &str = "123456:AAE-fake-secret-token-0123456789";
const OTHER_TOKEN: &str = "654321:AAE-other-secret-token-0123456";
/// A private chat (a user's id), a basic group, a supergroup ("-100..." ids).
const USER: i64 = 7_000_001;
const USER_2: i64 = 7_000_002;
const GROUP: i64 = -4_000_001;
const SUPERGROUP: i64 = -1_001_234_567_890;
const SUPERGROUP_2: i64 = -1_009_876_543_210;
const CHATS: [i64; 5] = [USER, USER_2, GROUP, SUPERGROUP, SUPERGROUP_2];

async fn fake(limits: FakeLimits) -> FakeBotApi {
    fake_with(FakeBotApi::builder().with_limits(limits)).await
}

async fn fake_with(builder: prewarm::testkit::FakeBotApiBuilder) -> FakeBotApi {
    builder
        .with_bot(TOKEN)
        .with_bot(OTHER_TOKEN)
        .with_chats(CHATS)
        .start()
        .await
        .expect("the fake starts")
}

/// A bare Bot API client: a method, its parameters, the status and the JSON answered.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(fake: &FakeBotApi) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: fake.base_url(),
        }
    }

    async fn send(&self, token: &str, method: &str, form: Form) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}/bot{token}/{method}", self.base))
            .multipart(form)
            .send()
            .await
            .expect("an answer");
        let status = reply.status().as_u16();
        (status, reply.json().await.expect("JSON"))
    }

    async fn call(&self, token: &str, method: &str, fields: &[(&str, String)]) -> (u16, Value) {
        let form = fields
            .iter()
            .fold(Form::new(), |f, (k, v)| f.text(k.to_string(), v.clone()));
        self.send(token, method, form).await
    }

    /// sendPhoto by upload, with an optional caption: the message.
    async fn photo(&self, token: &str, chat: i64, n: u8, caption: Option<&str>) -> Value {
        let (status, body) = self
            .send(token, "sendPhoto", photo_form(chat, n, caption))
            .await;
        assert_eq!(status, 200, "{body}");
        body["result"].clone()
    }

    async fn forward(&self, token: &str, chat: i64, from: i64, id: i64) -> (u16, Value) {
        self.call(
            token,
            "forwardMessage",
            &[
                ("chat_id", chat.to_string()),
                ("from_chat_id", from.to_string()),
                ("message_id", id.to_string()),
            ],
        )
        .await
    }
}

fn photo_bytes(n: u8) -> Bytes {
    let mut v = b"\xff\xd8\xff\xe0JFIF".to_vec();
    v.extend(std::iter::repeat_n(n, 64));
    Bytes::from(v)
}

fn photo_form(chat: i64, n: u8, caption: Option<&str>) -> Form {
    let part = Part::bytes(photo_bytes(n).to_vec()).file_name("p.jpg");
    let form = Form::new()
        .text("chat_id", chat.to_string())
        .part("photo", part);
    match caption {
        Some(c) => form.text("caption", c.to_owned()),
        None => form,
    }
}

fn id(message: &Value) -> i64 {
    message["message_id"].as_i64().expect("a message_id")
}

/// Private chats and basic groups share the bot's one counter; each supergroup counts its
/// own, shared by every bot in it; another bot has its own box. Albums and forwards take
/// ids the same way, and `chat.type` follows the id.
#[tokio::test]
async fn message_ids_are_numbered_per_message_box() {
    let fake = fake(FakeLimits::off()).await;
    let api = Api::new(&fake);
    let mut ids = Vec::new();
    for (chat, n) in [
        (USER, 1),
        (GROUP, 2),
        (USER_2, 3),
        (SUPERGROUP, 4),
        (USER, 5),
    ] {
        let m = api.photo(TOKEN, chat, n, None).await;
        ids.push(id(&m));
    }
    assert_eq!(
        ids,
        [1, 2, 3, 1, 4],
        "one box for the bot, one per supergroup"
    );
    let other = api.photo(OTHER_TOKEN, SUPERGROUP, 6, None).await;
    assert_eq!(id(&other), 2, "a supergroup's box is every bot's");
    let other = api.photo(OTHER_TOKEN, USER, 7, None).await;
    assert_eq!(id(&other), 1, "a bot's box is its own");
    assert_eq!(id(&api.photo(TOKEN, SUPERGROUP_2, 8, None).await), 1);

    // An album: one id per item, from the same boxes.
    let photo_id = api.photo(TOKEN, USER, 9, None).await["photo"][2]["file_id"].clone();
    assert_eq!(fake.stats().messages, 9);
    let media = serde_json::json!([
        { "type": "photo", "media": photo_id },
        { "type": "photo", "media": photo_id },
    ]);
    for (chat, first) in [(GROUP, 6), (SUPERGROUP, 3)] {
        let (status, body) = api
            .call(
                TOKEN,
                "sendMediaGroup",
                &[("chat_id", chat.to_string()), ("media", media.to_string())],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let album: Vec<i64> = body["result"]
            .as_array()
            .expect("messages")
            .iter()
            .map(id)
            .collect();
        assert_eq!(album, [first, first + 1], "chat {chat}");
    }
    // A forward makes a message in the target's box.
    let (status, body) = api.forward(TOKEN, USER_2, SUPERGROUP, 1).await;
    assert_eq!((status, id(&body["result"])), (200, 8), "{body}");
    let (status, body) = api.forward(TOKEN, SUPERGROUP_2, USER, 1).await;
    assert_eq!((status, id(&body["result"])), (200, 2), "{body}");

    for (chat, id, kind) in [
        (USER, 1, "private"),
        (GROUP, 2, "group"),
        (SUPERGROUP, 1, "supergroup"),
    ] {
        let m = fake.message(chat, id).expect("kept");
        assert_eq!(m["chat"]["type"], kind, "{m}");
        assert_eq!(m["chat"]["id"], chat);
    }
    // Messages are the bot's own: another bot cannot delete the first's in a private chat
    // (its message 1 there is its own), but in a supergroup they are the same messages.
    let delete = |token, chat: i64, id: i64| {
        let api = &api;
        async move {
            api.call(
                token,
                "deleteMessage",
                &[
                    ("chat_id", chat.to_string()),
                    ("message_id", id.to_string()),
                ],
            )
            .await
            .0
        }
    };
    assert_eq!(delete(OTHER_TOKEN, USER, 5).await, 400, "not its message 5");
    assert_eq!(delete(OTHER_TOKEN, USER, 1).await, 200, "its own message 1");
    assert_eq!(delete(OTHER_TOKEN, SUPERGROUP, 1).await, 200);
    assert!(fake.message(SUPERGROUP, 1).is_none());
    assert_eq!(
        fake.message(USER, 1).expect("the first bot's stays")["from"]["id"],
        123456
    );
    fake.shutdown().await;
}

/// Captions are kept and echoed; over 1024 characters Telegram refuses the send and no
/// message is made; sendSticker and sendVideoNote take none and ignore one.
#[tokio::test]
async fn captions_are_echoed_kept_and_capped_at_1024() {
    let fake = fake(FakeLimits::off()).await;
    let api = Api::new(&fake);
    let m = api.photo(TOKEN, SUPERGROUP, 1, Some("a cat")).await;
    assert_eq!(m["caption"], "a cat");
    let longest = "é".repeat(1024);
    let m = api.photo(TOKEN, SUPERGROUP, 2, Some(&longest)).await;
    assert_eq!(m["caption"].as_str(), Some(longest.as_str()));
    assert!(
        api.photo(TOKEN, SUPERGROUP, 3, None)
            .await
            .get("caption")
            .is_none()
    );

    for caption in ["x".repeat(1025), "🙂".repeat(513)] {
        let (status, body) = api
            .send(
                TOKEN,
                "sendPhoto",
                photo_form(SUPERGROUP, 4, Some(&caption)),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            body["description"],
            "Bad Request: message caption is too long"
        );
    }
    assert_eq!(
        fake.messages_in(SUPERGROUP),
        3,
        "no message for a refused caption"
    );
    let refused = fake.uploads_of(&Sha256::of(&photo_bytes(4)));
    assert_eq!((refused.uploads, refused.failed), (2, 2), "{refused:?}");

    // A sticker takes no caption: ignored, the send goes through.
    let sticker = Part::bytes(b"RIFF\0\0\0\0WEBPVP8 sticker".to_vec()).file_name("s.webp");
    let form = Form::new()
        .text("chat_id", SUPERGROUP.to_string())
        .text("caption", "x".repeat(2000))
        .part("sticker", sticker);
    let (status, body) = api.send(TOKEN, "sendSticker", form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].get("caption").is_none(), "{body}");

    // Album items carry their own captions, under the same cap.
    let file_id = m_file_id(&api.photo(TOKEN, USER, 5, None).await);
    let album = |captions: [&str; 2]| {
        serde_json::json!([
            { "type": "photo", "media": file_id, "caption": captions[0] },
            { "type": "photo", "media": file_id, "caption": captions[1] },
        ])
        .to_string()
    };
    let (status, body) = api
        .call(
            TOKEN,
            "sendMediaGroup",
            &[
                ("chat_id", SUPERGROUP_2.to_string()),
                ("media", album(["one", "two"])),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"][1]["caption"], "two");
    let long = "y".repeat(1025);
    let (status, body) = api
        .call(
            TOKEN,
            "sendMediaGroup",
            &[
                ("chat_id", SUPERGROUP_2.to_string()),
                ("media", album(["fine", &long])),
            ],
        )
        .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message caption is too long"))
    );
    assert_eq!(
        fake.captions_in(SUPERGROUP_2),
        [Some("one".to_owned()), Some("two".to_owned())]
    );
    fake.shutdown().await;
}

fn m_file_id(message: &Value) -> String {
    message["photo"][2]["file_id"]
        .as_str()
        .expect("the largest size")
        .to_owned()
}

/// A forward makes a new message with the same media and caption and a `forward_origin`;
/// it is no upload, and is counted and logged.
#[tokio::test]
async fn a_forward_copies_the_message_and_uploads_nothing() {
    let fake = fake(FakeLimits::off()).await;
    let api = Api::new(&fake);
    let source = api.photo(TOKEN, SUPERGROUP, 1, Some("the cat")).await;
    let sha = Sha256::of(&photo_bytes(1));
    let before = (fake.uploads_of(&sha), fake.stats().uploads);

    let (status, body) = api.forward(TOKEN, USER, SUPERGROUP, id(&source)).await;
    assert_eq!(status, 200, "{body}");
    let copy = &body["result"];
    assert_eq!(copy["chat"]["id"], USER);
    assert_eq!(copy["photo"], source["photo"], "the same file_ids");
    assert_eq!(copy["caption"], "the cat");
    let origin = &copy["forward_origin"];
    assert_eq!(origin["type"], "user", "{origin}");
    assert_eq!(origin["sender_user"]["id"], 123456);
    assert_eq!(origin["sender_user"]["is_bot"], true);
    assert_eq!(origin["date"], source["date"]);
    assert_eq!(
        fake.message(USER, id(copy)).as_ref(),
        Some(copy),
        "kept whole"
    );

    // A forward of the forward names the first origin.
    let (status, body) = api.forward(TOKEN, GROUP, USER, id(copy)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(&body["result"]["forward_origin"], origin);

    assert_eq!(
        (fake.uploads_of(&sha), fake.stats().uploads),
        before,
        "a forward is no upload"
    );
    let stats = fake.stats();
    assert_eq!((stats.forwards, stats.messages), (2, 3), "{stats:?}");
    let logged: Vec<(Option<i64>, u16)> = fake
        .events()
        .iter()
        .filter(|e| e.method == "forwardMessage")
        .map(|e| (e.chat, e.status))
        .collect();
    assert_eq!(logged, [(Some(USER), 200), (Some(GROUP), 200)]);
    fake.shutdown().await;
}

/// A message never made, or deleted, cannot be forwarded: 400 "message to forward not
/// found", nothing made; an unknown source chat is "chat not found"; protected content
/// "can't be forwarded".
#[tokio::test]
async fn a_forward_needs_a_message_that_exists() {
    let fake = fake(FakeLimits::off()).await;
    let api = Api::new(&fake);
    let kept = api.photo(TOKEN, SUPERGROUP, 1, None).await;
    let gone = api.photo(TOKEN, SUPERGROUP, 2, None).await;
    let (status, _) = api
        .call(
            TOKEN,
            "deleteMessage",
            &[
                ("chat_id", SUPERGROUP.to_string()),
                ("message_id", id(&gone).to_string()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let not_found = Some("Bad Request: message to forward not found");
    for missing in [id(&gone), id(&kept) + 10] {
        let (status, body) = api.forward(TOKEN, USER, SUPERGROUP, missing).await;
        assert_eq!((status, body["description"].as_str()), (400, not_found));
    }
    // Message 1 of the bot's own box is not message 1 of the supergroup.
    let (status, body) = api.forward(TOKEN, USER, USER_2, id(&kept)).await;
    assert_eq!((status, body["description"].as_str()), (400, not_found));
    let (status, body) = api.forward(TOKEN, USER, -1_005_555_555_555, 1).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: chat not found"))
    );
    let (status, body) = api.forward(TOKEN, -1_005_555_555_555, SUPERGROUP, 1).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: chat not found"))
    );

    let protected = photo_form(SUPERGROUP, 3, None).text("protect_content", "true");
    let (status, body) = api.send(TOKEN, "sendPhoto", protected).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["has_protected_content"], true);
    let (status, body) = api
        .forward(TOKEN, USER, SUPERGROUP, id(&body["result"]))
        .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message can't be forwarded"))
    );

    assert_eq!(fake.messages_in(USER), 0, "no forward made a message");
    assert_eq!(fake.stats().forwards, 0);
    let (status, _) = api.forward(TOKEN, USER, SUPERGROUP, id(&kept)).await;
    assert_eq!(status, 200);
    fake.shutdown().await;
}

/// A forward is a message to `chat_id`: counted against its rate like a send, refused with
/// 429 inside its ban (prolonging it), and refused as a send is by a chat that refuses the
/// bot. A forward of a missing message is refused before any of that and counts nowhere.
#[tokio::test]
async fn a_forward_keeps_to_the_limits_and_chat_rules_of_its_target() {
    let slow = FakeRate::new(1, Duration::from_secs(30));
    let fake = fake(FakeLimits::off().with_chat(USER, slow)).await;
    let api = Api::new(&fake);
    let source = api.photo(TOKEN, SUPERGROUP, 1, None).await;

    // Refused for a missing message: not counted, so the forward after it still fits.
    let (status, _) = api.forward(TOKEN, USER, SUPERGROUP, 99).await;
    assert_eq!(status, 400);
    let (status, body) = api.forward(TOKEN, USER, SUPERGROUP, id(&source)).await;
    assert_eq!(status, 200, "the refused forward was not counted: {body}");

    // The chat's one message in 30 s is spent: a send is refused, then a forward inside
    // the ban is a violation.
    let (status, _) = api
        .send(TOKEN, "sendPhoto", photo_form(USER, 2, None))
        .await;
    assert_eq!(status, 429);
    let (status, body) = api.forward(TOKEN, USER, SUPERGROUP, id(&source)).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["parameters"]["retry_after"].as_u64() >= Some(1),
        "{body}"
    );
    let stats = fake.stats();
    assert_eq!(
        (stats.too_many_requests, stats.violations),
        (2, 1),
        "{stats:?}"
    );
    // A forward of a missing message inside the ban: refused for the message, no violation.
    let (status, _) = api.forward(TOKEN, USER, SUPERGROUP, 99).await;
    assert_eq!(status, 400);
    assert_eq!(fake.stats().violations, 1);
    assert_eq!(fake.messages_in(USER), 1);

    fake.set_chat_problem(GROUP, Some(ChatProblem::Kicked));
    let (status, body) = api.forward(TOKEN, GROUP, SUPERGROUP, id(&source)).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (403, Some("Forbidden: bot was kicked from the group chat"))
    );
    fake.set_chat_problem(GROUP, Some(ChatProblem::NoPhotoRights));
    let (status, _) = api.forward(TOKEN, GROUP, SUPERGROUP, id(&source)).await;
    assert_eq!(status, 400, "a forwarded photo is a photo");
    assert_eq!(fake.messages_in(GROUP), 0);
    fake.shutdown().await;
}

/// `sendMessage`: a text of 1 to 4096 characters (UTF-16 units) makes a message in the
/// bot's box like any send, under the chat's limits; an empty or longer one is refused
/// before it counts.
#[tokio::test]
async fn a_text_message_is_a_message_like_any_send() {
    let slow = FakeRate::new(1, Duration::from_secs(30));
    let fake = fake(FakeLimits::off().with_chat(USER, slow)).await;
    let api = Api::new(&fake);
    let text = |chat: i64, text: String| {
        let fields = [("chat_id", chat.to_string()), ("text", text)];
        let api = &api;
        async move { api.call(TOKEN, "sendMessage", &fields).await }
    };
    let photo = api.photo(TOKEN, USER_2, 1, None).await;

    let (status, body) = text(USER, String::new()).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message text is empty"))
    );
    // 4097 UTF-16 units (2049 characters outside the BMP, two units each): too long.
    let (status, body) = text(USER, "😀".repeat(2049)).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message is too long"))
    );
    let (status, body) = text(USER, "😀".repeat(2048)).await;
    assert_eq!(
        status, 200,
        "4096 units fit, and the refusals were not counted: {body}"
    );
    let message = &body["result"];
    assert_eq!(id(message), id(&photo) + 1, "the next id of the bot's box");
    assert_eq!(message["text"].as_str(), Some("😀".repeat(2048).as_str()));
    assert_eq!(message["chat"]["type"].as_str(), Some("private"));

    let (status, _) = text(USER, "again".to_owned()).await;
    assert_eq!(status, 429, "the chat's one message in 30 s is spent");
    let (status, _) = text(7_999_999, "hello".to_owned()).await;
    assert_eq!(status, 400, "chat not found");
    let stats = fake.stats();
    assert_eq!((stats.texts, stats.messages), (1, 2), "{stats:?}");
    fake.shutdown().await;
}

/// A client that leaves while Telegram is still at its upload (here: while the fake sleeps
/// its latency, after the message is made) does not undo it: the message exists, the upload
/// counts once and as a success, and the request is logged.
#[tokio::test]
async fn an_upload_whose_client_left_still_makes_its_message() {
    let fake = fake_with(
        FakeBotApi::builder()
            .with_limits(FakeLimits::off())
            .with_latency(Latency::fixed(Duration::from_millis(600))),
    )
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("a client");
    let gave_up = impatient
        .post(format!("{}/bot{TOKEN}/sendPhoto", fake.base_url()))
        .multipart(photo_form(SUPERGROUP, 1, Some("left early")))
        .send()
        .await
        .expect_err("the client leaves before the answer");
    assert!(gave_up.is_timeout(), "{gave_up}");
    // The connection is gone; the fake is still inside its latency.
    let message = fake
        .message(SUPERGROUP, 1)
        .expect("made before the latency");
    assert_eq!(message["caption"], "left early");
    assert!(fake.events().is_empty(), "not answered yet");

    tokio::time::sleep(Duration::from_millis(700)).await;
    let uploads = fake.uploads_of(&Sha256::of(&photo_bytes(1)));
    assert_eq!(
        (uploads.uploads, uploads.succeeded, uploads.failed),
        (1, 1, 0)
    );
    assert_eq!(
        fake.captions_in(SUPERGROUP),
        [Some("left early".to_owned())]
    );
    let events = fake.events();
    assert_eq!(events.len(), 1, "logged though nobody heard the answer");
    assert_eq!(
        (events[0].method.as_str(), events[0].status),
        ("sendPhoto", 200)
    );
    assert!(events[0].took >= Duration::from_millis(600));
    fake.shutdown().await;
}
