//! The warm-up chats a warm may go to, minus those Telegram refuses for now.
//!
//! A chat problem ("chat not found", the bot kicked, no right to post, administrator rights
//! needed) is a property of the chat, not of the media: the chat sits out for a while and the
//! warm moves to another one. It comes back after [`BENCH_FOR`], when the operator may have
//! fixed it; a chat still broken then costs one more refused send per period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a chat Telegram refused stays out of the pool.
pub(crate) const BENCH_FOR: Duration = Duration::from_secs(10 * 60);

/// Chats out of the pool, with why and until when.
#[derive(Debug, Default)]
pub(crate) struct Bench {
    // A std mutex: held for a map operation, never across an `.await`.
    benched: Mutex<HashMap<i64, (Instant, String)>>,
}

impl Bench {
    /// Takes `chat` out of the pool for [`BENCH_FOR`].
    pub(crate) fn bench(&self, chat: i64, reason: String) {
        self.lock()
            .insert(chat, (Instant::now() + BENCH_FOR, reason));
    }

    /// The chats of `chats` usable now, or, when none is, why each is not.
    pub(crate) fn usable(&self, chats: &[i64]) -> Result<Vec<i64>, String> {
        let now = Instant::now();
        let mut benched = self.lock();
        benched.retain(|_, (until, _)| *until > now);
        let usable: Vec<i64> = chats
            .iter()
            .copied()
            .filter(|c| !benched.contains_key(c))
            .collect();
        if !usable.is_empty() || chats.is_empty() {
            return Ok(usable);
        }
        Err(chats
            .iter()
            .map(|c| match benched.get(c) {
                Some((_, reason)) => format!("chat {c}: {reason}"),
                None => format!("chat {c}"),
            })
            .collect::<Vec<_>>()
            .join("; "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, String)>> {
        // One map operation per critical section: a poisoned lock holds a consistent map.
        self.benched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_benched_chat_sits_out_then_comes_back() {
        let bench = Bench::default();
        bench.bench(1, "Bad Request: chat not found".into());
        assert_eq!(bench.usable(&[1, 2]), Ok(vec![2]));
        bench.bench(2, "Forbidden: bot was kicked from the group chat".into());
        let err = bench.usable(&[1, 2]).unwrap_err();
        assert!(err.contains("chat 1: Bad Request: chat not found"), "{err}");
        assert!(err.contains("chat 2: Forbidden"), "{err}");
        tokio::time::advance(BENCH_FOR).await;
        assert_eq!(bench.usable(&[1, 2]), Ok(vec![1, 2]));
    }
}
