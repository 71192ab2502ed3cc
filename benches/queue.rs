//! Queue push + claim with 1k, 100k and 1M jobs queued, beside the seed's FIFO: a `Vec` that
//! removes from the front (JavaScript's `Array.shift()`), in one criterion group.
//!
//! ```text
//! cargo bench --bench queue
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prewarm::{BotId, Job, MediaKey, MediaKind, MemoryQueue, PriorityQueue, Sha256, Timestamp};

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const LEASE: Duration = Duration::from_secs(60);

fn job(bot: &BotId, i: u64) -> Job {
    let kind = if i.is_multiple_of(5) {
        MediaKind::Video
    } else {
        MediaKind::Photo
    };
    let key = MediaKey::new(bot.clone(), Sha256::of(&i.to_le_bytes()), kind);
    // Sizes from 30 KB to about 40 MB; enqueue times within the last second (none aged).
    Job::new(
        key,
        30_000 + (i * 7919) % 40_000_000,
        Timestamp(NOW.0 - i % 1000),
    )
}

fn push_claim(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bot = BotId::new("bench").expect("bot");
    let mut group = c.benchmark_group("queue_push_pop");
    group.sample_size(20);
    for n in [1_000u64, 100_000, 1_000_000] {
        let queue = MemoryQueue::new();
        rt.block_on(async {
            for i in 0..n {
                queue.push(job(&bot, i), NOW).await.expect("push");
            }
        });
        let mut next = n;
        group.bench_with_input(BenchmarkId::new("binary_heap", n), &n, |b, _| {
            b.to_async(&rt).iter(|| {
                next += 1;
                let j = job(&bot, next);
                let queue = &queue;
                let bot = &bot;
                async move {
                    queue.push(j, NOW).await.expect("push");
                    let claim = queue
                        .claim("bench", std::slice::from_ref(bot), 1, LEASE, NOW)
                        .await
                        .expect("claim");
                    queue
                        .complete(&claim.jobs[0].lease)
                        .await
                        .expect("complete");
                    black_box(claim);
                }
            })
        });

        let mut fifo: Vec<Job> = (0..n).map(|i| job(&bot, i)).collect();
        let mut next = n;
        group.bench_with_input(BenchmarkId::new("vec_shift_fifo", n), &n, |b, _| {
            b.iter(|| {
                next += 1;
                fifo.push(job(&bot, next));
                black_box(fifo.remove(0));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, push_claim);
criterion_main!(benches);
