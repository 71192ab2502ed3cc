//! The cost of a send's slot: a take from the in-process [`MemoryBudget`] beside a take from
//! the shared [`PostgresBudget`] (one round trip to PostgreSQL), one caller at a time, and
//! with 8 callers at once on one bot (the contention of several processes: every take of a
//! bot passes its row's lock).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --features postgres --bench budget -- --warm-up-time 1 --measurement-time 3
//! ```
//! Without `DATABASE_URL` the PostgreSQL cases are skipped with a notice. Rates are set high
//! so that every take is granted: this measures the bookkeeping, not the waiting.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use futures::future::join_all;
use prewarm::BotId;
use prewarm::db::PostgresBudget;
use prewarm::upload::{BudgetRequest, MemoryBudget, Rate, RateBudget};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// No limit worth the name: every take is granted.
fn unlimited() -> Rate {
    Rate::new(1_000_000_000, Duration::from_secs(1)).with_burst(1_000_000)
}

const CHATS: [i64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

async fn take(budget: &dyn RateBudget, bot: &BotId) {
    let chats: Vec<(i64, Rate)> = CHATS.iter().map(|&c| (c, unlimited())).collect();
    let request = BudgetRequest::new(bot, unlimited(), &chats).warm(unlimited());
    budget.take(&request).await.unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let bot = BotId::new("bench").unwrap();
    let mut budgets: Vec<(&str, Arc<dyn RateBudget>)> =
        vec![("memory", Arc::new(MemoryBudget::new()))];
    let url = std::env::var("DATABASE_URL").ok();
    let schema = format!("bench_budget_{}", std::process::id());
    match &url {
        Some(url) => {
            let pg = rt
                .block_on(PostgresBudget::builder(url).with_schema(&schema).connect())
                .unwrap();
            budgets.push(("postgres", Arc::new(pg)));
        }
        None => eprintln!("NOTICE: DATABASE_URL is not set: skipping the PostgreSQL cases"),
    }
    let mut group = c.benchmark_group("budget_take");
    for (name, budget) in &budgets {
        group.bench_function(format!("{name}/1_caller"), |b| {
            b.to_async(&rt).iter(|| take(budget.as_ref(), &bot));
        });
        group.bench_function(format!("{name}/8_callers"), |b| {
            b.to_async(&rt)
                .iter(|| join_all((0..8).map(|_| take(budget.as_ref(), &bot))));
        });
    }
    group.finish();
    if let Some(url) = url {
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .unwrap();
            drop(client);
            let _ = conn.await;
        });
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
