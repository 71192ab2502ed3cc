//! The Bot API over HTTP: one method call in, a `Message` or a classified [`ApiError`] out.
//!
//! The bot token sits in every request's path (`/bot<token>/<method>`), so it never leaves
//! this file: errors are stripped of their URL, and any text that still holds the token is
//! scrubbed before it becomes an error message.

use std::fmt;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use reqwest::header::RETRY_AFTER;
use reqwest::multipart::{Form, Part};

use super::reply::{ApiError, Envelope, Message};
use crate::media::MediaKind;
use crate::store::ByteStream;

/// A bot token, which never prints.
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself: for building request URLs and checking its form only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces the token, and its secret half on its own, wherever it appears in `text`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.0, "******");
        if let Some((_, secret)) = self.0.split_once(':')
            && secret.len() >= 8
        {
            out = out.replace(secret, "******");
        }
        out
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// How the media travels in a send call.
pub(crate) enum Input {
    /// A URL Telegram fetches itself.
    Url(String),
    /// A file_id Telegram already holds for this bot.
    FileId(String),
    /// The bytes, streamed in a multipart body.
    Upload {
        body: ByteStream,
        size: u64,
        file_name: String,
        mime: &'static str,
    },
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Url(_) => f.write_str("Url(<url>)"),
            Input::FileId(id) => write!(f, "FileId({id})"),
            Input::Upload {
                size, file_name, ..
            } => write!(f, "Upload({file_name}, {size} bytes)"),
        }
    }
}

/// The Bot API client of one bot.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Token,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// The Bot API method that sends `kind`.
pub(crate) fn method(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Photo => "sendPhoto",
        MediaKind::Video => "sendVideo",
        MediaKind::Animation => "sendAnimation",
        MediaKind::Document => "sendDocument",
        MediaKind::Audio => "sendAudio",
        MediaKind::Voice => "sendVoice",
        MediaKind::VideoNote => "sendVideoNote",
        MediaKind::Sticker => "sendSticker",
    }
}

