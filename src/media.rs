//! Domain types: what a media is, who owns its file_id, and where its bytes live.
//!
//! The identity of one warm file_id is a [`MediaKey`]: the bot that obtained it, the SHA-256 of
//! the bytes, and the [`MediaKind`] it was sent as. Telegram binds a file_id to one bot and one
//! media type, so all three are needed.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;

use crate::error::{Error, Result};

pub(crate) mod format;

/// A megabyte in the Bot API's limits ("10 MB", "50 MB"). We take the decimal, smaller value,
/// so that whatever we accept Telegram accepts too.
const MB: u64 = 1000 * 1000;

/// The kinds of media the Bot API can send, each with its own send method and file_id type.
///
/// ```
/// use prewarm::MediaKind;
///
/// let kind: MediaKind = "video_note".parse()?;
/// assert_eq!(kind, MediaKind::VideoNote);
/// assert_eq!(kind.as_str(), "video_note");
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// `sendPhoto`: Telegram recompresses it and returns several sizes.
    Photo,
    /// `sendVideo`.
    Video,
    /// `sendAnimation`: GIF or soundless H.264/MPEG-4.
    Animation,
    /// `sendDocument`: any file, sent as is.
    Document,
    /// `sendAudio`: music, shown in the player.
    Audio,
    /// `sendVoice`: OGG/OPUS (or MP3, M4A) voice message.
    Voice,
    /// `sendVideoNote`: a round video message.
    VideoNote,
    /// `sendSticker`: WEBP, TGS or WEBM sticker.
    Sticker,
}

impl MediaKind {
    /// Every kind, in declaration order.
    pub const ALL: [MediaKind; 8] = [
        MediaKind::Photo,
        MediaKind::Video,
        MediaKind::Animation,
        MediaKind::Document,
        MediaKind::Audio,
        MediaKind::Voice,
        MediaKind::VideoNote,
        MediaKind::Sticker,
    ];

    /// The Bot API's name for the kind (`"photo"`, `"video_note"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Animation => "animation",
            MediaKind::Document => "document",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "voice",
            MediaKind::VideoNote => "video_note",
            MediaKind::Sticker => "sticker",
        }
    }

    /// The largest file the public Bot API accepts by multipart upload: 10 MB for photos,
    /// 50 MB for everything else. A local Bot API server lifts this; see
    /// [`SizeLimits`].
    pub const fn upload_limit(self) -> u64 {
        match self {
            MediaKind::Photo => 10 * MB,
            _ => 50 * MB,
        }
    }

    /// The largest file Telegram fetches by URL: 5 MB for photos, 20 MB for the rest.
    pub const fn url_limit(self) -> u64 {
        match self {
            MediaKind::Photo => 5 * MB,
            _ => 20 * MB,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for MediaKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        MediaKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownKind { name: s.to_owned() })
    }
}

/// Per-kind upload size limits: the public Bot API's by default, or a local Bot API server's.
///
/// ```
/// use prewarm::{MediaKind, SizeLimits};
///
/// let public = SizeLimits::bot_api();
/// assert_eq!(public.limit(MediaKind::Photo), 10_000_000);
/// let local = SizeLimits::local_server();
/// assert_eq!(local.limit(MediaKind::Video), 2_000_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    photo: u64,
    other: u64,
}

impl SizeLimits {
    /// The public Bot API's limits (10 MB photos, 50 MB others).
    pub const fn bot_api() -> Self {
        Self {
            photo: MediaKind::Photo.upload_limit(),
            other: MediaKind::Document.upload_limit(),
        }
    }

    /// A local Bot API server's limits (photos stay at 10 MB, others up to 2000 MB).
    pub const fn local_server() -> Self {
        Self {
            photo: MediaKind::Photo.upload_limit(),
            other: 2000 * MB,
        }
    }

    /// The limit for `kind`, in bytes.
    pub const fn limit(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Photo => self.photo,
            _ => self.other,
        }
    }

    /// Checks `size` against the limit for `kind`.
    ///
    /// # Errors
    /// [`Error::EmptyMedia`] for zero bytes, [`Error::TooLarge`] over the limit.
    pub fn check(&self, kind: MediaKind, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::EmptyMedia { kind });
        }
        let limit = self.limit(kind);
        if size > limit {
            return Err(Error::TooLarge { kind, size, limit });
        }
        Ok(())
    }
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self::bot_api()
    }
}

