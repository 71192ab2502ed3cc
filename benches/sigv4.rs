//! SigV4 signing, side by side in one criterion group: our signer with the cached signing
//! key, the same deriving the key per request (what the seed did), and the AWS SDK's
//! `aws-sigv4` crate signing the same request.
//!
//! `cargo bench --features r2 --bench sigv4`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use criterion::{Criterion, criterion_group, criterion_main};
use prewarm::store::__r2_bench::{self as ours, SigningBench};

/// The AWS SDK signer set up as S3 wants it: single encoding, no path normalisation.
fn aws_settings(presign: bool) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Single;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    if presign {
        s.signature_location = SignatureLocation::QueryParams;
        s.expires_in = Some(Duration::from_secs(600));
    } else {
        s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    s
}

fn signing(c: &mut Criterion) {
    let bench = SigningBench::new();
    // Same request, same answer: the cache changes the cost, not the signature.
    assert_eq!(bench.sign_get_cached(), bench.sign_get_uncached());

    let identity = Credentials::new(ours::ACCESS_KEY_ID, ours::SECRET, None, None, "bench").into();
    let url = format!("https://{}{}", ours::HOST, ours::PATH);
    let headers = [("host", ours::HOST)];
    let aws_sign = |presign: bool| {
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("auto")
            .name("s3")
            .time(SystemTime::now())
            .settings(aws_settings(presign))
            .build()
            .expect("params")
            .into();
        let body = if presign {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(ours::EMPTY_SHA256.to_owned())
        };
        let req = SignableRequest::new("GET", &url, headers.iter().copied(), body).expect("req");
        sign(req, &params).expect("signed").into_parts()
    };

    let mut g = c.benchmark_group("sigv4");
    g.bench_function("sign_get/ours_cached_key", |b| {
        b.iter(|| black_box(bench.sign_get_cached()))
    });
    g.bench_function("sign_get/ours_derived_key_per_request", |b| {
        b.iter(|| black_box(bench.sign_get_uncached()))
    });
    g.bench_function("sign_get/aws_sigv4", |b| {
        b.iter(|| black_box(aws_sign(false)))
    });
    g.bench_function("presign_get/ours_cached_key", |b| {
        b.iter(|| black_box(bench.presign_get()))
    });
    g.bench_function("presign_get/aws_sigv4", |b| {
        b.iter(|| black_box(aws_sign(true)))
    });
    g.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
