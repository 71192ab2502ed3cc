//! AWS Signature Version 4, written out step by step.
//!
//! The steps follow the AWS reference
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>):
//! a canonical request, a string to sign over its hash, and an HMAC-SHA256 signature with a
//! key derived from the secret, the date, the region and the service. S3 differs from the
//! generic rules in one place, the path: it is encoded once and never normalised
//! (<https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>), so
//! callers pick [`s3_canonical_uri`] or [`generic_canonical_uri`].
//!
//! Deriving the signing key costs four HMACs; it only changes with the UTC date, so
//! [`SigningKeyCache`] keeps it, behind an atomic pointer that readers load without a lock.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The payload hash that tells the server not to check the body.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The hex SHA-256 of zero bytes.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The longest a presigned URL may live (S3 and R2 both cap it at 7 days).
pub(crate) const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Errors the signer reports; the store turns them into `prewarm::Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignError {
    /// A presigned URL's expiry outside 1 s ..= 7 days.
    Expiry(Duration),
    /// A time before 1970 or after 9999.
    Time,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Expiry(d) => write!(
                f,
                "a presigned URL must expire in 1 second to 7 days (604800 s), not {d:?}"
            ),
            SignError::Time => f.write_str("the clock is outside the years 1970 to 9999"),
        }
    }
}

/// A UTC instant in SigV4's `YYYYMMDD'T'HHMMSS'Z'` form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct AmzDate([u8; 16]);

impl AmzDate {
    /// The instant `t`, to the second.
    pub(crate) fn from_system_time(t: SystemTime) -> Result<Self, SignError> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError::Time)?
            .as_secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        if !(1970..=9999).contains(&y) {
            return Err(SignError::Time);
        }
        let mut buf = [b'0'; 16];
        put_digits(&mut buf[0..4], y as u64);
        put_digits(&mut buf[4..6], m as u64);
        put_digits(&mut buf[6..8], d as u64);
        buf[8] = b'T';
        put_digits(&mut buf[9..11], rem / 3600);
        put_digits(&mut buf[11..13], rem % 3600 / 60);
        put_digits(&mut buf[13..15], rem % 60);
        buf[15] = b'Z';
        Ok(Self(buf))
    }

    /// Parses `20150830T123600Z`.
    #[cfg(test)]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let b: [u8; 16] = s.as_bytes().try_into().ok()?;
        let digits = b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
        (digits && b[8] == b'T' && b[15] == b'Z').then_some(Self(b))
    }

    /// The full timestamp.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits, 'T' and 'Z' are ever written.
        std::str::from_utf8(&self.0).unwrap_or("19700101T000000Z")
    }

    /// The `YYYYMMDD` date part.
    pub(crate) fn date(&self) -> &str {
        &self.as_str()[..8]
    }
}

impl fmt::Debug for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an HTTP `Date` header (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate).
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_ascii_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_name = it.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let mi: u64 = hms.next()?.parse().ok()?;
    let se: u64 = hms.next()?.parse().ok()?;
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + se;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request")`.
pub(crate) fn derive_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> [u8; 32] {
    let mut k = Vec::with_capacity(4 + secret.len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&k, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Appends `input` percent-encoded per SigV4: every byte but the unreserved characters
/// `A-Z a-z 0-9 - . _ ~` (and `/` when `keep_slash`) becomes `%XX`, upper-case hex.
pub(crate) fn uri_encode_into(out: &mut String, input: &str, keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// `input` percent-encoded per SigV4 (see [`uri_encode_into`]).
pub(crate) fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut s = String::with_capacity(input.len() + 8);
    uri_encode_into(&mut s, input, keep_slash);
    s
}

/// S3's canonical URI: the decoded object path (`/bucket/key`) encoded once, `/` kept, never
/// normalised (`a//b` and `./` are distinct S3 keys). It is also the path to send.
pub(crate) fn s3_canonical_uri(decoded_path: &str) -> String {
    uri_encode(decoded_path, true)
}

/// The generic (non-S3) canonical URI: the path as sent on the wire, normalised when asked
/// (RFC 3986 dot segments removed, repeated slashes merged) and encoded again, so an encoded
/// `%3D` on the wire signs as `%253D`.
#[cfg_attr(not(test), allow(dead_code))] // S3 never uses it; the generic suite does
pub(crate) fn generic_canonical_uri(wire_path: &str, normalize: bool) -> String {
    let path = if normalize {
        normalize_path(wire_path)
    } else {
        wire_path.to_owned()
    };
    if path.is_empty() {
        return "/".to_owned();
    }
    uri_encode(&path, true)
}

#[cfg_attr(not(test), allow(dead_code))] // S3 never normalises
/// Removes `.` and `..` segments and empty segments, keeping a trailing slash.
pub(crate) fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    s.push('/');
    s.push_str(&out.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !out.is_empty() {
        s.push('/');
    }
    s
}

/// One request to sign. The query and headers are decoded, as the caller would send them
/// before URL encoding; the canonical URI comes from [`s3_canonical_uri`] or
/// [`generic_canonical_uri`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignableRequest<'a> {
    /// `GET`, `PUT`, ...
    pub(crate) method: &'a str,
    /// The canonical URI.
    pub(crate) canonical_uri: &'a str,
    /// Query parameters, decoded, in any order.
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// Headers to sign, any case and order, `host` included; duplicates are joined with `,`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub(crate) payload_hash: &'a str,
}

/// The results of one signing, each step kept for the known-answer tests.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))] // the intermediate steps are read by the tests
pub(crate) struct Signed {
    pub(crate) canonical_request: String,
    pub(crate) string_to_sign: String,
    pub(crate) signature: String,
    pub(crate) signed_headers: String,
    /// `Credential=.../aws4_request` scope, access key first.
    pub(crate) credential: String,
}

impl Signed {
    /// The `Authorization` header value.
    pub(crate) fn authorization(&self) -> String {
        format!(
            "{ALGORITHM} Credential={}, SignedHeaders={}, Signature={}",
            self.credential, self.signed_headers, self.signature
        )
    }
}

/// `s` encoded, borrowed when nothing needs encoding (the common case for S3's own
/// parameters).
fn encoded(s: &str) -> Cow<'_, str> {
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(uri_encode(s, false))
    }
}