/// A SHA-256 digest: the content address of a media's bytes.
///
/// ```
/// use prewarm::Sha256;
///
/// let digest = Sha256::of(b"abc");
/// assert_eq!(
///     digest.to_string(),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// assert_eq!(digest.to_string().parse::<Sha256>()?, digest);
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Hashes `data` in one go.
    pub fn of(data: &[u8]) -> Self {
        #[cfg(test)]
        HASHED_HERE.set(HASHED_HERE.get() + data.len() as u64);
        Self(sha2::Sha256::digest(data).into())
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes hashed on this thread: lets a test count the hashes a path costs (on a
    /// current-thread runtime, where small media are hashed inline).
    pub(crate) static HASHED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Incremental SHA-256 over a stream of chunks.
#[derive(Debug, Clone, Default)]
pub struct Sha256Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl Sha256Hasher {
    /// A new, empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        #[cfg(test)]
        HASHED_HERE.set(HASHED_HERE.get() + chunk.len() as u64);
        self.inner.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Sha256 {
        Sha256(self.inner.finalize().into())
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidInput {
            what: "sha256",
            reason: format!("expected 64 hex characters, got {s:?}"),
        };
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(invalid());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let (hi, lo) = (nibble(pair[0]), nibble(pair[1]));
            out[i] = (hi.ok_or_else(invalid)? << 4) | lo.ok_or_else(invalid)?;
        }
        Ok(Self(out))
    }
}

/// The identity of a bot, under which its file_ids are kept (a file_id is valid only for the
/// bot that obtained it).
///
/// Any stable name works (a slug, or the numeric id before the `:` in the token); never the
/// token itself. Cheap to clone.
///
/// ```
/// use prewarm::BotId;
///
/// let bot = BotId::new("shop_bot")?;
/// assert_eq!(bot.as_str(), "shop_bot");
/// assert!(BotId::new("").is_err());
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BotId(Arc<str>);

impl BotId {
    /// Validates and wraps a bot name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule broken. A value with a `:` is refused because it
    /// looks like a bot token, which must never be stored or logged.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        let reason = if name.is_empty() || name.len() > 64 {
            Some("must be 1 to 64 characters".to_owned())
        } else if name.contains(':') {
            Some("contains ':': pass the bot's id or a slug, never its token".to_owned())
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            Some("may hold only ASCII letters, digits, '_', '-' and '.'".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidInput {
                what: "bot id",
                reason,
            }),
            None => Ok(Self(name.into())),
        }
    }

    /// The bot id taken from a token's numeric prefix (`123456:ABC...` gives `123456`).
    ///
    /// # Errors
    /// [`Error::Config`] when the token is not of the form `<digits>:<secret>`; the error does
    /// not repeat the token.
    pub fn from_token(token: &str) -> Result<Self> {
        match token.split_once(':') {
            Some((id, secret))
                if !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !secret.is_empty() =>
            {
                Self::new(id)
            }
            _ => Err(Error::Config {
                message: "TELEGRAM_BOT_TOKEN is not of the form <bot id>:<secret> (as BotFather \
                          gives it)"
                    .to_owned(),
            }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one warm file_id: (bot, SHA-256 of the bytes, kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaKey {
    /// The bot the file_id belongs to.
    pub bot: BotId,
    /// The content hash of the media's bytes.
    pub sha256: Sha256,
    /// The kind the media is sent as.
    pub kind: MediaKind,
}

impl MediaKey {
    /// Builds a key.
    pub fn new(bot: BotId, sha256: Sha256, kind: MediaKind) -> Self {
        Self { bot, sha256, kind }
    }

    /// Where the media's bytes live in a [`MediaStore`](crate::MediaStore): content-addressed,
    /// shared by every bot and kind.
    pub fn object_key(&self) -> ObjectKey {
        ObjectKey::for_content(&self.sha256)
    }
}

impl fmt::Display for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.bot, self.kind, self.sha256)
    }
}

/// A Telegram file_id: send it instead of the bytes. Valid only for the bot that obtained it
/// and only as the kind it was obtained as. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId(Arc<str>);

impl FileId {
    /// Wraps a file_id string.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The file_id as Telegram gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an object lives in a [`MediaStore`](crate::MediaStore).
///
/// Keys are `/`-separated relative paths: no empty, `.` or `..` segment, no leading `/`, no
/// control characters, at most 1024 bytes. That keeps them safe as file paths in
/// [`FsStore`](crate::store::FsStore) and valid as S3 keys.
///
/// ```
/// use prewarm::{ObjectKey, Sha256};
///
/// let key = ObjectKey::for_content(&Sha256::of(b"abc"));
/// assert_eq!(key.as_str(), "media/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert!(ObjectKey::new("../etc/passwd").is_err());
/// # Ok::<(), prewarm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(Arc<str>);

impl ObjectKey {
    /// Validates a key.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the rule broken.
    pub fn new(key: impl AsRef<str>) -> Result<Self> {
        let key = key.as_ref();
        let bad = |reason: &'static str| Error::InvalidKey {
            key: key.chars().take(200).collect(),
            reason,
        };
        if key.is_empty() {
            return Err(bad("is empty"));
        }
        if key.len() > 1024 {
            return Err(bad("is longer than 1024 bytes"));
        }
        if key.starts_with('/') {
            return Err(bad("starts with '/': keys are relative"));
        }
        if key.chars().any(|c| c.is_control()) {
            return Err(bad("contains a control character"));
        }
        if key.contains('\\') {
            return Err(bad("contains '\\': use '/' to separate segments"));
        }
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("has an empty, '.' or '..' segment"));
        }
        Ok(Self(key.into()))
    }

    /// The content address of bytes with this digest: `media/<first two hex>/<hex>`.
    pub fn for_content(sha256: &Sha256) -> Self {
        let hex = sha256.to_hex();
        Self(format!("media/{}/{hex}", &hex[..2]).into())
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Milliseconds since the Unix epoch: the time unit of the queue, which durable backends store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The system's wall clock now.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// The time from `earlier` to this one, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        )
    }
}

