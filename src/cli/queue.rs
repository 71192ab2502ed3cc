//! `prewarm status`, `prewarm dead`, `prewarm requeue`: the durable queue, read and repaired.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Failure, open_queue};
use crate::media::{BotId, MediaKey, MediaKind, Sha256, Timestamp};

pub(super) async fn status(json: bool) -> Result<(), Failure> {
    let store = open_queue().await?;
    let now = Timestamp::now();
    let bots = store.queue.summary(now).await?;
    if json {
        let bots: Vec<Value> = bots
            .iter()
            .map(|b| {
                json!({
                    "bot": b.bot.as_str(),
                    "queued": b.depth.queued,
                    "delayed": b.depth.delayed,
                    "claimed": b.depth.claimed,
                    "dead": b.depth.dead,
                    "oldest_job_age_s": b.oldest_age().map(|age| age.as_secs_f64()),
                    "uploads_last_minute": b.claims_last_minute,
                })
            })
            .collect();
        println!("{}", json!({ "bots": bots }));
        return Ok(());
    }
    if bots.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>10} {:>12}",
        "bot", "queued", "delayed", "claimed", "dead", "oldest", "uploads/min"
    );
    for b in &bots {
        let oldest = b
            .oldest_enqueued_at
            .map_or_else(|| "-".to_owned(), |t| human(now.since(t)));
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>10} {:>12}",
            b.bot.as_str(),
            b.depth.queued,
            b.depth.delayed,
            b.depth.claimed,
            b.depth.dead,
            oldest,
            b.claims_last_minute
        );
    }
    Ok(())
}

pub(super) async fn dead(limit: usize, json: bool) -> Result<(), Failure> {
    let store = open_queue().await?;
    let jobs = store.queue.dead(limit).await?;
    if json {
        let jobs: Vec<Value> = jobs
            .iter()
            .map(|j| {
                let k = &j.job.key;
                json!({
                    "key": k.to_string(),
                    "bot": k.bot.as_str(),
                    "kind": k.kind.to_string(),
                    "sha256": k.sha256.to_string(),
                    "size": j.job.size,
                    "attempts": j.job.attempts,
                    "last_error": j.last_error,
                })
            })
            .collect();
        println!("{}", json!({ "dead": jobs }));
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no dead jobs");
    }
    for j in &jobs {
        println!(
            "{}  {} bytes  {} attempts  {}",
            j.job.key,
            j.job.size,
            j.job.attempts,
            j.last_error.as_deref().unwrap_or("(no error recorded)")
        );
    }
    Ok(())
}

pub(super) async fn requeue(key: Option<&str>, all: bool, json: bool) -> Result<(), Failure> {
    let key = match (key, all) {
        (Some(key), false) => Some(parse_key(key)?),
        (None, true) => None,
        // clap enforces one of the two.
        _ => return Err(Failure::Usage("give a KEY or --all".to_owned())),
    };
    let store = open_queue().await?;
    let n = store
        .queue
        .requeue_dead(key.as_ref(), Timestamp::now())
        .await?;
    if json {
        println!("{}", json!({ "requeued": n }));
    } else {
        println!("requeued {n} job{}", if n == 1 { "" } else { "s" });
    }
    match key {
        Some(key) if n == 0 => Err(Failure::Reported(format!(
            "{key} has no dead job (see `prewarm dead`)"
        ))),
        _ => Ok(()),
    }
}

/// A key as [`MediaKey`]'s `Display` writes it: `BOT/KIND/SHA256`.
fn parse_key(text: &str) -> Result<MediaKey, Failure> {
    let bad = |why: String| {
        Failure::Usage(format!(
            "the key {text:?} is malformed ({why}): expected BOT/KIND/SHA256 as `prewarm dead` \
             prints it"
        ))
    };
    let mut parts = text.trim().split('/');
    let (Some(bot), Some(kind), Some(sha), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not three parts".to_owned()));
    };
    let bot = BotId::new(bot).map_err(|e| bad(e.to_string()))?;
    let kind: MediaKind = kind.parse().map_err(|e: crate::Error| bad(e.to_string()))?;
    let sha: Sha256 = sha.parse().map_err(|e: crate::Error| bad(e.to_string()))?;
    Ok(MediaKey::new(bot, sha, kind))
}

/// `95s` as `1m35s`, `4000s` as `1h06m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_display_writes_them() {
        let key = MediaKey::new(
            BotId::new("shop_bot").expect("bot"),
            Sha256::of(b"x"),
            MediaKind::Video,
        );
        let parsed = parse_key(&key.to_string()).expect("parses");
        assert_eq!(parsed, key);
        for bad in [
            "",
            "shop_bot",
            "shop_bot/video",
            "a/video/zz",
            "a/movie/00",
            "a/b/c/d",
        ] {
            assert!(
                matches!(parse_key(bad), Err(Failure::Usage(m)) if m.contains("BOT/KIND/SHA256")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ages_read_as_minutes_and_hours() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(95)), "1m35s");
        assert_eq!(human(Duration::from_secs(4000)), "1h06m");
    }
}
