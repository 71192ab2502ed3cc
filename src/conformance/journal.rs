//! The [`UploadJournal`] contract, behaviour by behaviour.
//!
//! Each behaviour uses a bot of its own, so that one journal serves them all.

use crate::media::{BotId, FileId, MediaKey, MediaKind, Sha256, Timestamp};
use crate::upload::{Delivered, JournalEntry, UploadJournal};

/// Runs every journal behaviour below.
pub async fn run_all(journal: &dyn UploadJournal) {
    a_begun_send_is_pending_until_delivered(journal).await;
    a_new_send_of_a_media_replaces_its_entry(journal).await;
    forget_drops_the_entry_and_a_late_delivery_changes_nothing(journal).await;
    entries_answer_by_start_time_and_bot(journal).await;
    high_water_is_the_highest_delivered_id_per_chat(journal).await;
    prune_keeps_recent_entries_and_each_chats_highest(journal).await;
}

fn bot() -> BotId {
    BotId::new(format!("journal_{:08x}", fastrand::u32(..))).expect("a valid bot id")
}

fn media(bot: &BotId, kind: MediaKind) -> MediaKey {
    MediaKey::new(
        bot.clone(),
        Sha256::of(&fastrand::u128(..).to_le_bytes()),
        kind,
    )
}

fn entry(media: &MediaKey, chat: i64, after: Option<i64>, at: u64) -> JournalEntry {
    JournalEntry {
        media: media.clone(),
        chat,
        after,
        started_at: Timestamp(at),
        delivered: None,
    }
}

fn delivered(message_id: i64) -> Delivered {
    Delivered {
        message_id,
        file_id: FileId::new(format!("file_{message_id}")),
    }
}

/// A begun send is in `entry` and `pending`, with what was written; once delivered it holds
/// the message and leaves `pending`.
pub async fn a_begun_send_is_pending_until_delivered(journal: &dyn UploadJournal) {
    let bot = bot();
    let m = media(&bot, MediaKind::Video);
    let e = entry(&m, -1_001_234_567_890, Some(41), 1_000);
    journal.begin(&e).await.expect("begin");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        Some(e.clone()),
        "a begun send reads back as written"
    );
    assert_eq!(
        journal.pending(&bot).await.expect("pending"),
        vec![e.clone()],
        "a begun send is pending"
    );
    journal.deliver(&m, &delivered(42)).await.expect("deliver");
    let got = journal
        .entry(&m)
        .await
        .expect("entry")
        .expect("still there");
    assert_eq!(got.delivered, Some(delivered(42)), "the delivery is kept");
    assert_eq!((got.chat, got.after), (e.chat, e.after));
    assert!(
        journal.pending(&bot).await.expect("pending").is_empty(),
        "a delivered send is no longer pending"
    );
}

/// `begin` for a media that has an entry replaces it, delivery and all.
pub async fn a_new_send_of_a_media_replaces_its_entry(journal: &dyn UploadJournal) {
    let bot = bot();
    let m = media(&bot, MediaKind::Photo);
    journal
        .begin(&entry(&m, 7, None, 1_000))
        .await
        .expect("begin");
    journal.deliver(&m, &delivered(5)).await.expect("deliver");
    let again = entry(&m, 8, Some(9), 2_000);
    journal.begin(&again).await.expect("begin again");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        Some(again),
        "the second begin replaces the first entry, and clears its delivery"
    );
    assert_eq!(journal.pending(&bot).await.expect("pending").len(), 1);
}

/// `forget` drops the entry; a delivery that comes after it changes nothing.
pub async fn forget_drops_the_entry_and_a_late_delivery_changes_nothing(
    journal: &dyn UploadJournal,
) {
    let bot = bot();
    let m = media(&bot, MediaKind::Document);
    journal
        .begin(&entry(&m, 7, Some(1), 1_000))
        .await
        .expect("begin");
    journal.forget(&m).await.expect("forget");
    assert_eq!(journal.entry(&m).await.expect("entry"), None, "forgotten");
    journal.deliver(&m, &delivered(3)).await.expect("deliver");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        None,
        "a delivery for a media with no entry creates none"
    );
    journal
        .forget(&m)
        .await
        .expect("forgetting twice is no error");
}

