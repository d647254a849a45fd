//! Gallery records on Redis: a capped list per key, newest first.

use async_trait::async_trait;

use super::{call_id, key, RedisState};
use crate::state::{Galleries, GalleryRecord, StateError};

#[async_trait]
impl Galleries for RedisState {
    async fn gallery_add(
        &self,
        subject: &str,
        mut record: GalleryRecord,
        keep: u64,
    ) -> Result<(u64, Vec<GalleryRecord>), StateError> {
        record.id = 0;
        let json =
            serde_json::to_string(&record).map_err(|e| StateError::Corrupt(e.to_string()))?;
        debug_assert!(json.starts_with("{\"id\":0,"));
        let (l, seq) = (key(subject, "gallery"), key(subject, "galseq"));
        let mark = key(subject, &format!("galadd:{}", call_id()));
        let keep = keep.max(1);
        let out: Vec<String> = self
            .run(move |c, s| async move {
                let mut inv = s.gallery.prepare_invoke();
                inv.key(l).key(seq).key(mark).arg(json).arg(keep);
                c.invoke(inv).await
            })
            .await?;
        let id = out
            .first()
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| StateError::Corrupt("gallery id".into()))?;
        let evicted = out[1..]
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        Ok((id, evicted))
    }

    async fn gallery_page(
        &self,
        subject: &str,
        page: u64,
        limit: u64,
    ) -> Result<(Vec<GalleryRecord>, u64), StateError> {
        let l = key(subject, "gallery");
        let start = page.saturating_sub(1) * limit;
        let stop = start + limit.max(1) - 1;
        let (raw, total): (Vec<String>, u64) = self
            .run(move |c, _| async move {
                let raw: Vec<String> = c
                    .clone()
                    .query(redis::cmd("LRANGE").arg(&l).arg(start).arg(stop).clone())
                    .await?;
                let total: u64 = c.query(redis::cmd("LLEN").arg(&l).clone()).await?;
                Ok((raw, total))
            })
            .await?;
        Ok((
            raw.iter()
                .filter_map(|r| serde_json::from_str(r).ok())
                .collect(),
            total,
        ))
    }
}
