//! Known-answer tests over the official SigV4 suites and the S3 worked examples, copied into
//! `tests/fixtures/sigv4/` (see its README for source and licence).

use std::path::{Path, PathBuf};

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AKID: &str = "AKIDEXAMPLE";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn signer(region: &str, service: &str, token: Option<&str>) -> Signer {
    let creds = Credentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: token.map(str::to_owned),
    };
    Signer::new(creds, region, service, Arc::new(SystemTime::now))
}

/// A raw request from a `.req` / `request.txt` file.
struct RawRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

/// How a folded (obsolete multi-line) header value is read: the legacy suite's harness
/// made each continuation line another value of the header (so they join with `,`); the CRT
/// suite's unfolds them into one value (joined with a space).
#[derive(Clone, Copy, PartialEq)]
enum Folding {
    Repeat,
    Unfold,
}

fn parse_request(text: &str) -> RawRequest {
    parse_request_with(text, Folding::Unfold)
}

fn parse_request_with(text: &str, folding: Folding) -> RawRequest {
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, ""),
    };
    let mut lines = head.lines();
    let first = lines.next().expect("request line");
    let (method, rest) = first.split_once(' ').expect("method");
    let target = rest.rsplit_once(" HTTP/").expect("version").0;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            // An obsolete folded continuation line.
            let last = headers.last_mut().expect("continuation after a header");
            if folding == Folding::Repeat {
                let name = last.0.clone();
                headers.push((name, line.trim().to_owned()));
            } else {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else {
            let (k, v) = line.split_once(':').expect("header");
            headers.push((k.to_owned(), v.to_owned()));
        }
    }
    RawRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn suite_time() -> AmzDate {
    AmzDate::parse("20150830T123600Z").unwrap()
}

/// The legacy AWS suite: every case folder with a `.creq`, header signing, generic path
/// rules (normalised, encoded again).
#[test]
fn legacy_aws_suite() {
    let root = fixtures();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() && p.file_name().unwrap() != "aws-signing-test-suite-v4" {
            dirs.push(p.clone());
            for sub in std::fs::read_dir(&p).unwrap() {
                let s = sub.unwrap().path();
                if s.is_dir() {
                    dirs.push(s);
                }
            }
        }
    }
    let mut ran = 0;
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let creq = dir.join(format!("{name}.creq"));
        if !creq.exists() {
            continue;
        }
        let req = parse_request_with(&read(&dir.join(format!("{name}.req"))), Folding::Repeat);
        let signer = signer("us-east-1", "service", None);
        let uri = generic_canonical_uri(&req.path, true);
        let q = pairs(&req.query);
        let h = pairs(&req.headers);
        let hash = sha256_hex(&req.body);
        let r = SignableRequest {
            method: &req.method,
            canonical_uri: &uri,
            query: &q,
            headers: &h,
            payload_hash: &hash,
        };
        let signed = signer.sign_headers(&r, &suite_time());
        assert_eq!(
            signed.canonical_request,
            read(&creq),
            "{name}: canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            read(&dir.join(format!("{name}.sts"))),
            "{name}: string to sign"
        );
        assert_eq!(
            signed.authorization(),
            read(&dir.join(format!("{name}.authz"))),
            "{name}: authorization"
        );
        ran += 1;
    }
    assert_eq!(ran, 31, "the legacy suite has 31 cases");
}

#[derive(Debug)]
struct Context {
    normalize: bool,
    sign_body: bool,
    token: Option<String>,
    expires: u64,
}

