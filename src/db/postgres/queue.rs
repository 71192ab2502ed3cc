//! The durable [`PriorityQueue`].

use super::*;

#[async_trait]
impl PriorityQueue for PostgresStore {
    async fn push(&self, mut job: Job, now: Timestamp) -> Result<PushOutcome> {
        let now = self.shared.clock.now(now);
        if self.shared.clock.mode == QueueClock::Database {
            // Aging counts from the database's clock too.
            job.enqueued_at = now;
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .pushes
            .send(PushReq { job, now, reply })
            .map_err(|_| batcher_gone())?;
        let outcome = answer.await.map_err(|_| batcher_gone())??;
        if outcome != PushOutcome::Merged {
            self.shared.notify.notify_waiters();
        }
        Ok(outcome)
    }

    async fn claim(
        &self,
        owner: &str,
        bots: &[BotId],
        max: usize,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Claim> {
        if max == 0 || bots.is_empty() {
            return Ok(Claim::default());
        }
        let what = "claiming jobs";
        let sql = &self.shared.sql;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err(what, e))?;
        let clock = &self.shared.clock;
        let woken = tx
            .query_one(&sql.wake, &[&clock.param(now)])
            .await
            .map_err(|e| pg_err("returning due jobs to the queue", e))?;
        // The time this claim runs at: the caller's, or the database's, read just now.
        let now_ms: i64 = woken.get(0);
        if clock.mode == QueueClock::Database {
            clock.set(now_ms);
        }
        let now = ts(now_ms);
        let expires_at = now.plus(lease);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let cutoff = aging_cutoff(&self.shared.policy, now);
        let slugs: Vec<&str> = bots.iter().map(BotId::as_str).collect();
        let mut lists: HashMap<(usize, Branch), Vec<(i64, i64)>> = HashMap::new();
        let add = |lists: &mut HashMap<(usize, Branch), Vec<(i64, i64)>>,
                   rows: Vec<Row>,
                   of: &[usize]| {
            for r in rows {
                let i = usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(0);
                let branch = match r.get::<_, i32>(1) {
                    0 => Branch::Demanded,
                    1 => Branch::Aged,
                    _ => Branch::Fresh,
                };
                let (id, ord): (i64, i64) = (r.get(2), r.get(3));
                lists.entry((of[i], branch)).or_default().push((ord, id));
            }
        };
        let all: Vec<usize> = (0..bots.len()).collect();
        let rows = tx
            .query(&sql.candidates, &[&slugs, &cutoff, &limit])
            .await
            .map_err(|e| pg_err(what, e))?;
        add(&mut lists, rows, &all);
        let short: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&b| {
                let have = |br| lists.get(&(b, br)).map_or(0, Vec::len);
                have(Branch::Demanded) + have(Branch::Aged) < max
            })
            .collect();
        if !short.is_empty() {
            let names: Vec<&str> = short.iter().map(|&b| slugs[b]).collect();
            let rows = tx
                .query(&sql.candidates_fresh, &[&names, &cutoff, &limit])
                .await
                .map_err(|e| pg_err(what, e))?;
            add(&mut lists, rows, &short);
        }
        let mut lists: HashMap<(usize, Branch), std::collections::VecDeque<i64>> = lists
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_unstable();
                (k, v.into_iter().map(|(_, id)| id).collect())
            })
            .collect();
        let mut turn = self.shared.turn.load(Ordering::Relaxed);
        let ids: Vec<i64> = pick(&self.shared.policy, bots.len(), max, &mut turn, |b, br| {
            lists.get_mut(&(b, br)).and_then(|l| l.pop_front())
        });
        self.shared.turn.store(turn, Ordering::Relaxed);
        let rows = tx
            .query(&sql.claim, &[&ids, &owner, &ms(expires_at)])
            .await
            .map_err(|e| pg_err(what, e))?;
        // Candidates not picked are unlocked here.
        tx.commit().await.map_err(|e| pg_err(what, e))?;
        drop(client);

        let owner: Arc<str> = owner.into();
        let mut due: Option<i64> = None;
        let mut picked = Vec::with_capacity(rows.len());
        for r in &rows {
            // Columns: n, id, the 13 job columns, fencing_token, due.
            due = r.get(16);
            let Some(n) = r.get::<_, Option<i64>>(0) else {
                continue; // no job claimed: the row only carries `due`
            };
            let row = job_row_at(r, 2)?;
            let token: i64 = r.get(15);
            picked.push((n, row, token));
        }
        picked.sort_by_key(|p| p.0);
        let jobs: Vec<Claimed> = picked
            .into_iter()
            .map(|(_, row, token)| Claimed {
                job: row.job(),
                lease: Lease {
                    key: row.key,
                    token: u64::try_from(token).unwrap_or(0),
                    owner: owner.clone(),
                    expires_at,
                },
            })
            .collect();
        // `due` was read before this claim: the leases just taken lapse at `expires_at`.
        let mut next_due = due.map(ts);
        if !jobs.is_empty() {
            next_due = Some(next_due.map_or(expires_at, |d| d.min(expires_at)));
        }
        status::log_claims(&self.client().await?, &self.shared.schema, &jobs, now).await?;
        Ok(Claim { jobs, next_due })
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        let expires_at = self.shared.clock.now(now).plus(lease_for);
        self.finish(
            "extending a lease",
            &self.shared.sql.extend,
            lease,
            &[&ms(expires_at)],
        )
        .await
        .map(|()| Lease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn complete(&self, lease: &Lease) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .completes
            .send(CompleteReq {
                lease: lease.clone(),
                reply,
            })
            .map_err(|_| batcher_gone())?;
        answer.await.map_err(|_| batcher_gone())?
    }

    async fn retry(
        &self,
        lease: &Lease,
        run_at: Timestamp,
        count_attempt: bool,
        error: &str,
    ) -> Result<()> {
        let inc = i32::from(count_attempt);
        self.finish(
            "scheduling a retry",
            &self.shared.sql.retry,
            lease,
            &[&ms(run_at), &inc, &error, &self.shared.sql.channel],
        )
        .await?;
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<()> {
        self.finish("failing a job", &self.shared.sql.fail, lease, &[&error])
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.finish(
            "releasing a job",
            &self.shared.sql.release,
            lease,
            &[&self.shared.sql.channel],
        )
        .await?;
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn promote(&self, key: &MediaKey, _now: Timestamp) -> Result<bool> {
        self.set_demand(key, true).await
    }

    async fn get(&self, key: &MediaKey) -> Result<Option<JobInfo>> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "reading a job",
                &self.shared.sql.get_job,
                &[&bot, &sha, &kind],
            )
            .await?;
        rows.first()
            .map(|r| job_row_at(r, 0).and_then(JobRow::info))
            .transpose()
    }

    async fn dead(&self, limit: usize) -> Result<Vec<JobInfo>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query("listing dead jobs", &self.shared.sql.dead, &[&limit])
            .await?;
        rows.iter()
            .map(|r| job_row_at(r, 0).and_then(JobRow::info))
            .collect()
    }

    async fn requeue_dead(&self, key: Option<&MediaKey>, now: Timestamp) -> Result<u64> {
        let now = self.shared.clock.now(now);
        let sql = &self.shared.sql;
        let what = "requeueing dead jobs";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err(what, e))?;
        let (bot, sha, kind) = match key {
            Some(k) => {
                let (b, s, k) = key_args(k);
                (Some(b), s.to_vec(), k)
            }
            None => (None, Vec::new(), ""),
        };
        let rows = tx
            .query(&sql.requeue_select, &[&bot, &sha, &kind])
            .await
            .map_err(|e| pg_err(what, e))?;
        let update = tx
            .prepare_cached(&sql.requeue_update)
            .await
            .map_err(|e| pg_err(what, e))?;
        let mut n = 0;
        for r in &rows {
            let id: i64 = r.get(0);
            let row = job_row_at(r, 1)?;
            let ranks = Ranks::of(
                &self.shared.policy,
                &Job {
                    attempts: 0,
                    enqueued_at: now,
                    hot: false,
                    ..row.job()
                },
            );
            n += tx
                .execute(&update, &[&id, &ms(now), &ranks.plain, &ranks.demanded])
                .await
                .map_err(|e| pg_err(what, e))?;
        }
        if n > 0 {
            tx.query(&sql.notify, &[&sql.channel])
                .await
                .map_err(|e| pg_err(what, e))?;
        }
        tx.commit().await.map_err(|e| pg_err(what, e))?;
        if n > 0 {
            self.shared.notify.notify_waiters();
        }
        Ok(n)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        // Callers arriving together share one count (the lock is held across it), and a
        // count younger than the TTL is answered as it is.
        let mut cached = self.shared.depth_cache.lock().await;
        if let Some((at, depth)) = *cached
            && at.elapsed() < self.shared.depth_ttl
        {
            return Ok(depth);
        }
        let rows = self
            .query("counting jobs", &self.shared.sql.depth, &[])
            .await?;
        let n = |i| {
            rows.first()
                .map_or(0, |r| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0))
        };
        let depth = QueueDepth {
            queued: n(0),
            delayed: n(1),
            claimed: n(2),
            dead: n(3),
        };
        *cached = Some((std::time::Instant::now(), depth));
        Ok(depth)
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        Some(self.shared.notify.clone())
    }

    async fn clear_demand(&self, key: &MediaKey) -> Result<bool> {
        self.set_demand(key, false).await
    }

    async fn record_rejection(&self, key: &MediaKey) -> Result<u32> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "counting a rejected file_id",
                &self.shared.sql.record_rejection,
                &[&bot, &sha, &kind],
            )
            .await?;
        let n: i32 = rows.first().map_or(1, |r| r.get(0));
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn clear_rejections(&self, key: &MediaKey) -> Result<()> {
        let (bot, sha, kind) = key_args(key);
        self.execute(
            "clearing rejections",
            &self.shared.sql.clear_rejections,
            &[&bot, &sha, &kind],
        )
        .await?;
        Ok(())
    }

    async fn summary(&self, now: Timestamp) -> Result<Vec<BotSummary>> {
        // The database's clock stamped the jobs: the window and the ages are read on it.
        let now = self.shared.clock.now(now);
        status::summary(&self.client().await?, &self.shared.schema, now).await
    }
}

