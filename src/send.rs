//! Cache-first sending through Telegram: the glue between [`PrewarmEngine`] and
//! [`TelegramUploader`] that bot code calls to deliver a media to a chat.
//!
//! It lives outside both: the engine knows no concrete uploader, and the uploader knows no
//! engine.

use std::time::Duration;

use tokio::time::Instant;

use crate::engine::metrics::Via;
use crate::engine::{PrewarmEngine, Sendable};
use crate::error::{Error, Result};
use crate::media::MediaKey;
use crate::upload::{MediaSource, SentMessage, TelegramUploader, UploadRequest};

/// Sends the media `key` to `chat_id`, cache first:
///
/// 1. its file_id when the engine holds one, or when its warm finishes within `wait`;
///    otherwise its bytes, uploaded straight to the chat, and the file_id Telegram answers is
///    recorded in the engine (the background warm then uploads nothing);
/// 2. when Telegram rejects the file_id ("wrong file identifier"), the engine invalidates it
///    and re-warms the media ([`PrewarmEngine::report_wrong_file_id`]), and the send is tried
///    again once, with the new file_id or the bytes.
///
/// ```no_run
/// use std::time::Duration;
/// use prewarm::{send_cached, MediaKey, PrewarmEngine, TelegramUploader};
///
/// # async fn demo(engine: PrewarmEngine, telegram: TelegramUploader, key: MediaKey) -> prewarm::Result<()> {
/// let sent = send_cached(&engine, &telegram, 42, &key, Duration::from_millis(500)).await?;
/// println!("message {} carries {}", sent.message_id, sent.uploaded.file_id);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::WarmFailed`] when the media's file_id was rejected more often than the engine's
/// re-warm limit allows, or rejected again right after the re-warm; [`Error::NotFound`] when
/// the media is neither cached nor stored; the uploader's classified errors
/// ([`Error::RateLimited`] when the chat is paused past the uploader's wait, ...).
pub async fn send_cached(
    engine: &PrewarmEngine,
    telegram: &TelegramUploader,
    chat_id: i64,
    key: &MediaKey,
    wait: Duration,
) -> Result<SentMessage> {
    let started = Instant::now();
    let result = match send_once(engine, telegram, chat_id, key, wait).await {
        Err(Error::WrongFileId { key, message }) => {
            tracing::info!(media = %key, %message, "Telegram rejected the file_id; re-warming and sending again");
            match send_once(engine, telegram, chat_id, &key, wait).await {
                Err(Error::WrongFileId { key, message }) => Err(Error::WarmFailed {
                    key,
                    reason: format!("Telegram rejected the re-warmed file_id too: {message}"),
                }),
                other => other,
            }
        }
        other => other,
    };
    engine.record_send(result.as_ref().map(|(_, via)| *via), started.elapsed());
    result.map(|(sent, _)| sent)
}

/// One send: by file_id, or by the bytes. A rejected file_id is reported to the engine
/// before the error is returned.
async fn send_once(
    engine: &PrewarmEngine,
    telegram: &TelegramUploader,
    chat_id: i64,
    key: &MediaKey,
    wait: Duration,
) -> Result<(SentMessage, Via)> {
    match engine.sendable(key, wait).await? {
        Sendable::FileId(file_id) => {
            let result = telegram.send_file_id(chat_id, key, &file_id).await;
            match &result {
                Err(Error::WrongFileId { .. }) => {
                    engine.report_wrong_file_id(key, &file_id).await?;
                }
                Ok(_) => {
                    // The message went out: forgetting earlier rejections can wait for the
                    // next good send if the queue does not answer now.
                    if let Err(e) = engine.report_sent(key).await {
                        tracing::debug!(media = %key, error = %e, "could not forgive earlier rejections");
                    }
                }
                Err(_) => {}
            }
            result.map(|sent| (sent, Via::FileId))
        }
        Sendable::Upload(source) => {
            let (size, source) = sized(source).await?;
            let request = UploadRequest {
                key: key.clone(),
                size,
                source,
            };
            let sent = telegram.send_upload(chat_id, request).await?;
            engine
                .record_file_id(key, sent.uploaded.file_id.clone())
                .await?;
            Ok((sent, Via::Upload))
        }
    }
}

/// The size of a source, without reading it: from memory, or the store's `head` (a media of
/// up to 2 GB with a local Bot API server never passes through memory whole).
async fn sized(source: MediaSource) -> Result<(u64, MediaSource)> {
    let size = source.size().await?;
    Ok((size, source))
}