/// Enough JSON for `context.json`: the flat fields we read.
fn parse_context(text: &str) -> Context {
    let field = |name: &str| -> Option<String> {
        let i = text.find(&format!("\"{name}\""))?;
        let rest = text[i + name.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        let end = if let Some(s) = rest.strip_prefix('"') {
            return Some(s[..s.find('"')?].to_owned());
        } else {
            rest.find([',', '\n', '}'])?
        };
        Some(rest[..end].trim().to_owned())
    };
    assert_eq!(field("region").as_deref(), Some("us-east-1"));
    assert_eq!(field("service").as_deref(), Some("service"));
    assert_eq!(field("secret_access_key").as_deref(), Some(SECRET));
    assert_eq!(field("timestamp").as_deref(), Some("2015-08-30T12:36:00Z"));
    Context {
        normalize: field("normalize").as_deref() == Some("true"),
        sign_body: field("sign_body").as_deref() == Some("true"),
        token: field("token"),
        expires: field("expiration_in_seconds").unwrap().parse().unwrap(),
    }
}

/// The CRT suite: header and presigned (query) variants. Its harness takes the request path
/// as a URI and decodes it, then normalises when `normalize` says so, then encodes once.
#[test]
fn crt_suite() {
    let root = fixtures().join("aws-signing-test-suite-v4");
    let mut ran = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let ctx_path = dir.join("context.json");
        if !ctx_path.exists() {
            continue; // the two old-format double-encoding cases: see below
        }
        let ctx = parse_context(&read(&ctx_path));
        let mut req = parse_request(&read(&dir.join("request.txt")));
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-date"));
        let decoded = percent_decode(&req.path);
        let path = if ctx.normalize {
            normalize_path(&decoded)
        } else {
            decoded
        };
        let uri = s3_canonical_uri(&path);
        // "header-after": the token is added after signing, so it is not signed.
        let token = ctx
            .token
            .as_deref()
            .filter(|_| name != "post-sts-header-after");
        let signer = signer("us-east-1", "service", token);
        let body_hash = sha256_hex(&req.body);
        let q = pairs(&req.query);

        // Header variant.
        let mut headers = req.headers.clone();
        headers.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
        if ctx.sign_body {
            headers.push(("x-amz-content-sha256".into(), body_hash.clone()));
        }
        if let Some(t) = token {
            headers.push(("X-Amz-Security-Token".into(), t.to_owned()));
        }
        let h = pairs(&headers);
        let r = SignableRequest {
            method: &req.method,
            canonical_uri: &uri,
            query: &q,
            headers: &h,
            payload_hash: &body_hash,
        };
        let signed = signer.sign_headers(&r, &suite_time());
        assert_eq!(
            signed.canonical_request,
            read(&dir.join("header-canonical-request.txt")),
            "{name}: header canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            read(&dir.join("header-string-to-sign.txt")),
            "{name}: header string to sign"
        );
        assert_eq!(
            signed.signature,
            read(&dir.join("header-signature.txt")).trim(),
            "{name}: header signature"
        );
        let sreq = read(&dir.join("header-signed-request.txt"));
        assert!(
            sreq.contains(&format!("Authorization:{}", signed.authorization())),
            "{name}: signed request"
        );

        // Query (presigned) variant: only the request's own headers are signed.
        let h = pairs(&req.headers);
        let r = SignableRequest { headers: &h, ..r };
        let (query, signed) = signer
            .presign(&r, &suite_time(), Duration::from_secs(ctx.expires))
            .unwrap();
        assert_eq!(
            signed.canonical_request,
            read(&dir.join("query-canonical-request.txt")),
            "{name}: query canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            read(&dir.join("query-string-to-sign.txt")),
            "{name}: query string to sign"
        );
        let sig = read(&dir.join("query-signature.txt"));
        assert_eq!(signed.signature, sig.trim(), "{name}: query signature");
        assert!(query.ends_with(&format!("&X-Amz-Signature={}", sig.trim())));
        ran += 1;
    }
    assert_eq!(ran, 38, "38 CRT cases carry a context.json");
}

/// The two old-format cases of the CRT suite: generic services encode the wire path again.
/// Their signed requests use other credentials than their canonical requests, so only the
/// canonical request and string to sign are checked.
#[test]
fn crt_double_encoding() {
    let root = fixtures().join("aws-signing-test-suite-v4");
    for name in ["double-url-encode", "double-encode-path"] {
        let dir = root.join(name);
        let mut req = parse_request(&read(&dir.join("request.txt")));
        let creq = read(&dir.join("header-canonical-request.txt"));
        let time_line = creq.lines().find(|l| l.starts_with("x-amz-date:")).unwrap();
        let time = AmzDate::parse(&time_line["x-amz-date:".len()..]).unwrap();
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-date"));
        req.headers
            .push(("X-Amz-Date".into(), time.as_str().into()));
        let uri = generic_canonical_uri(&req.path, true);
        let q = pairs(&req.query);
        let h = pairs(&req.headers);
        let hash = sha256_hex(&req.body);
        let r = SignableRequest {
            method: &req.method,
            canonical_uri: &uri,
            query: &q,
            headers: &h,
            payload_hash: &hash,
        };
        let sts_path = dir.join("header-string-to-sign.txt");
        let (region, service) = if sts_path.exists() {
            let sts = read(&sts_path);
            let scope: Vec<&str> = sts.lines().nth(2).unwrap().split('/').collect();
            (scope[1].to_owned(), scope[2].to_owned())
        } else {
            ("us-east-1".to_owned(), "service".to_owned())
        };
        let signed = signer(&region, &service, None).sign_headers(&r, &time);
        assert_eq!(signed.canonical_request, creq, "{name}: canonical request");
        if sts_path.exists() {
            assert_eq!(
                signed.string_to_sign,
                read(&sts_path).trim_end(),
                "{name}: string to sign"
            );
        }
    }
}