/// A job for the warm queue: what to warm and what prioritising needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The media to warm.
    pub key: MediaKey,
    /// The size of its bytes.
    pub size: u64,
    /// When the job was first queued (kept across retries: it is what aging counts from).
    pub enqueued_at: Timestamp,
    /// Failed attempts so far (a rate-limit pause is not one).
    pub attempts: u32,
    /// Whether someone is waiting for this media right now (a send or a wait).
    pub demand: bool,
    /// Whether running the job soon spares a costly step later. The engine sets it when a
    /// save pins the media's bytes in its byte cache because the upload will need them
    /// (Telegram fetches no URL for this media, such as a video over 20 MB): warmed while
    /// they are at hand, the media is never read back from the store. The queue ranks such a
    /// job ahead of others within limits (see [`PriorityPolicy`](crate::PriorityPolicy)).
    /// Set by the push that queues (or revives) the job and kept until it finishes; a
    /// requeue of a dead job clears it.
    pub hot: bool,
}

impl Job {
    /// A fresh job with no attempts, no demand and not hot.
    pub fn new(key: MediaKey, size: u64, enqueued_at: Timestamp) -> Self {
        Self {
            key,
            size,
            enqueued_at,
            attempts: 0,
            demand: false,
            hot: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in MediaKind::ALL {
            assert_eq!(kind.as_str().parse::<MediaKind>().unwrap(), kind);
        }
        assert!(matches!(
            "gif".parse::<MediaKind>(),
            Err(Error::UnknownKind { name }) if name == "gif"
        ));
    }

    #[test]
    fn size_limits_refuse_empty_and_oversized() {
        let limits = SizeLimits::bot_api();
        assert!(matches!(
            limits.check(MediaKind::Photo, 0),
            Err(Error::EmptyMedia { .. })
        ));
        assert!(limits.check(MediaKind::Photo, 10_000_000).is_ok());
        assert!(matches!(
            limits.check(MediaKind::Photo, 10_000_001),
            Err(Error::TooLarge {
                size: 10_000_001,
                limit: 10_000_000,
                ..
            })
        ));
        assert!(limits.check(MediaKind::Video, 50_000_000).is_ok());
    }

    #[test]
    fn sha256_hex_round_trips_and_rejects_garbage() {
        let d = Sha256::of(b"hello");
        assert_eq!(d.to_hex().parse::<Sha256>().unwrap(), d);
        assert_eq!(d.to_hex().to_uppercase().parse::<Sha256>().unwrap(), d);
        assert!("zz".repeat(32).parse::<Sha256>().is_err());
        assert!("ab".parse::<Sha256>().is_err());
        let mut h = Sha256Hasher::new();
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.len(), 5);
        assert_eq!(h.finish(), d);
    }

    #[test]
    fn object_keys_refuse_traversal() {
        for bad in [
            "", "/abs", "a/../b", "..", "a//b", "a/./b", "a\\b", "a\u{0}b", "a/",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "media/ab/cd", "with space/ünï ©ode", "a..b/c"] {
            assert!(ObjectKey::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn bot_ids_refuse_tokens() {
        let err = BotId::new("123:secret-token").unwrap_err();
        assert!(!err.to_string().contains("secret-token"));
        assert_eq!(BotId::from_token("123:abc").unwrap().as_str(), "123");
        let err = BotId::from_token("not-a-token-secret").unwrap_err();
        assert!(!err.to_string().contains("not-a-token-secret"));
    }
}
