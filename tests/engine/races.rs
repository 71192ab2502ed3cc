//! The engine's defects under races, failures and cancellation (issue 12), each pinned by a
//! test that fails with the defect in place. Paused time wherever time matters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use prewarm::{Error, FileId, FileIdCache, MediaKind, MemoryUploader, PriorityQueue, Sendable};
use tokio::time::Instant;

use crate::faults::{FaultyQueue, FlakyCache};
use crate::{Recorder, bot, builder, media, save};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn an_idle_engine_with_an_hour_poll_starts_an_upload_at_the_instant_of_the_save() {
    let recorder = Recorder::new(MemoryUploader::new(bot()));
    let engine = builder(recorder.clone())
        .with_poll_interval(HOUR)
        .build()
        .unwrap();
    let running = engine.spawn();
    // Long idle: the dispatcher sleeps on its hour-long fallback.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let saved_at = Instant::now();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    engine.wait_ready(&key, 2 * HOUR).await.unwrap();
    let starts = recorder.starts();
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].1 - saved_at,
        Duration::ZERO,
        "the upload started after the save, not at it"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_returns_at_the_instant_of_the_uploads_completion() {
    let latency = Duration::from_secs(3);
    let recorder = Recorder::new(MemoryUploader::new(bot()).with_latency(latency..latency));
    let engine = builder(recorder.clone())
        .with_poll_interval(HOUR)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    engine.wait_ready(&key, 2 * HOUR).await.unwrap();
    let returned_at = Instant::now();
    let started = recorder.starts()[0].1;
    assert_eq!(
        returned_at - started,
        latency,
        "the waiter did not return when the upload completed"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn two_429s_then_a_transient_error_under_max_attempts_2_end_ready() {
    let recorder = Recorder::new(MemoryUploader::new(bot()).with_faults(
        |_, attempt| match attempt {
            1 | 2 => Some(Error::RateLimited {
                retry_after: Duration::from_secs(1),
            }),
            3 => Some(Error::Unavailable {
                message: "HTTP 502".into(),
            }),
            _ => None,
        },
    ));
    let engine = builder(recorder.clone())
        .with_max_attempts(2)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    let ready = engine.wait_ready(&key, Duration::from_secs(60)).await;
    assert!(ready.is_ok(), "{ready:?}: rate limits used up the attempts");
    assert_eq!(recorder.starts().len(), 4);
    let m = engine.metrics().await.unwrap();
    assert_eq!((m.rate_limited, m.retried, m.warmed), (2, 1, 1));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unauthorized_and_an_uploaders_too_large_go_dead_at_once() {
    let unauthorized_bytes = media(1, 100);
    let unauthorized_sha = prewarm::Sha256::of(&unauthorized_bytes);
    let recorder = Recorder::new(MemoryUploader::new(bot()).with_faults(move |key, _| {
        (key.sha256 == unauthorized_sha).then(|| Error::Unauthorized {
            message: "Unauthorized: check TELEGRAM_BOT_TOKEN".into(),
        })
    }));
    // The engine allows a local Bot API server's 2000 MB; the uploader, the public Bot API's
    // 50 MB.
    let engine = builder(recorder.clone())
        .with_size_limits(prewarm::SizeLimits::local_server())
        .build()
        .unwrap();
    let running = engine.spawn();
    let denied = save(&engine, unauthorized_bytes, MediaKind::Photo).await;
    let huge = save(&engine, media(2, 51_000_000), MediaKind::Video).await;
    for (key, needle) in [(&denied, "unauthorized"), (&huge, "50000000")] {
        let err = engine
            .wait_ready(key, Duration::from_secs(600))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::WarmFailed { reason, .. } if reason.contains(needle)),
            "{key}: {err}"
        );
        let tries = recorder.starts().iter().filter(|(k, _)| k == key).count();
        assert_eq!(tries, 1, "{key} was retried");
    }
    assert_eq!(engine.dead_jobs(10).await.unwrap().len(), 2);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_upload_whose_lease_cannot_be_extended_stops_before_the_lease_expires() {
    let lease = Duration::from_secs(10);
    let queue = FaultyQueue::default();
    queue.extend_fails.store(true, Ordering::SeqCst);
    let uploader =
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(60)..Duration::from_secs(60));
    let recorder = Recorder::new(uploader.clone());
    let engine = builder(recorder.clone())
        .with_queue(Arc::new(queue.clone()))
        .with_lease(lease)
        .with_concurrency(2)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    // Three leases' worth of a queue that grants no extension.
    tokio::time::sleep(3 * lease).await;
    let stats = uploader.stats();
    assert_eq!(
        stats.overlapping, 0,
        "the job was reclaimed while the first upload still ran"
    );
    assert!(stats.uploads >= 2, "the job was taken up again: {stats:?}");
    let starts = recorder.starts();
    for pair in starts.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= lease,
            "an attempt started {:?} after the last, within its lease",
            pair[1].1 - pair[0].1
        );
    }
    // Once the queue grants extensions again, the upload runs to the end.
    queue.extend_fails.store(false, Ordering::SeqCst);
    engine.wait_ready(&key, HOUR).await.unwrap();
    assert_eq!(uploader.stats().succeeded, 1);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_lease_extension_is_timed_from_the_claim() {
    let lease = Duration::from_secs(10);
    let queue = FaultyQueue::default();
    let cache = FlakyCache::failing_puts(0);
    let recorder = Recorder::new(
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(30)..Duration::from_secs(30)),
    );
    let engine = builder(recorder.clone())
        .with_queue(Arc::new(queue.clone()))
        .with_cache(Arc::new(cache.clone()))
        .with_lease(lease)
        .build()
        .unwrap();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    // The worker's look at the cache takes 4 s between the claim and the upload's start.
    *cache.get_delay.lock().unwrap() = Duration::from_secs(4);
    let claimed_at = Instant::now();
    let running = engine.spawn();
    engine.wait_ready(&key, HOUR).await.unwrap();
    let started = recorder.starts()[0].1;
    assert_eq!(started - claimed_at, Duration::from_secs(4));
    let extends = queue.extends.lock().unwrap().clone();
    assert_eq!(
        extends[0] - claimed_at,
        lease / 2,
        "the first extension came half a lease after the upload's start, not the claim's"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cache_put_that_fails_twice_then_succeeds_costs_one_upload() {
    let cache = FlakyCache::failing_puts(2);
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone())
        .with_cache(Arc::new(cache.clone()))
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    let deadline = Instant::now() + HOUR;
    while cache.inner.get_local(&key).is_none() {
        assert!(Instant::now() < deadline, "the file_id was never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache.puts.load(Ordering::SeqCst), 3);
    assert_eq!(
        uploader.stats().uploads,
        1,
        "Telegram's file_id was dropped"
    );
    assert_eq!(
        cache.inner.get_local(&key),
        Some(uploader.file_id_for(&key, 1))
    );
    let m = engine.metrics().await.unwrap();
    assert_eq!((m.queue.pending(), m.queue.dead), (0, 0));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_push_merged_into_a_held_job_runs_again_after_it_completes() {
    let cache = FlakyCache::failing_puts(0);
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone())
        .with_cache(Arc::new(cache.clone()))
        .build()
        .unwrap();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    // The bot sent it itself: the queued job will find this file_id and upload nothing.
    let rejected = FileId::new("rejected-later");
    engine.record_file_id(&key, rejected.clone()).await.unwrap();
    // The worker holds the job for 2 s while it reads the cache (and sees `rejected`).
    *cache.get_delay.lock().unwrap() = Duration::from_secs(2);
    let running = engine.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Meanwhile Telegram rejects it: invalidated, and a re-warm pushed into the held job.
    engine.report_wrong_file_id(&key, &rejected).await.unwrap();
    *cache.get_delay.lock().unwrap() = Duration::ZERO;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(uploader.successes(&key), 1, "the re-warm was dropped");
    assert_eq!(
        engine
            .wait_ready(&key, Duration::from_secs(1))
            .await
            .unwrap(),
        uploader.file_id_for(&key, 1)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_zero_wait_does_not_demand() {
    let queue = Arc::new(prewarm::MemoryQueue::new());
    let engine = builder(MemoryUploader::new(bot()))
        .with_queue(queue.clone())
        .build()
        .unwrap();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    assert!(matches!(
        engine.sendable(&key, Duration::ZERO).await.unwrap(),
        Sendable::Upload(_)
    ));
    let job = queue.get(&key).await.unwrap().expect("the job");
    assert!(!job.job.demand, "a zero wait marked demand");
}

// Real time: the save hashes on a blocking thread, and paused time does not advance while
// one runs. No timing is asserted.
#[tokio::test]
async fn a_cancelled_save_stream_leaves_no_spool_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(MemoryUploader::new(bot()))
        .with_spool_dir(dir.path())
        .build()
        .unwrap();
    // One chunk, then a stream that never ends: the save is cancelled mid-spool.
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
        7u8;
        100_000
    ]))])
    .chain(futures::stream::pending());
    let owner = bot();
    let save = engine.save_stream(&owner, stream, MediaKind::Video);
    {
        let mut save = std::pin::pin!(save);
        let spooling = async {
            while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = &mut save => panic!("the endless save finished"),
            () = spooling => {}
        }
        // Dropped here, mid-spool.
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the cancelled save left {left:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_even_when_the_queue_does_not_take_jobs_back() {
    let queue = FaultyQueue::default();
    queue.release_hangs.store(true, Ordering::SeqCst);
    let uploader =
        MemoryUploader::new(bot()).with_latency(Duration::from_secs(600)..Duration::from_secs(600));
    let grace = Duration::from_secs(1);
    let engine = builder(uploader)
        .with_queue(Arc::new(queue.clone()))
        .with_shutdown_grace(grace)
        .build()
        .unwrap();
    save(&engine, media(1, 100), MediaKind::Photo).await;
    let running = engine.spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    tokio::time::timeout(HOUR, running.shutdown())
        .await
        .expect("shutdown hung on the queue")
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took <= grace + Duration::from_secs(5),
        "shutdown took {took:?}"
    );
}
