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
    forget_with_a_file_id_drops_only_an_entry_delivered_with_it(journal).await;
    high_water_is_the_highest_delivered_id_per_chat(journal).await;
    high_water_survives_a_new_begin_a_forget_and_a_prune(journal).await;
    raise_lifts_the_high_water_and_never_lowers_it(journal).await;
    prune_drops_the_entries_begun_before_its_time(journal).await;
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
    journal.forget(&m, None).await.expect("forget");
    assert_eq!(journal.entry(&m).await.expect("entry"), None, "forgotten");
    journal.deliver(&m, &delivered(3)).await.expect("deliver");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        None,
        "a delivery for a media with no entry creates none"
    );
    journal
        .forget(&m, None)
        .await
        .expect("forgetting twice is no error");
    journal
        .forget(&m, Some(&delivered(3).file_id))
        .await
        .expect("forgetting a file_id of no entry is no error");
}

/// `forget` with a file_id drops the entry only when its delivery holds that file_id: not
/// one delivered with another, not a pending one (begun again since, perhaps by another
/// process).
pub async fn forget_with_a_file_id_drops_only_an_entry_delivered_with_it(
    journal: &dyn UploadJournal,
) {
    let bot = bot();
    let m = media(&bot, MediaKind::Video);
    let e = entry(&m, 7, Some(1), 1_000);
    journal.begin(&e).await.expect("begin");
    journal
        .forget(&m, Some(&delivered(2).file_id))
        .await
        .expect("forget");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        Some(e),
        "a pending entry holds no file_id: forgetting one keeps it"
    );
    journal.deliver(&m, &delivered(2)).await.expect("deliver");
    journal
        .forget(&m, Some(&delivered(3).file_id))
        .await
        .expect("forget");
    assert_eq!(
        journal
            .entry(&m)
            .await
            .expect("entry")
            .and_then(|e| e.delivered),
        Some(delivered(2)),
        "an entry delivered with another file_id stays"
    );
    journal
        .forget(&m, Some(&delivered(2).file_id))
        .await
        .expect("forget");
    assert_eq!(
        journal.entry(&m).await.expect("entry"),
        None,
        "an entry delivered with that file_id goes"
    );
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

/// The bot's high water, sorted by chat.
async fn high_water(journal: &dyn UploadJournal, bot: &BotId) -> Vec<(i64, i64)> {
    let mut high = journal.high_water(bot).await.expect("high water");
    high.sort_unstable();
    high
}

/// A chat's high water stays when the entry that raised it is begun again (its delivery
/// cleared), forgotten, or pruned with every other entry of the bot.
pub async fn high_water_survives_a_new_begin_a_forget_and_a_prune(journal: &dyn UploadJournal) {
    let bot = bot();
    let (a, b, c) = (
        media(&bot, MediaKind::Photo),
        media(&bot, MediaKind::Photo),
        media(&bot, MediaKind::Photo),
    );
    for (m, chat, id) in [(&a, 1, 10), (&b, 1, 4), (&c, 2, 20)] {
        journal
            .begin(&entry(m, chat, None, 1_000))
            .await
            .expect("begin");
        journal.deliver(m, &delivered(id)).await.expect("deliver");
    }
    assert_eq!(high_water(journal, &bot).await, vec![(1, 10), (2, 20)]);

    journal
        .begin(&entry(&a, 1, Some(10), 2_000))
        .await
        .expect("begin again");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(1, 10), (2, 20)],
        "a new begin of the media holding chat 1's highest id lowers nothing"
    );
    journal.forget(&c, None).await.expect("forget");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(1, 10), (2, 20)],
        "forgetting the media holding chat 2's highest id lowers nothing"
    );
    journal.deliver(&a, &delivered(7)).await.expect("deliver");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(1, 10), (2, 20)],
        "a delivery below the high water lowers nothing"
    );
    let dropped = journal
        .prune(&bot, Timestamp(u64::MAX))
        .await
        .expect("prune");
    assert_eq!(dropped, 2, "every entry left goes");
    assert!(
        journal
            .entries(&bot, Timestamp(0))
            .await
            .expect("entries")
            .is_empty()
    );
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(1, 10), (2, 20)],
        "a prune of every entry keeps the high water"
    );
}