/// Canonical query: each name and value encoded, sorted by name then value, `&`-joined.
fn canonical_query(out: &mut String, query: &[(&str, &str)], extra: &[(&str, &str)]) {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .iter()
        .chain(extra)
        .map(|(k, v)| (encoded(k), encoded(v)))
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// Canonical headers (`name:value\n` each, names lower-cased and sorted, values trimmed with
/// inner runs of whitespace collapsed, duplicates joined with `,` in their order) and the
/// signed-headers list.
fn canonical_headers(out: &mut String, headers: &[(&str, &str)]) -> String {
    let mut hs: Vec<(Cow<'_, str>, &str)> =
        headers.iter().map(|(k, v)| (lower(k.trim()), *v)).collect();
    // Stable: duplicate names keep their order.
    hs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut signed = String::with_capacity(hs.len() * 16);
    let mut prev: Option<&str> = None;
    for (name, value) in &hs {
        if prev == Some(&**name) {
            out.pop(); // the '\n' of the previous value
            out.push(',');
        } else {
            if prev.is_some() {
                signed.push(';');
            }
            signed.push_str(name);
            out.push_str(name);
            out.push(':');
        }
        let mut first = true;
        for word in value.split_ascii_whitespace() {
            if !first {
                out.push(' ');
            }
            out.push_str(word);
            first = false;
        }
        out.push('\n');
        prev = Some(name);
    }
    signed
}

/// `s` in lower case, borrowed when it already is.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Builds the canonical request from its parts; answers it and the signed-headers list.
fn canonical_request(req: &SignableRequest<'_>, canonical_query: &str) -> (String, String) {
    let mut headers = String::with_capacity(64 * req.headers.len());
    let signed = canonical_headers(&mut headers, req.headers);
    let mut c = String::with_capacity(
        req.method.len() + req.canonical_uri.len() + canonical_query.len() + headers.len() + 140,
    );
    c.push_str(req.method);
    c.push('\n');
    c.push_str(req.canonical_uri);
    c.push('\n');
    c.push_str(canonical_query);
    c.push('\n');
    c.push_str(&headers);
    c.push('\n');
    c.push_str(&signed);
    c.push('\n');
    c.push_str(req.payload_hash);
    (c, signed)
}

fn string_to_sign(time: &AmzDate, scope: &str, canonical_request: &str) -> String {
    let mut s = String::with_capacity(128);
    s.push_str(ALGORITHM);
    s.push('\n');
    s.push_str(time.as_str());
    s.push('\n');
    s.push_str(scope);
    s.push('\n');
    s.push_str(&sha256_hex(canonical_request.as_bytes()));
    s
}

/// Credentials. The secret never reaches `Debug`.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"******")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "******"),
            )
            .finish()
    }
}

/// One cached key.
struct CachedKey {
    date: [u8; 8],
    region: Box<str>,
    service: Box<str>,
    key: [u8; 32],
    /// HMAC keyed with `key`, its inner and outer pads already hashed: each signature then
    /// costs only the string to sign's blocks.
    mac: HmacSha256,
}

