//! Gallery records: capped per key, oldest evicted first.

use async_trait::async_trait;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{Galleries, GalleryRecord, StateError};

#[async_trait]
impl Galleries for EmbeddedState {
    async fn gallery_add(
        &self,
        subject: &str,
        mut record: GalleryRecord,
        keep: u64,
    ) -> Result<(u64, Vec<GalleryRecord>), StateError> {
        let mut inner = self.inner.lock();
        record.id = inner.gallery_seq.get(subject).copied().unwrap_or(0) + 1;
        let id = record.id;
        let keep = keep.max(1) as usize;
        let before: Vec<GalleryRecord> = inner
            .galleries
            .get(subject)
            .map(|l| {
                let over = (l.len() + 1).saturating_sub(keep);
                l.iter().take(over).cloned().collect()
            })
            .unwrap_or_default();
        inner.commit(Record::Gal {
            s: subject.to_string(),
            g: record,
            k: keep as u64,
        })?;
        Ok((id, before))
    }

    async fn gallery_page(
        &self,
        subject: &str,
        page: u64,
        limit: u64,
    ) -> Result<(Vec<GalleryRecord>, u64), StateError> {
        let inner = self.inner.lock();
        let Some(list) = inner.galleries.get(subject) else {
            return Ok((Vec::new(), 0));
        };
        let skip = (page.saturating_sub(1) * limit) as usize;
        let records = list
            .iter()
            .rev()
            .skip(skip)
            .take(limit as usize)
            .cloned()
            .collect();
        Ok((records, list.len() as u64))
    }
}