/// `entries` answers the bot's entries begun at or after the time, delivered or not, and
/// never another bot's.
pub async fn entries_answer_by_start_time_and_bot(journal: &dyn UploadJournal) {
    let (bot, other) = (bot(), bot());
    let old = media(&bot, MediaKind::Photo);
    let new = media(&bot, MediaKind::Photo);
    let newer = media(&bot, MediaKind::Audio);
    let theirs = media(&other, MediaKind::Photo);
    journal
        .begin(&entry(&old, 1, None, 1_000))
        .await
        .expect("begin");
    journal
        .begin(&entry(&new, 1, Some(2), 2_000))
        .await
        .expect("begin");
    journal
        .begin(&entry(&newer, 2, Some(3), 3_000))
        .await
        .expect("begin");
    journal
        .deliver(&newer, &delivered(4))
        .await
        .expect("deliver");
    journal
        .begin(&entry(&theirs, 1, None, 2_500))
        .await
        .expect("begin");
    let mut got: Vec<MediaKey> = journal
        .entries(&bot, Timestamp(2_000))
        .await
        .expect("entries")
        .into_iter()
        .map(|e| e.media)
        .collect();
    got.sort_by_key(|m| m.sha256.to_hex());
    let mut want = vec![new, newer];
    want.sort_by_key(|m| m.sha256.to_hex());
    assert_eq!(
        got, want,
        "entries since 2000: the two begun then or later, not the older one, not another bot's"
    );
    let pending = journal.pending(&bot).await.expect("pending");
    assert_eq!(
        pending.len(),
        2,
        "pending: the two not delivered, however old"
    );
    assert!(pending.iter().all(|e| e.media.bot == bot));
}

/// `high_water` answers, per chat, the highest message id delivered there.
pub async fn high_water_is_the_highest_delivered_id_per_chat(journal: &dyn UploadJournal) {
    let bot = bot();
    let group = -1_009_876_543_210;
    for (chat, id) in [(group, 10), (group, 12), (group, 11), (77, 3)] {
        let m = media(&bot, MediaKind::Photo);
        journal
            .begin(&entry(&m, chat, None, 1_000))
            .await
            .expect("begin");
        journal.deliver(&m, &delivered(id)).await.expect("deliver");
    }
    // A pending send has no message yet: it raises nothing.
    let m = media(&bot, MediaKind::Photo);
    journal
        .begin(&entry(&m, 77, Some(3), 2_000))
        .await
        .expect("begin");
    let mut high = journal.high_water(&bot).await.expect("high water");
    high.sort_unstable();
    assert_eq!(high, vec![(group, 12), (77, 3)]);
    assert!(
        journal
            .high_water(&self::bot())
            .await
            .expect("high water")
            .is_empty(),
        "a bot with no entries has no high water"
    );
}

/// `prune` drops old delivered entries but each chat's highest, and old pending ones apart,
/// of that bot only.
pub async fn prune_keeps_recent_entries_and_each_chats_highest(journal: &dyn UploadJournal) {
    let (bot, other) = (bot(), bot());
    let mut old = Vec::new();
    for id in [1, 2, 3] {
        let m = media(&bot, MediaKind::Photo);
        journal
            .begin(&entry(&m, 5, None, 1_000))
            .await
            .expect("begin");
        journal.deliver(&m, &delivered(id)).await.expect("deliver");
        old.push(m);
    }
    let recent = media(&bot, MediaKind::Photo);
    journal
        .begin(&entry(&recent, 6, None, 5_000))
        .await
        .expect("begin");
    journal
        .deliver(&recent, &delivered(9))
        .await
        .expect("deliver");
    let stale = media(&bot, MediaKind::Video);
    journal
        .begin(&entry(&stale, 5, Some(3), 1_500))
        .await
        .expect("begin");
    let fresh = media(&bot, MediaKind::Video);
    journal
        .begin(&entry(&fresh, 5, Some(3), 4_000))
        .await
        .expect("begin");
    let theirs = media(&other, MediaKind::Photo);
    journal
        .begin(&entry(&theirs, 5, None, 1_000))
        .await
        .expect("begin");
    journal
        .deliver(&theirs, &delivered(1))
        .await
        .expect("deliver");

    let dropped = journal
        .prune(&bot, Timestamp(4_000), Timestamp(2_000))
        .await
        .expect("prune");
    assert_eq!(
        dropped, 3,
        "two old delivered entries and one stale pending one"
    );
    assert_eq!(journal.entry(&old[0]).await.expect("entry"), None);
    assert_eq!(journal.entry(&old[1]).await.expect("entry"), None);
    assert!(
        journal.entry(&old[2]).await.expect("entry").is_some(),
        "chat 5's highest delivered entry stays, however old"
    );
    assert!(journal.entry(&recent).await.expect("entry").is_some());
    assert_eq!(journal.entry(&stale).await.expect("entry"), None);
    assert!(journal.entry(&fresh).await.expect("entry").is_some());
    assert!(
        journal.entry(&theirs).await.expect("entry").is_some(),
        "another bot's entries are not pruned"
    );
    let mut high = journal.high_water(&bot).await.expect("high water");
    high.sort_unstable();
    assert_eq!(high, vec![(5, 3), (6, 9)], "pruning keeps the high water");
}