// ---- S3 worked examples (tests/fixtures/sigv4/s3-examples.md) ----

const S3_AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn s3_signer() -> Signer {
    let creds = Credentials {
        access_key_id: S3_AKID.into(),
        secret_access_key: S3_SECRET.into(),
        session_token: None,
    };
    Signer::new(creds, "us-east-1", "s3", Arc::new(SystemTime::now))
}

fn s3_time() -> AmzDate {
    AmzDate::parse("20130524T000000Z").unwrap()
}

#[test]
fn s3_signing_key() {
    assert_eq!(
        hex(&derive_signing_key(
            S3_SECRET,
            "20130524",
            "us-east-1",
            "s3"
        )),
        "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378"
    );
    assert_eq!(
        hex(&derive_signing_key(SECRET, "20240101", "auto", "s3")),
        "ef24ee0772e0f89ae8dfa17d2609fb2e780ab45c2de51561aa95431d80d13000"
    );
}

const HOST: &str = "examplebucket.s3.amazonaws.com";

fn s3_case(
    method: &str,
    decoded_path: &str,
    query: &[(&str, &str)],
    extra_headers: &[(&str, &str)],
    payload: &str,
) -> Signed {
    let uri = s3_canonical_uri(decoded_path);
    let mut headers = vec![
        ("host", HOST),
        ("x-amz-content-sha256", payload),
        ("x-amz-date", "20130524T000000Z"),
    ];
    headers.extend_from_slice(extra_headers);
    s3_signer().sign_headers(
        &SignableRequest {
            method,
            canonical_uri: &uri,
            query,
            headers: &headers,
            payload_hash: payload,
        },
        &s3_time(),
    )
}

#[test]
fn s3_a1_get_object_with_range() {
    let s = s3_case(
        "GET",
        "/test.txt",
        &[],
        &[("Range", "bytes=0-9")],
        EMPTY_SHA256,
    );
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    assert_eq!(
        s.signature,
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    assert_eq!(
        s.signed_headers,
        "host;range;x-amz-content-sha256;x-amz-date"
    );
}

#[test]
fn s3_a2_put_object_dollar_key() {
    let body_hash = sha256_hex(b"Welcome to Amazon S3.");
    assert_eq!(
        body_hash,
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    );
    let s = s3_case(
        "PUT",
        "/test$file.text",
        &[],
        &[
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ],
        &body_hash,
    );
    assert!(
        s.canonical_request
            .starts_with("PUT\n/test%24file.text\n\n")
    );
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
    );
    assert_eq!(
        s.signature,
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    );
}

#[test]
fn s3_a3_a4_queries() {
    let s = s3_case("GET", "/", &[("lifecycle", "")], &[], EMPTY_SHA256);
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca"
    );
    assert_eq!(
        s.signature,
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    );
    let s = s3_case(
        "GET",
        "/",
        &[("prefix", "J"), ("max-keys", "2")],
        &[],
        EMPTY_SHA256,
    );
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7"
    );
    assert_eq!(
        s.signature,
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    );
}