/// Signing keys by (UTC date, region, service), at most `capacity` of them, newest first.
///
/// Readers load an `Arc` of the current list through [`ArcSwap`]: no lock, no contention on
/// the hot path. A miss derives the key and publishes a new list (copy on write); with one
/// region and service that happens once a day. Two entries are enough across midnight UTC,
/// when requests signed with yesterday's date and today's can overlap.
pub(crate) struct SigningKeyCache {
    entries: ArcSwap<Vec<CachedKey>>,
    capacity: usize,
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.load();
        let scopes: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{}/{}/{}",
                    String::from_utf8_lossy(&e.date),
                    e.region,
                    e.service
                )
            })
            .collect();
        f.debug_struct("SigningKeyCache")
            .field("scopes", &scopes)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SigningKeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: ArcSwap::from_pointee(Vec::new()),
            capacity: capacity.max(1),
        }
    }

    /// How many keys are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// The key for the scope, derived on a miss.
    #[cfg(test)]
    pub(crate) fn get(&self, secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
        self.with(secret, date, region, service, |e| e.key)
    }

    /// An HMAC keyed with the scope's signing key, derived on a miss.
    pub(crate) fn mac(&self, secret: &str, date: &str, region: &str, service: &str) -> HmacSha256 {
        self.with(secret, date, region, service, |e| e.mac.clone())
    }

    fn with<T>(
        &self,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
        f: impl Fn(&CachedKey) -> T,
    ) -> T {
        {
            let entries = self.entries.load();
            if let Some(e) = entries.iter().find(|e| {
                e.date.as_slice() == date.as_bytes()
                    && &*e.region == region
                    && &*e.service == service
            }) {
                return f(e);
            }
        }
        let entry = CachedKey::derive(secret, date, region, service);
        let answer = f(&entry);
        let Ok(date_bytes) = <[u8; 8]>::try_from(date.as_bytes()) else {
            return answer; // not a YYYYMMDD date: sign, but do not cache
        };
        self.entries.rcu(|old| {
            let mut next = Vec::with_capacity(self.capacity);
            next.push(CachedKey {
                date: date_bytes,
                region: region.into(),
                service: service.into(),
                key: entry.key,
                mac: entry.mac.clone(),
            });
            for e in old.iter() {
                if next.len() == self.capacity {
                    break;
                }
                let same = e.date == date_bytes && &*e.region == region && &*e.service == service;
                if !same {
                    next.push(CachedKey {
                        date: e.date,
                        region: e.region.clone(),
                        service: e.service.clone(),
                        key: e.key,
                        mac: e.mac.clone(),
                    });
                }
            }
            next
        });
        answer
    }
}