impl PostgresStore {
    /// PostgreSQL's plans for the statements a claim of up to `max` jobs for `bots` runs
    /// (`EXPLAIN`, so nothing runs and nothing is locked), one text per statement: wake-up,
    /// demanded and aged candidates, fresh candidates, the claim itself. For operators of a
    /// large queue checking that every step is an index scan (`ix_media_cache_demanded`,
    /// `_aged`, `_fresh`, `_delayed`, `_leases`), and for the crate's tests.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database cannot be reached.
    pub async fn explain_claim(&self, bots: &[BotId], max: usize) -> Result<Vec<String>> {
        let what = "explaining a claim";
        let sql = &self.shared.sql;
        let client = self.client().await?;
        let now = self.shared.clock.now(Timestamp::now());
        let cutoff = aging_cutoff(&self.shared.policy, now);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let slugs: Vec<&str> = bots.iter().map(BotId::as_str).collect();
        let ids: Vec<i64> = (1..=limit).collect();
        let owner = "explain";
        let expires = ms(now);
        let statements: [(&str, Vec<&(dyn ToSql + Sync)>); 4] = [
            (&sql.wake, vec![&None::<i64>]),
            (&sql.candidates, vec![&slugs, &cutoff, &limit]),
            (&sql.candidates_fresh, vec![&slugs, &cutoff, &limit]),
            (&sql.claim, vec![&ids, &owner, &expires]),
        ];
        let mut plans = Vec::with_capacity(statements.len());
        for (statement, args) in statements {
            let rows = client
                .query(&format!("EXPLAIN {statement}"), &args)
                .await
                .map_err(|e| pg_err(what, e))?;
            let lines: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
            plans.push(lines.join("\n"));
        }
        Ok(plans)
    }
}