#[test]
fn s3_b1_presigned_get() {
    let uri = s3_canonical_uri("/test.txt");
    let (query, s) = s3_signer()
        .presign(
            &SignableRequest {
                method: "GET",
                canonical_uri: &uri,
                query: &[],
                headers: &[("host", HOST)],
                payload_hash: UNSIGNED_PAYLOAD,
            },
            &s3_time(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
    );
    assert_eq!(
        format!("https://{HOST}{uri}?{query}"),
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

/// C1/C2 (chunked `STREAMING-*` uploads): only the seed signature applies to us, since R2
/// refuses chunked uploads and we never send them; the seed is an ordinary header signature.
#[test]
fn s3_c1_c2_seed_signatures() {
    let signer = Signer::new(
        Credentials {
            access_key_id: S3_AKID.into(),
            secret_access_key: S3_SECRET.into(),
            session_token: None,
        },
        "us-east-1",
        "s3",
        Arc::new(SystemTime::now),
    );
    let uri = s3_canonical_uri("/examplebucket/chunkObject.txt");
    let c1 = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    let s = signer.sign_headers(
        &SignableRequest {
            method: "PUT",
            canonical_uri: &uri,
            query: &[],
            headers: &[
                ("content-encoding", "aws-chunked"),
                ("content-length", "66824"),
                ("host", "s3.amazonaws.com"),
                ("x-amz-content-sha256", c1),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-decoded-content-length", "66560"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload_hash: c1,
        },
        &s3_time(),
    );
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "cee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455"
    );
    assert_eq!(
        s.signature,
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    );
    let c2 = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    let s = signer.sign_headers(
        &SignableRequest {
            method: "PUT",
            canonical_uri: &uri,
            query: &[],
            headers: &[
                ("content-encoding", "aws-chunked"),
                ("host", "s3.amazonaws.com"),
                ("x-amz-content-sha256", c2),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-decoded-content-length", "66560"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ],
            payload_hash: c2,
        },
        &s3_time(),
    );
    assert_eq!(
        sha256_hex(s.canonical_request.as_bytes()),
        "44d48b8c2f70eae815a0198cc73d7a546a73a93359c070abbaa5e6c7de112559"
    );
    assert_eq!(
        s.signature,
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    );
}

// ---- R2-shaped vectors (D1-D3) ----

const R2_HOST: &str = "0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com";

fn r2_time() -> AmzDate {
    AmzDate::parse("20240101T000000Z").unwrap()
}

#[test]
fn r2_d1_presigned_get() {
    let uri = s3_canonical_uri("/media/photos/cat 1.jpg");
    assert_eq!(uri, "/media/photos/cat%201.jpg");
    let (query, s) = signer("auto", "s3", None)
        .presign(
            &SignableRequest {
                method: "GET",
                canonical_uri: &uri,
                query: &[],
                headers: &[("host", R2_HOST)],
                payload_hash: UNSIGNED_PAYLOAD,
            },
            &r2_time(),
            Duration::from_secs(3600),
        )
        .unwrap();
    assert!(
        s.string_to_sign
            .ends_with("\nb170b261273979b475dc6b8f2a08be1d4729b22a5caee829e8b3455faf944263")
    );
    assert_eq!(
        format!("https://{R2_HOST}{uri}?{query}"),
        "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com/media/photos/cat%201.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Fauto%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=5f14fc3b51dc2002ff6101d68c8ad61e2d704d0bc31610bd5c08b1b32975e953"
    );
}

#[test]
fn r2_d2_d3_put_signed_and_unsigned() {
    let uri = s3_canonical_uri("/media/photos/cat 1.jpg");
    let signer = signer("auto", "s3", None);
    for (payload, creq_hash, sig) in [
        (
            sha256_hex(b"hello"),
            "cdeeca2ac4baa174b1cb0cbf5ef024503578e9175098d66ace1be8dde0e383a5",
            "2c2060d5a7cc83ddaeb182afdece5c6471f642d81b32bb4e61b54e81c0ba2196",
        ),
        (
            UNSIGNED_PAYLOAD.to_owned(),
            "64960aaabc9185b3877c1fd43b0c75787bf5ef017491ec5d47ac5169a46c0708",
            "d7e77f7d102763a0173c461a875097bdc32160179d48c47d8030316d98e4c520",
        ),
    ] {
        let s = signer.sign_headers(
            &SignableRequest {
                method: "PUT",
                canonical_uri: &uri,
                query: &[],
                headers: &[
                    ("content-type", "image/jpeg"),
                    ("host", R2_HOST),
                    ("x-amz-content-sha256", &payload),
                    ("x-amz-date", "20240101T000000Z"),
                ],
                payload_hash: &payload,
            },
            &r2_time(),
        );
        assert_eq!(sha256_hex(s.canonical_request.as_bytes()), creq_hash);
        assert_eq!(s.signature, sig);
    }
}

// ---- the rest of the signer ----

#[test]
fn presign_expiry_is_checked() {
    let s = signer("auto", "s3", None);
    let req = SignableRequest {
        method: "GET",
        canonical_uri: "/b/k",
        query: &[],
        headers: &[("host", "h")],
        payload_hash: UNSIGNED_PAYLOAD,
    };
    let t = r2_time();
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        MAX_PRESIGN_EXPIRY + Duration::from_secs(1),
    ] {
        let err = s.presign(&req, &t, bad).unwrap_err();
        assert_eq!(err, SignError::Expiry(bad));
        assert!(err.to_string().contains("7 days"));
    }
    for ok in [Duration::from_secs(1), MAX_PRESIGN_EXPIRY] {
        let (q, _) = s.presign(&req, &t, ok).unwrap();
        assert!(q.contains(&format!("X-Amz-Expires={}", ok.as_secs())));
    }
}

#[test]
fn amz_date_formats_utc() {
    let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
    assert_eq!(
        AmzDate::from_system_time(t).unwrap().as_str(),
        "20150830T123600Z"
    );
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399); // 2000-02-29 23:59:59
    let d = AmzDate::from_system_time(leap).unwrap();
    assert_eq!(d.as_str(), "20000229T235959Z");
    assert_eq!(d.date(), "20000229");
    assert!(AmzDate::from_system_time(UNIX_EPOCH - Duration::from_secs(1)).is_err());
}

#[test]
fn http_date_parses() {
    let t = parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT").unwrap();
    assert_eq!(
        AmzDate::from_system_time(t).unwrap().as_str(),
        "20150830T123600Z"
    );
    assert!(parse_http_date("Sun, 30 Foo 2015 12:36:00 GMT").is_none());
    assert!(parse_http_date("yesterday").is_none());
}

#[test]
fn key_cache_is_per_scope_and_bounded_and_crosses_midnight() {
    let cache = SigningKeyCache::new(2);
    let k1 = cache.get(SECRET, "20240101", "auto", "s3");
    assert_eq!(k1, derive_signing_key(SECRET, "20240101", "auto", "s3"));
    assert_eq!(cache.get(SECRET, "20240101", "auto", "s3"), k1);
    assert_eq!(cache.len(), 1);
    // Midnight UTC: a new date, a new key; yesterday's is still served.
    let k2 = cache.get(SECRET, "20240102", "auto", "s3");
    assert_ne!(k1, k2);
    assert_eq!(k2, derive_signing_key(SECRET, "20240102", "auto", "s3"));
    assert_eq!(cache.get(SECRET, "20240101", "auto", "s3"), k1);
    assert_eq!(cache.len(), 2);
    // Another region is another scope; the cache stays at its bound.
    let k3 = cache.get(SECRET, "20240102", "us-east-1", "s3");
    assert_eq!(
        k3,
        derive_signing_key(SECRET, "20240102", "us-east-1", "s3")
    );
    assert_eq!(cache.len(), 2);
    assert!(!format!("{cache:?}").contains(SECRET));
}

#[test]
fn signer_uses_the_key_for_the_request_date() {
    let s = signer("auto", "s3", None);
    let req = SignableRequest {
        method: "GET",
        canonical_uri: "/b/k",
        query: &[],
        headers: &[("host", "h"), ("x-amz-date", "x")],
        payload_hash: UNSIGNED_PAYLOAD,
    };
    for d in ["20240101T235959Z", "20240102T000000Z", "20240101T120000Z"] {
        let t = AmzDate::parse(d).unwrap();
        assert_eq!(
            s.sign_headers(&req, &t).signature,
            s.sign_headers_uncached(&req, &t).signature,
            "{d}"
        );
    }
}

#[test]
fn skew_correction() {
    let fixed = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let s = Signer::new(
        Credentials {
            access_key_id: AKID.into(),
            secret_access_key: SECRET.into(),
            session_token: Some("tok".into()),
        },
        "auto",
        "s3",
        Arc::new(move || fixed),
    );
    assert_eq!(s.now(), fixed);
    s.observe_server_time(fixed + Duration::from_secs(3600), fixed);
    assert_eq!(s.now(), fixed + Duration::from_secs(3600));
    s.observe_server_time(fixed - Duration::from_secs(600), fixed);
    assert_eq!(s.now(), fixed - Duration::from_secs(600));
    // Under 30 s is noise: no correction.
    s.observe_server_time(fixed + Duration::from_secs(2), fixed);
    assert_eq!(s.now(), fixed);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(SECRET) && !dbg.contains("tok\""), "{dbg}");
}

#[test]
fn encoding_rules() {
    assert_eq!(uri_encode("a b/c~d+e=f", true), "a%20b/c~d%2Be%3Df");
    assert_eq!(uri_encode("a/b", false), "a%2Fb");
    assert_eq!(uri_encode("é", false), "%C3%A9");
    // S3: no normalisation.
    assert_eq!(s3_canonical_uri("/b/a//./../k"), "/b/a//./../k");
    assert_eq!(generic_canonical_uri("/a//./../k", true), "/k");
    assert_eq!(normalize_path("/"), "/");
    assert_eq!(normalize_path("/example/.."), "/");
    assert_eq!(normalize_path("//example//"), "/example/");
}

#[test]
fn key_cache_is_shared_across_threads() {
    let cache = SigningKeyCache::new(2);
    let dates = ["20240101", "20240102", "20240103"];
    let expected: Vec<[u8; 32]> = dates
        .iter()
        .map(|d| derive_signing_key(SECRET, d, "auto", "s3"))
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (cache, expected) = (&cache, &expected);
            s.spawn(move || {
                for i in 0..300 {
                    let d = (i / 50 + t) % dates.len();
                    assert_eq!(cache.get(SECRET, dates[d], "auto", "s3"), expected[d]);
                }
            });
        }
    });
    assert!(cache.len() <= 2);
}

