//! The [`RateBudget`] contract, behaviour by behaviour.
//!
//! Each behaviour takes two handles on one budget (clones of an in-memory one; two
//! connections to one schema for a shared one), as two processes of a bot would hold, and
//! uses a bot of its own, so that one budget serves them all. Rates are slow (one send in
//! seconds) so that the time the calls take does not matter.

use std::time::Duration;

use crate::media::BotId;
use crate::upload::{BudgetRequest, Grant, Rate, RateBudget};

/// Runs every budget behaviour below.
pub async fn run_all(a: &dyn RateBudget, b: &dyn RateBudget) {
    a_chat_grants_its_burst_then_asks_to_wait(a, b).await;
    the_bot_rate_caps_every_chat(a, b).await;
    the_chat_whose_slot_comes_first_is_picked(a, b).await;
    a_pause_holds_the_chat_and_the_bot(a, b).await;
    warms_keep_to_their_share_and_users_do_not(a, b).await;
    a_send_of_n_messages_counts_n(a, b).await;
    requests_that_are_no_messages_wait_out_pauses_only(a, b).await;
}

fn bot() -> BotId {
    BotId::new(format!("budget_{:08x}", fastrand::u32(..))).expect("a valid bot id")
}

const TEN_S: Duration = Duration::from_secs(10);

/// One per 10 s, no burst.
fn slow() -> Rate {
    Rate::new(1, TEN_S)
}

/// A hundred a second: never the limit.
fn fast() -> Rate {
    Rate::new(100, Duration::from_secs(1)).with_burst(100)
}

async fn take(budget: &dyn RateBudget, request: BudgetRequest<'_>) -> Grant {
    budget.take(&request).await.expect("the budget answers")
}

fn assert_wait(grant: Grant, about: Duration, what: &str) {
    match grant {
        // The calls themselves take a little of it.
        Grant::Wait(d) if d <= about && d + Duration::from_secs(2) > about => {}
        other => panic!("{what}: expected a wait of about {about:?}, got {other:?}"),
    }
}

/// A chat grants its burst, then asks to wait its interval; the other handle sees the same.
pub async fn a_chat_grants_its_burst_then_asks_to_wait(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    let chats = [(1, slow())];
    let request = BudgetRequest::new(&bot, fast(), &chats);
    assert_eq!(
        take(a, request).await,
        Grant::Go(1),
        "a fresh chat has a slot"
    );
    assert_wait(take(a, request).await, TEN_S, "the same handle, at once");
    assert_wait(
        take(b, request).await,
        TEN_S,
        "another handle on the same budget",
    );
}

/// The bot-wide rate holds across chats.
pub async fn the_bot_rate_caps_every_chat(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    let one = [(1, fast())];
    let two = [(2, fast())];
    assert_eq!(
        take(a, BudgetRequest::new(&bot, slow(), &one)).await,
        Grant::Go(1)
    );
    assert_wait(
        take(b, BudgetRequest::new(&bot, slow(), &two)).await,
        TEN_S,
        "a second chat inside the bot's interval",
    );
}

/// Among the chats given, the one whose slot comes first; the first given on ties.
pub async fn the_chat_whose_slot_comes_first_is_picked(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    let chats = [(5, slow()), (6, slow()), (7, slow())];
    let request = BudgetRequest::new(&bot, fast(), &chats);
    assert_eq!(take(a, request).await, Grant::Go(5), "ties go to the first");
    assert_eq!(take(b, request).await, Grant::Go(6), "5 is used");
    assert_eq!(take(a, request).await, Grant::Go(7), "5 and 6 are used");
    assert_wait(take(b, request).await, TEN_S, "all three used");
}

/// A pause holds its chat and the whole bot, on every handle; a shorter one later does not
/// cut it short.
pub async fn a_pause_holds_the_chat_and_the_bot(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    a.pause(&bot, 1, Duration::from_secs(30))
        .await
        .expect("pause");
    let one = [(1, fast())];
    let other = [(2, fast())];
    assert_wait(
        take(b, BudgetRequest::new(&bot, fast(), &one)).await,
        Duration::from_secs(30),
        "the paused chat",
    );
    assert_wait(
        take(b, BudgetRequest::new(&bot, fast(), &other)).await,
        Duration::from_secs(30),
        "another chat of the bot",
    );
    b.pause(&bot, 1, Duration::from_secs(5))
        .await
        .expect("pause");
    assert_wait(
        take(a, BudgetRequest::new(&bot, fast(), &other)).await,
        Duration::from_secs(30),
        "after a shorter pause",
    );
    let unrelated = self::bot();
    assert_eq!(
        take(a, BudgetRequest::new(&unrelated, fast(), &one)).await,
        Grant::Go(1),
        "another bot is not paused"
    );
}

/// Warms draw from their share too; sends to users only from the bot's rate.
pub async fn warms_keep_to_their_share_and_users_do_not(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    let bot_rate = Rate::new(10, TEN_S).with_burst(10);
    let share = slow();
    let warm_chats = [(1, fast()), (2, fast())];
    let warm = BudgetRequest::new(&bot, bot_rate, &warm_chats).warm(share);
    assert_eq!(take(a, warm).await, Grant::Go(1));
    assert_wait(take(b, warm).await, TEN_S, "a second warm inside the share");
    let user = [(42, fast())];
    assert_eq!(
        take(b, BudgetRequest::new(&bot, bot_rate, &user)).await,
        Grant::Go(42),
        "a send to a user still has its slot"
    );
}

/// A send of `n` messages (an album) moves the buckets by `n` intervals.
pub async fn a_send_of_n_messages_counts_n(a: &dyn RateBudget, b: &dyn RateBudget) {
    let bot = bot();
    let chats = [(1, slow())];
    let request = BudgetRequest::new(&bot, fast(), &chats);
    assert_eq!(take(a, request.cost(3)).await, Grant::Go(1));
    assert_wait(take(b, request).await, Duration::from_secs(30), "3 sends");
}

/// A request that is no message (a delete) takes no slot of its chat, but waits out its
/// pause.
pub async fn requests_that_are_no_messages_wait_out_pauses_only(
    a: &dyn RateBudget,
    b: &dyn RateBudget,
) {
    let bot = bot();
    let chats = [(1, slow())];
    let request = BudgetRequest::new(&bot, fast(), &chats);
    assert_eq!(take(a, request).await, Grant::Go(1));
    let delete = request.charge_chat(false);
    assert_eq!(take(b, delete).await, Grant::Go(1), "no chat slot needed");
    assert_eq!(take(a, delete).await, Grant::Go(1), "nor taken");
    a.pause(&bot, 1, Duration::from_secs(20))
        .await
        .expect("pause");
    assert_wait(
        take(b, delete).await,
        Duration::from_secs(20),
        "inside the pause",
    );
}