impl CachedKey {
    fn derive(secret: &str, date: &str, region: &str, service: &str) -> Self {
        let key = derive_signing_key(secret, date, region, service);
        Self {
            date: <[u8; 8]>::try_from(date.as_bytes()).unwrap_or([b'0'; 8]),
            region: region.into(),
            service: service.into(),
            key,
            mac: keyed(&key),
        }
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Where the signer reads the time.
pub(crate) type ClockFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Signs requests for one set of credentials, region and service.
pub(crate) struct Signer {
    creds: Credentials,
    region: String,
    service: String,
    keys: SigningKeyCache,
    clock: ClockFn,
    /// Server time minus local time, in milliseconds, learnt from the server.
    skew_ms: AtomicI64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("creds", &self.creds)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("keys", &self.keys)
            .field("skew_ms", &self.skew_ms.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How a payload is declared in `x-amz-content-sha256`.
impl Signer {
    pub(crate) fn new(creds: Credentials, region: &str, service: &str, clock: ClockFn) -> Self {
        Self {
            creds,
            region: region.to_owned(),
            service: service.to_owned(),
            keys: SigningKeyCache::new(4),
            clock,
            skew_ms: AtomicI64::new(0),
        }
    }

    /// The corrected time: the injected clock plus the measured skew.
    pub(crate) fn now(&self) -> SystemTime {
        let t = (self.clock)();
        let skew = self.skew_ms.load(Ordering::Relaxed);
        if skew >= 0 {
            t + Duration::from_millis(skew as u64)
        } else {
            t.checked_sub(Duration::from_millis(skew.unsigned_abs()))
                .unwrap_or(t)
        }
    }

    /// The local clock, uncorrected.
    pub(crate) fn local_now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Records the server's time as read from a response `Date` header (1 s resolution)
    /// taken at local time `local`. Differences under 30 s are network and rounding noise
    /// and reset the correction; larger ones are a clock that is off, and later signatures
    /// use the server's time (S3 refuses requests more than 15 minutes off).
    pub(crate) fn observe_server_time(&self, server: SystemTime, local: SystemTime) {
        let diff_ms: i64 = match server.duration_since(local) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        let next = if diff_ms.abs() < 30_000 { 0 } else { diff_ms };
        let prev = self.skew_ms.swap(next, Ordering::Relaxed);
        if prev != next && next != 0 {
            tracing::warn!(
                skew_ms = next,
                "the local clock is off from the S3 server's; correcting signatures"
            );
        }
    }

    /// The correction in force: server time minus local time, in milliseconds.
    pub(crate) fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    fn scope(&self, time: &AmzDate) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            time.date(),
            self.region,
            self.service
        )
    }

    fn key(&self, time: &AmzDate) -> HmacSha256 {
        self.keys.mac(
            &self.creds.secret_access_key,
            time.date(),
            &self.region,
            &self.service,
        )
    }

    /// Signs for the `Authorization` header. The request's headers must already hold
    /// `x-amz-date` (= `time`), and `x-amz-security-token` when there is a session token;
    /// [`Signer::amz_headers`] gives both.
    pub(crate) fn sign_headers(&self, req: &SignableRequest<'_>, time: &AmzDate) -> Signed {
        self.sign_query(req, time, &self.key(time))
    }

    /// As [`Signer::sign_headers`], deriving the key afresh (the baseline in the bench).
    pub(crate) fn sign_headers_uncached(
        &self,
        req: &SignableRequest<'_>,
        time: &AmzDate,
    ) -> Signed {
        let key = derive_signing_key(
            &self.creds.secret_access_key,
            time.date(),
            &self.region,
            &self.service,
        );
        self.sign_query(req, time, &keyed(&key))
    }

    /// The `x-amz-date` and (with a session token) `x-amz-security-token` headers to add.
    pub(crate) fn session_token(&self) -> Option<&str> {
        self.creds.session_token.as_deref()
    }

    fn sign_with_key(
        &self,
        req: &SignableRequest<'_>,
        time: &AmzDate,
        key: &HmacSha256,
        canonical_query_string: &str,
        scope: &str,
    ) -> Signed {
        let (canonical_request, signed_headers) = canonical_request(req, canonical_query_string);
        let string_to_sign = string_to_sign(time, scope, &canonical_request);
        let mut mac = key.clone();
        mac.update(string_to_sign.as_bytes());
        let signature = hex(&mac.finalize().into_bytes());
        Signed {
            canonical_request,
            string_to_sign,
            signature,
            signed_headers,
            credential: format!("{}/{scope}", self.creds.access_key_id),
        }
    }

    fn sign_query(&self, req: &SignableRequest<'_>, time: &AmzDate, key: &HmacSha256) -> Signed {
        let mut query = String::with_capacity(64);
        canonical_query(&mut query, req.query, &[]);
        self.sign_with_key(req, time, key, &query, &self.scope(time))
    }

    /// Presigns: answers the full query string (the request's own parameters and the
    /// `X-Amz-*` ones, sorted, then `X-Amz-Signature`) and the steps. Only `req.headers` are
    /// signed (`host` at least); S3 URLs use [`UNSIGNED_PAYLOAD`].
    ///
    /// # Errors
    /// An expiry outside 1 s to 7 days.
    pub(crate) fn presign(
        &self,
        req: &SignableRequest<'_>,
        time: &AmzDate,
        expires_in: Duration,
    ) -> Result<(String, Signed), SignError> {
        if expires_in < Duration::from_secs(1) || expires_in > MAX_PRESIGN_EXPIRY {
            return Err(SignError::Expiry(expires_in));
        }
        let scope = self.scope(time);
        let credential = format!("{}/{scope}", self.creds.access_key_id);
        let expires = expires_in.as_secs().to_string();
        let mut names: Vec<Cow<'_, str>> =
            req.headers.iter().map(|(k, _)| lower(k.trim())).collect();
        names.sort_unstable();
        names.dedup();
        let signed_headers = names.join(";");
        let mut extra: Vec<(&str, &str)> = vec![
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", &credential),
            ("X-Amz-Date", time.as_str()),
            ("X-Amz-Expires", &expires),
            ("X-Amz-SignedHeaders", &signed_headers),
        ];
        if let Some(token) = self.creds.session_token.as_deref() {
            extra.push(("X-Amz-Security-Token", token));
        }
        // The canonical query is also the URL's query: built once, signature appended.
        let mut query = String::with_capacity(320);
        canonical_query(&mut query, req.query, &extra);
        let signed = self.sign_with_key(req, time, &self.key(time), &query, &scope);
        query.push_str("&X-Amz-Signature=");
        query.push_str(&signed.signature);
        Ok((query, signed))
    }
}

#[cfg(test)]
mod tests;
