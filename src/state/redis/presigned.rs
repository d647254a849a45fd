//! Presigned URLs handed out, on Redis: one sorted set scored by expiry
//! (unix seconds), each member the record as JSON; expired members are
//! pruned on every add.

use async_trait::async_trait;

use super::RedisState;
use crate::state::{PresignedRecord, PresignedUrls, StateError};

const PRESIGNED: &str = "kikaku:presigned";

#[async_trait]
impl PresignedUrls for RedisState {
    async fn presigned_add(&self, record: PresignedRecord) -> Result<(), StateError> {
        let json =
            serde_json::to_string(&record).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let (score, now) = (record.expires_at, record.created_at);
        // ZADD of the same member is idempotent, so a retry adds nothing twice.
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(PRESIGNED)
            .arg(score)
            .arg(json)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(PRESIGNED)
            .arg("-inf")
            .arg(now)
            .ignore();
        self.run(move |c, _| async move { c.query_pipe::<()>(pipe).await })
            .await
    }

    async fn presigned_list(&self, now: i64) -> Result<Vec<PresignedRecord>, StateError> {
        let raw: Vec<String> = self
            .run(move |c, _| async move {
                c.query(
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(PRESIGNED)
                        .arg("+inf")
                        .arg(format!("({now}"))
                        .clone(),
                )
                .await
            })
            .await?;
        let mut list: Vec<PresignedRecord> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        // The set is ordered by expiry; the contract is newest first.
        list.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        Ok(list)
    }
}
