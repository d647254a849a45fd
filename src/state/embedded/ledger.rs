//! The storage byte ledger: objects, parts of open uploads, open uploads.

use async_trait::async_trait;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{LedgerSlot, OpenUpload, Reservation, StateError, StorageLedger};

#[async_trait]
impl StorageLedger for EmbeddedState {
    async fn storage_reserve(
        &self,
        subject: &str,
        slot: &LedgerSlot,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let mut inner = self.inner.lock();
        inner.next_reservation += 1;
        let id = inner.next_reservation;
        let q = inner.quotas.entry(subject.to_string()).or_default();
        let need = amount.saturating_sub(q.slot_size(slot));
        if q.used + q.reserved() + need > limit {
            return Ok(None);
        }
        q.held.insert(id, need);
        Ok(Some(Reservation { id, amount: need }))
    }

    async fn storage_commit(
        &self,
        subject: &str,
        reservation: Reservation,
        slot: &LedgerSlot,
        size: u64,
    ) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        if let Some(q) = inner.quotas.get_mut(subject) {
            q.held.remove(&reservation.id);
        }
        let s = subject.to_string();
        inner.commit(match slot {
            LedgerSlot::Object(o) => Record::Obj {
                s,
                o: o.clone(),
                n: size,
            },
            LedgerSlot::Part { upload_id, part } => Record::Part {
                s,
                u: upload_id.clone(),
                p: *part,
                n: size,
            },
        })
    }

    async fn storage_release(
        &self,
        subject: &str,
        reservation: Reservation,
    ) -> Result<(), StateError> {
        if let Some(q) = self.inner.lock().quotas.get_mut(subject) {
            q.held.remove(&reservation.id);
        }
        Ok(())
    }

    async fn storage_remove(&self, subject: &str, object: &str) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let size = match inner
            .quotas
            .get(subject)
            .and_then(|q| q.objects.get(object))
        {
            Some(&n) => n,
            None => return Ok(0),
        };
        inner.commit(Record::ObjDel {
            s: subject.to_string(),
            o: object.to_string(),
        })?;
        Ok(size)
    }

    async fn storage_complete(
        &self,
        subject: &str,
        upload_id: &str,
        object: &str,
        size: u64,
    ) -> Result<(), StateError> {
        self.inner.lock().commit(Record::Done {
            s: subject.to_string(),
            u: upload_id.to_string(),
            o: object.to_string(),
            n: size,
        })
    }

    async fn storage_upload_begin(
        &self,
        subject: &str,
        upload: OpenUpload,
    ) -> Result<(), StateError> {
        self.inner.lock().commit(Record::UpBegin {
            s: subject.to_string(),
            up: upload,
        })
    }

    async fn storage_uploads(&self, subject: &str) -> Result<Vec<OpenUpload>, StateError> {
        Ok(self
            .inner
            .lock()
            .quotas
            .get(subject)
            .map(|q| q.uploads.clone())
            .unwrap_or_default())
    }

    async fn storage_abort(&self, subject: &str, upload_id: &str) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let held: u64 = inner
            .quotas
            .get(subject)
            .and_then(|q| q.parts.get(upload_id))
            .map(|p| p.values().sum())
            .unwrap_or(0);
        inner.commit(Record::Abort {
            s: subject.to_string(),
            u: upload_id.to_string(),
        })?;
        Ok(held)
    }

    async fn storage_reconcile(
        &self,
        subject: &str,
        objects: Vec<(String, u64)>,
    ) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let s = subject.to_string();
        inner.commit(Record::ObjReset { s: s.clone() })?;
        for (o, n) in objects {
            inner.commit(Record::Obj { s: s.clone(), o, n })?;
        }
        Ok(inner.quotas.get(subject).map(|q| q.used).unwrap_or(0))
    }
}
