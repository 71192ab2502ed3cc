//! LISTEN/NOTIFY: wake-ups from other instances, with a poll fallback.

use super::*;

/// Listens on the store's channel and raises `notify` for each notification (a burst of
/// notifications while nobody waits raises nothing: `notify_waiters` coalesces), on every
/// (re)connection, and every `poll` as a fallback. Reconnects with backoff.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    notify: Arc<Notify>,
    poll: Duration,
) {
    let mut failures = 0u32;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let n = notify.clone();
                let driver = async move {
                    loop {
                        match futures::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => n.notify_waiters(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the PostgreSQL listener lost its connection");
                                break;
                            }
                            None => break,
                        }
                    }
                };
                let work = async {
                    client.batch_execute(&format!("LISTEN {channel}")).await?;
                    failures = 0;
                    // We may have missed notifications while not listening.
                    notify.notify_waiters();
                    loop {
                        tokio::time::sleep(poll).await;
                        notify.notify_waiters();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), tokio_postgres::Error>(())
                };
                tokio::select! {
                    () = driver => {}
                    r = work => if let Err(e) = r {
                        tracing::warn!(error = %e, "LISTEN failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the PostgreSQL listener cannot connect"),
        }
        failures = failures.saturating_add(1);
        let pause = Duration::from_millis(100 << failures.min(6))
            .min(poll.max(Duration::from_millis(100)) * 5);
        // Meanwhile, waiters are woken by the poll fallback's cadence.
        notify.notify_waiters();
        tokio::time::sleep(pause).await;
    }
}