/// `raise` lifts a chat's high water, or starts it, and never lowers it; it is the bot's
/// own, apart from another bot's in the same chat.
pub async fn raise_lifts_the_high_water_and_never_lowers_it(journal: &dyn UploadJournal) {
    let (bot, other) = (bot(), bot());
    let m = media(&bot, MediaKind::Audio);
    journal
        .begin(&entry(&m, 3, None, 1_000))
        .await
        .expect("begin");
    journal.deliver(&m, &delivered(30)).await.expect("deliver");
    journal.raise(&bot, 3, 25).await.expect("raise");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(3, 30)],
        "raising below the high water lowers nothing"
    );
    journal.raise(&bot, 3, 31).await.expect("raise");
    journal.raise(&bot, 4, 2).await.expect("raise");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(3, 31), (4, 2)],
        "raising above lifts it; raising in a new chat starts one"
    );
    journal.raise(&other, 3, 5).await.expect("raise");
    journal.raise(&other, 9, 50).await.expect("raise");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(3, 31), (4, 2)],
        "another bot's raises are not this bot's high water"
    );
    assert_eq!(
        high_water(journal, &other).await,
        vec![(3, 5), (9, 50)],
        "a bot's high water is its own, even in a chat shared with a higher one"
    );
    let n = media(&bot, MediaKind::Audio);
    journal
        .begin(&entry(&n, 3, Some(31), 2_000))
        .await
        .expect("begin");
    journal.deliver(&n, &delivered(32)).await.expect("deliver");
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(3, 32), (4, 2)],
        "a delivery above a raised high water lifts it"
    );
}

/// `prune` drops the bot's entries begun before its time, delivered or pending, of that bot
/// only; however high an old entry's message id, it goes.
pub async fn prune_drops_the_entries_begun_before_its_time(journal: &dyn UploadJournal) {
    let (bot, other) = (bot(), bot());
    let mut old = Vec::new();
    for id in [1, 3, 2] {
        let m = media(&bot, MediaKind::Photo);
        journal
            .begin(&entry(&m, 5, None, 1_000))
            .await
            .expect("begin");
        journal.deliver(&m, &delivered(id)).await.expect("deliver");
        old.push(m);
    }
    let stale = media(&bot, MediaKind::Video);
    journal
        .begin(&entry(&stale, 5, Some(3), 1_500))
        .await
        .expect("begin");
    old.push(stale);
    let recent = media(&bot, MediaKind::Photo);
    journal
        .begin(&entry(&recent, 6, None, 5_000))
        .await
        .expect("begin");
    journal
        .deliver(&recent, &delivered(9))
        .await
        .expect("deliver");
    // Begun just at the cut, delivered or not: kept.
    let at_cut = media(&bot, MediaKind::Photo);
    journal
        .begin(&entry(&at_cut, 6, None, 4_000))
        .await
        .expect("begin");
    journal
        .deliver(&at_cut, &delivered(8))
        .await
        .expect("deliver");
    let waiting = media(&bot, MediaKind::Video);
    journal
        .begin(&entry(&waiting, 5, Some(3), 4_000))
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

    let dropped = journal.prune(&bot, Timestamp(4_000)).await.expect("prune");
    assert_eq!(
        dropped, 4,
        "the three old delivered entries, chat 5's highest among them, and the old pending one"
    );
    for m in &old {
        assert_eq!(journal.entry(m).await.expect("entry"), None);
    }
    for m in [&recent, &at_cut, &waiting] {
        assert!(journal.entry(m).await.expect("entry").is_some(), "kept");
    }
    assert!(
        journal.entry(&theirs).await.expect("entry").is_some(),
        "another bot's entries are not pruned"
    );
    assert_eq!(
        high_water(journal, &bot).await,
        vec![(5, 3), (6, 9)],
        "pruning keeps the high water"
    );
}
