//! The durable [`FileIdCache`].

use super::*;

#[async_trait]
impl FileIdCache for PostgresStore {
    async fn get(&self, key: &MediaKey) -> Result<Option<FileId>> {
        let (bot, sha, kind) = key_args(key);
        let rows = self
            .query(
                "looking up a file_id",
                &self.shared.sql.get,
                &[&bot, &sha, &kind],
            )
            .await?;
        Ok(rows.first().map(|r| FileId::new(r.get::<_, &str>(0))))
    }

    async fn put(&self, key: &MediaKey, file_id: &FileId) -> Result<()> {
        let (bot, sha, kind) = key_args(key);
        self.execute(
            "storing a file_id",
            &self.shared.sql.put,
            &[&bot, &sha, &kind, &file_id.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn invalidate(&self, key: &MediaKey, only_if: Option<&FileId>) -> Result<bool> {
        let (bot, sha, kind) = key_args(key);
        let only_if = only_if.map(FileId::as_str);
        let args: &[&(dyn ToSql + Sync)] = &[&bot, &sha, &kind, &only_if];
        for _ in 0..RACE_RETRIES {
            let sql = &self.shared.sql;
            if self
                .count("invalidating a file_id", &sql.invalidate, args)
                .await?
                > 0
            {
                return Ok(true);
            }
            // Zero can also mean a push gave the row a job between the statement's snapshot
            // and its lock: look again while a matching entry is there.
            if self
                .count("invalidating a file_id", &sql.invalidate_check, args)
                .await?
                == 0
            {
                return Ok(false);
            }
        }
        Err(Error::Backend {
            backend: "postgres",
            message: "invalidating a file_id kept racing with concurrent writers".to_owned(),
            retryable: true,
        })
    }

    fn get_local(&self, _key: &MediaKey) -> Option<FileId> {
        // Everything is in the database: put a TieredCache in front for lookups without I/O.
        None
    }
}