/// Whether the send method of `kind` takes a caption (sendSticker and sendVideoNote do not).
pub(crate) fn takes_caption(kind: MediaKind) -> bool {
    !matches!(kind, MediaKind::Sticker | MediaKind::VideoNote)
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, base: String, token: Token) -> Self {
        Self { http, base, token }
    }

    fn url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.base, self.token.0)
    }

    /// Sends one media to `chat`, silently, with `caption` where the kind takes one.
    pub(crate) async fn send_media(
        &self,
        kind: MediaKind,
        chat: i64,
        input: Input,
        caption: Option<&str>,
    ) -> Result<Message, ApiError> {
        let field = kind.as_str();
        let mut params: Vec<(&str, String)> = vec![
            ("chat_id", chat.to_string()),
            ("disable_notification", "true".to_owned()),
        ];
        if let Some(caption) = caption.filter(|_| takes_caption(kind)) {
            params.push(("caption", caption.to_owned()));
        }
        if kind == MediaKind::Document {
            // Keep a document a document: without this Telegram may turn a PDF or an image
            // into another media type whose file_id we would not expect.
            params.push(("disable_content_type_detection", "true".to_owned()));
        }
        let request = self.http.post(self.url(method(kind)));
        let request = match input {
            Input::Url(value) | Input::FileId(value) => {
                let mut json = serde_json::Map::new();
                for (k, v) in params {
                    json.insert(k.to_owned(), serde_json::Value::String(v));
                }
                json.insert(field.to_owned(), serde_json::Value::String(value));
                request.json(&json)
            }
            Input::Upload {
                body,
                size,
                file_name,
                mime,
            } => {
                let mut form = Form::new();
                for (k, v) in params {
                    form = form.text(k, v);
                }
                let body = reqwest::Body::wrap_stream(
                    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                );
                // The filename is what makes the part a file to Telegram.
                let part = Part::stream_with_length(body, size)
                    .file_name(file_name)
                    .mime_str(mime)
                    .map_err(|e| ApiError::Rejected {
                        code: 0,
                        description: format!("bad MIME type {mime}: {e}"),
                    })?;
                request.multipart(form.part(field, part))
            }
        };
        self.execute(request).await
    }

    /// Sends 2 to 10 photos or videos as one album, silently. Answers one message per item,
    /// in order. <https://core.telegram.org/bots/api#sendmediagroup>
    pub(crate) async fn send_media_group(
        &self,
        chat: i64,
        items: Vec<(MediaKind, Input)>,
    ) -> Result<Vec<Message>, ApiError> {
        let mut form = Form::new()
            .text("chat_id", chat.to_string())
            .text("disable_notification", "true");
        let mut media = Vec::with_capacity(items.len());
        for (i, (kind, input)) in items.into_iter().enumerate() {
            let value = match input {
                Input::Url(v) | Input::FileId(v) => v,
                Input::Upload {
                    body,
                    size,
                    file_name,
                    mime,
                } => {
                    let name = format!("file{i}");
                    let body = reqwest::Body::wrap_stream(
                        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                    );
                    let part = Part::stream_with_length(body, size)
                        .file_name(file_name)
                        .mime_str(mime)
                        .map_err(|e| ApiError::Rejected {
                            code: 0,
                            description: format!("bad MIME type {mime}: {e}"),
                        })?;
                    form = form.part(name.clone(), part);
                    format!("attach://{name}")
                }
            };
            media.push(serde_json::json!({ "type": kind.as_str(), "media": value }));
        }
        let form = form.text("media", serde_json::Value::Array(media).to_string());
        let request = self.http.post(self.url("sendMediaGroup")).multipart(form);
        self.execute(request).await
    }

    /// Forwards message `message_id` of `from` to `chat`, silently: answers the new message,
    /// which carries the original's media and caption.
    /// <https://core.telegram.org/bots/api#forwardmessage>
    pub(crate) async fn forward_message(
        &self,
        chat: i64,
        from: i64,
        message_id: i64,
    ) -> Result<Message, ApiError> {
        let request = self
            .http
            .post(self.url("forwardMessage"))
            .json(&serde_json::json!({
                "chat_id": chat,
                "from_chat_id": from,
                "message_id": message_id,
                "disable_notification": true,
            }));
        self.execute(request).await
    }

    /// Sends a text message to `chat`, silently.
    /// <https://core.telegram.org/bots/api#sendmessage>
    pub(crate) async fn send_text(&self, chat: i64, text: &str) -> Result<Message, ApiError> {
        let request = self
            .http
            .post(self.url("sendMessage"))
            .json(&serde_json::json!({
                "chat_id": chat,
                "text": text,
                "disable_notification": true,
            }));
        self.execute(request).await
    }

    /// Deletes a message.
    pub(crate) async fn delete_message(&self, chat: i64, message_id: i64) -> Result<(), ApiError> {
        let request = self
            .http
            .post(self.url("deleteMessage"))
            .json(&serde_json::json!({ "chat_id": chat, "message_id": message_id }));
        self.execute::<bool>(request).await.map(|_| ())
    }

    /// `getMe`: checks the token. Answers the bot's user object.
    pub(crate) async fn get_me(&self) -> Result<serde_json::Value, ApiError> {
        self.execute(self.http.post(self.url("getMe"))).await
    }

    async fn execute<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = request.send().await.map_err(|e| self.network(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(response, 1 << 20)
            .await
            .map_err(|e| self.network(e))?;
        if (200..300).contains(&status) {
            match serde_json::from_slice::<Envelope<T>>(&body) {
                Ok(Envelope {
                    ok: true,
                    result: Some(result),
                    ..
                }) => return Ok(result),
                Ok(_) => {}
                Err(e) => {
                    return Err(ApiError::Unavailable {
                        description: format!("HTTP {status} with a reply we cannot read: {e}"),
                    });
                }
            }
        }
        Err(scrub_error(
            &self.token,
            ApiError::classify(status, &body, retry_after),
        ))
    }

    fn network(&self, e: reqwest::Error) -> ApiError {
        let timeout = e.is_timeout();
        // The URL holds the token: drop it from the error before anything prints it.
        let e = e.without_url();
        let mut text = e.to_string();
        // Name the causes too: "error sending request" alone says little.
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        ApiError::Unavailable {
            description: self.token.scrub(&format!(
                "{} calling the Bot API: {text}",
                if timeout {
                    "timed out"
                } else {
                    "network error"
                }
            )),
        }
    }
}

/// Reads at most `cap` bytes of a reply body (a reply is small JSON; a runaway body is cut).
async fn read_capped(response: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

fn scrub_error(token: &Token, e: ApiError) -> ApiError {
    match e {
        ApiError::RateLimited {
            retry_after,
            description,
        } => ApiError::RateLimited {
            retry_after,
            description: token.scrub(&description),
        },
        ApiError::UrlRefused { description } => ApiError::UrlRefused {
            description: token.scrub(&description),
        },
        ApiError::WrongFileId { description } => ApiError::WrongFileId {
            description: token.scrub(&description),
        },
        ApiError::ChatUnusable { code, description } => ApiError::ChatUnusable {
            code,
            description: token.scrub(&description),
        },
        ApiError::ChatMigrated { to, description } => ApiError::ChatMigrated {
            to,
            description: token.scrub(&description),
        },
        ApiError::Unauthorized { description } => ApiError::Unauthorized {
            description: token.scrub(&description),
        },
        ApiError::TooLarge { description } => ApiError::TooLarge {
            description: token.scrub(&description),
        },
        ApiError::Rejected { code, description } => ApiError::Rejected {
            code,
            description: token.scrub(&description),
        },
        ApiError::Unavailable { description } => ApiError::Unavailable {
            description: token.scrub(&description),
        },
    }
}