// ---- a query value with `+`, `/` and `=` (an R2 upload id) ----

/// R2's multipart upload ids hold `+`, `/` and `=`; clients that leave them unencoded in the
/// canonical query (or encode `+` as a space) get SignatureDoesNotMatch. The expected
/// signature was computed by the AWS SDK's `aws-sigv4` crate, an independent implementation,
/// which the test also runs.
#[test]
fn upload_part_with_reserved_characters_in_the_upload_id() {
    const UPLOAD_ID: &str = "2~Ab+cD/eF=gh+/==";
    let uri = s3_canonical_uri("/media/media/ab/abcdef");
    let payload = sha256_hex(b"part one");
    let mut query = [("uploadId", UPLOAD_ID), ("partNumber", "1")];
    query.sort_unstable();
    let headers = [
        ("host", R2_HOST),
        ("x-amz-content-sha256", payload.as_str()),
        ("x-amz-date", "20240101T000000Z"),
    ];
    let s = signer("auto", "s3", None).sign_headers(
        &SignableRequest {
            method: "PUT",
            canonical_uri: &uri,
            query: &query,
            headers: &headers,
            payload_hash: &payload,
        },
        &r2_time(),
    );
    let canonical_query = s.canonical_request.lines().nth(2).unwrap();
    assert_eq!(
        canonical_query,
        "partNumber=1&uploadId=2~Ab%2BcD%2FeF%3Dgh%2B%2F%3D%3D"
    );
    let known = "2b275d0a628855f971651f20c0d41a4e92829fe8bfe8762aed2b04f35ed5c6a5";

    // The same request through aws-sigv4.
    use aws_sigv4::http_request::{
        PercentEncodingMode, SignableBody, SignableRequest as AwsRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let identity = aws_credential_types::Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("auto")
        .name("s3")
        .time(UNIX_EPOCH + Duration::from_secs(1_704_067_200))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("https://{R2_HOST}{uri}?{canonical_query}");
    let req = AwsRequest::new(
        "PUT",
        &url,
        headers.iter().copied(),
        SignableBody::Precomputed(payload.clone()),
    )
    .unwrap();
    let (instructions, signature) = sign(req, &params).unwrap().into_parts();
    let _ = instructions;
    assert_eq!(signature, known, "aws-sigv4");
    assert_eq!(s.signature, known, "ours");
}
