//! The storage byte ledger on Redis (scripts in `lua/ledger_*.lua`).

use async_trait::async_trait;
use rand::Rng;

use super::{key, RedisState};
use crate::state::{LedgerSlot, OpenUpload, Reservation, StateError, StorageLedger};

/// The hash a ledger slot lives in, and its field.
fn slot_keys(subject: &str, slot: &LedgerSlot) -> (String, String, String) {
    match slot {
        LedgerSlot::Object(o) => (key(subject, "objects"), o.clone(), String::new()),
        LedgerSlot::Part { upload_id, part } => (
            key(subject, &format!("mpu:{upload_id}")),
            part.to_string(),
            upload_id.clone(),
        ),
    }
}

#[async_trait]
impl StorageLedger for RedisState {
    async fn storage_reserve(
        &self,
        subject: &str,
        slot: &LedgerSlot,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let id: u64 = rand::thread_rng().gen();
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let (hash, field, _) = slot_keys(subject, slot);
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        let need: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.ledger.reserve.prepare_invoke();
                inv.key(q).key(h).key(hash);
                inv.arg(field).arg(amount).arg(limit).arg(id).arg(ttl);
                c.invoke(inv).await
            })
            .await?;
        Ok((need >= 0).then_some(Reservation {
            id,
            amount: need as u64,
        }))
    }

    async fn storage_commit(
        &self,
        subject: &str,
        reservation: Reservation,
        slot: &LedgerSlot,
        size: u64,
    ) -> Result<(), StateError> {
        let (q, h, up) = (
            key(subject, "quota"),
            key(subject, "held"),
            key(subject, "mpus"),
        );
        let (hash, field, upload) = slot_keys(subject, slot);
        self.run(move |c, s| async move {
            let mut inv = s.ledger.commit.prepare_invoke();
            inv.key(q).key(h).key(hash).key(up);
            inv.arg(reservation.id).arg(field).arg(size).arg(upload);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn storage_release(
        &self,
        subject: &str,
        reservation: Reservation,
    ) -> Result<(), StateError> {
        let h = key(subject, "held");
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HDEL").arg(h).arg(reservation.id).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn storage_remove(&self, subject: &str, object: &str) -> Result<u64, StateError> {
        let (q, o, object) = (
            key(subject, "quota"),
            key(subject, "objects"),
            object.to_string(),
        );
        self.run(move |c, s| async move {
            let mut inv = s.ledger.remove.prepare_invoke();
            inv.key(q).key(o).arg(object);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn storage_complete(
        &self,
        subject: &str,
        upload_id: &str,
        object: &str,
        size: u64,
    ) -> Result<(), StateError> {
        let keys = [
            key(subject, "quota"),
            key(subject, &format!("mpu:{upload_id}")),
            key(subject, "objects"),
            key(subject, "mpus"),
            key(subject, "uploads"),
        ];
        let (u, o) = (upload_id.to_string(), object.to_string());
        self.run(move |c, s| async move {
            let mut inv = s.ledger.complete.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            inv.arg(u).arg(o).arg(size);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn storage_abort(&self, subject: &str, upload_id: &str) -> Result<u64, StateError> {
        let keys = [
            key(subject, "quota"),
            key(subject, &format!("mpu:{upload_id}")),
            key(subject, "mpus"),
            key(subject, "uploads"),
        ];
        let u = upload_id.to_string();
        self.run(move |c, s| async move {
            let mut inv = s.ledger.abort.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            inv.arg(u);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn storage_upload_begin(
        &self,
        subject: &str,
        upload: OpenUpload,
    ) -> Result<(), StateError> {
        let k = key(subject, "uploads");
        let id = upload.upload_id.clone();
        let json =
            serde_json::to_string(&upload).map_err(|e| StateError::Corrupt(e.to_string()))?;
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HSET").arg(k).arg(id).arg(json).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn storage_uploads(&self, subject: &str) -> Result<Vec<OpenUpload>, StateError> {
        let k = key(subject, "uploads");
        let raw: Vec<String> = self
            .run(move |c, _| async move { c.query(redis::cmd("HVALS").arg(k).clone()).await })
            .await?;
        let mut ups: Vec<OpenUpload> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        ups.sort_by_key(|u| u.initiated_ms);
        Ok(ups)
    }

    async fn storage_reconcile(
        &self,
        subject: &str,
        objects: Vec<(String, u64)>,
    ) -> Result<u64, StateError> {
        let (q, o) = (key(subject, "quota"), key(subject, "objects"));
        self.run(move |c, s| async move {
            let mut inv = s.ledger.reconcile.prepare_invoke();
            inv.key(q).key(o);
            for (name, size) in objects {
                inv.arg(name).arg(size);
            }
            c.invoke::<u64>(inv).await
        })
        .await
    }
}
