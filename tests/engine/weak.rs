//! Demand that ends with its waiters, and the weak-id limit (`MEDIA_PREWARM_RETRY_WEAK_ID`)
//! with its count kept by the queue.

use std::sync::Arc;
use std::time::Duration;

use prewarm::{
    Error, LruFileIdCache, MediaKind, MemoryQueue, MemoryUploader, PriorityQueue, Sendable,
};

use crate::{bot, builder, media, save};

#[tokio::test(start_paused = true)]
async fn demand_ends_when_the_last_waiter_leaves() {
    let queue = Arc::new(MemoryQueue::new());
    // Not started: the job stays queued while the waiters come and go.
    let engine = builder(MemoryUploader::new(bot()))
        .with_queue(queue.clone())
        .build()
        .unwrap();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    let demanded = || async { queue.get(&key).await.unwrap().unwrap().job.demand };
    assert!(!demanded().await);
    let waiter = |secs| {
        let (engine, key) = (engine.clone(), key.clone());
        tokio::spawn(async move { engine.wait_ready(&key, Duration::from_secs(secs)).await })
    };
    let (short, long) = (waiter(1), waiter(3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(demanded().await, "a waiter marks demand");
    assert!(matches!(short.await.unwrap(), Err(Error::Timeout { .. })));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(demanded().await, "one waiter is still there");
    assert!(matches!(long.await.unwrap(), Err(Error::Timeout { .. })));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !demanded().await,
        "nobody waits, yet the job keeps its demand"
    );

    // A waiter cancelled by its caller leaves too.
    let cancelled = waiter(60);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(demanded().await);
    cancelled.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!demanded().await, "a cancelled waiter kept the demand");
}

#[tokio::test(start_paused = true)]
async fn past_the_weak_id_limit_the_media_is_dead_and_no_send_queues_it_again() {
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone())
        .with_retry_weak_id(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    let first = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    engine.report_wrong_file_id(&key, &first).await.unwrap();
    let second = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(first, second);
    let err = engine
        .report_wrong_file_id(&key, &second)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WarmFailed { reason, .. }
            if reason.contains("MEDIA_PREWARM_RETRY_WEAK_ID") && reason.contains("rejected 2")),
        "{err}"
    );
    assert_eq!(
        engine.lookup(&key),
        None,
        "the rejected file_id is still served"
    );
    let waited = engine.wait_ready(&key, Duration::from_secs(60)).await;
    assert!(
        matches!(&waited, Err(Error::WarmFailed { reason, .. }) if reason.contains("MEDIA_PREWARM_RETRY_WEAK_ID")),
        "{waited:?}"
    );
    let dead = engine.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("MEDIA_PREWARM_RETRY_WEAK_ID")
    );
    // Sends get the bytes, and queue nothing.
    for _ in 0..3 {
        assert!(matches!(
            engine.sendable(&key, Duration::from_secs(1)).await.unwrap(),
            Sendable::Upload(_)
        ));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(uploader.successes(&key), 2, "the media was warmed again");
    let depth = engine.metrics().await.unwrap().queue;
    assert_eq!((depth.pending(), depth.dead), (0, 1));
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_rejection_count_is_kept_by_the_queue_across_engines() {
    let queue = Arc::new(MemoryQueue::new());
    let cache = Arc::new(LruFileIdCache::new(100).unwrap());
    let store = Arc::new(prewarm::store::MemoryStore::new());
    let uploader = MemoryUploader::new(bot());
    let engine = |uploader: &MemoryUploader| {
        builder(uploader.clone())
            .with_queue(queue.clone())
            .with_cache(cache.clone())
            .with_store(store.clone())
            .with_retry_weak_id(1)
            .build()
            .unwrap()
    };
    let before = engine(&uploader);
    let running = before.spawn();
    let key = save(&before, media(1, 100), MediaKind::Photo).await;
    let first = before
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    before.report_wrong_file_id(&key, &first).await.unwrap();
    let second = before
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    running.shutdown().await.unwrap();
    drop(before);

    // A restarted process: a new engine, with nothing in memory, over the same queue.
    let after = engine(&uploader);
    let running = after.spawn();
    let err = after.report_wrong_file_id(&key, &second).await.unwrap_err();
    assert!(matches!(err, Error::WarmFailed { .. }), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_successful_send_forgives_earlier_rejections() {
    let uploader = MemoryUploader::new(bot());
    let engine = builder(uploader.clone())
        .with_retry_weak_id(1)
        .build()
        .unwrap();
    let running = engine.spawn();
    let key = save(&engine, media(1, 100), MediaKind::Photo).await;
    let mut id = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    // Rejected now and then, with good sends between: re-warmed every time.
    for round in 0..4 {
        engine
            .report_wrong_file_id(&key, &id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        id = engine
            .wait_ready(&key, Duration::from_secs(5))
            .await
            .unwrap();
        engine.report_sent(&key).await.unwrap();
    }
    assert_eq!(uploader.successes(&key), 5);
    // Rejected twice in a row, with no good send between: past the limit.
    engine.report_wrong_file_id(&key, &id).await.unwrap();
    id = engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(engine.report_wrong_file_id(&key, &id).await.is_err());
    assert!(matches!(
        engine.wait_ready(&key, Duration::from_secs(5)).await,
        Err(Error::WarmFailed { .. })
    ));
    // Requeued by hand, the media is forgiven and warms again.
    assert_eq!(engine.requeue_dead(Some(&key)).await.unwrap(), 1);
    engine
        .wait_ready(&key, Duration::from_secs(5))
        .await
        .unwrap();
    running.shutdown().await.unwrap();
}
