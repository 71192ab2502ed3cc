//! SigV4 signing: the cached signing key against deriving it for every request, side by side.
//!
//! `cargo bench --features r2 --bench sigv4`

use criterion::{Criterion, criterion_group, criterion_main};
use prewarm::store::__r2_bench::SigningBench;
use std::hint::black_box;

fn signing(c: &mut Criterion) {
    let bench = SigningBench::new();
    // Same request, same answer: the cache changes the cost, not the signature.
    assert_eq!(bench.sign_get_cached(), bench.sign_get_uncached());
    let mut g = c.benchmark_group("sigv4");
    g.bench_function("sign_get/cached_key", |b| {
        b.iter(|| black_box(bench.sign_get_cached()))
    });
    g.bench_function("sign_get/derived_key_per_request", |b| {
        b.iter(|| black_box(bench.sign_get_uncached()))
    });
    g.bench_function("presign_get/cached_key", |b| {
        b.iter(|| black_box(bench.presign_get()))
    });
    g.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
