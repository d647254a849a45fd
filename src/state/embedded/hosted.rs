//! The file host's contents and holds on the embedded backend, journaled
//! (`memory::Hosted` applies the records).

use async_trait::async_trait;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{HostedContent, HostedFiles, HostedRef, StateError};

#[async_trait]
impl HostedFiles for EmbeddedState {
    async fn hosted_get(&self, hash: &str) -> Result<Option<(HostedContent, u64)>, StateError> {
        let inner = self.inner.lock();
        let h = &inner.hosted;
        Ok(h.contents.get(hash).map(|c| {
            let holders = h.holds.get(hash).map_or(0, |m| m.len() as u64);
            (c.clone(), holders)
        }))
    }

    async fn hosted_put(&self, content: HostedContent, now_ms: i64) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        if inner.hosted.contents.contains_key(&content.hash) {
            return Ok(());
        }
        inner.commit(Record::HostPut {
            c: content,
            t: now_ms,
        })
    }

    async fn hosted_hold(&self, r: HostedRef) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        let h = &inner.hosted;
        if !h.contents.contains_key(&r.hash) {
            return Err(StateError::Corrupt(format!(
                "a hold on content {} that is not recorded",
                r.hash
            )));
        }
        if h.holds
            .get(&r.hash)
            .is_some_and(|m| m.contains_key(&r.holder))
        {
            return Ok(false);
        }
        inner.commit(Record::HostHold { r })?;
        Ok(true)
    }

    async fn hosted_release(
        &self,
        hash: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StateError> {
        let mut inner = self.inner.lock();
        let Some(holds) = inner.hosted.holds.get(hash) else {
            return Ok(None);
        };
        if !holds.contains_key(holder) {
            return Ok(None);
        }
        let left = holds.len() as u64 - 1;
        inner.commit(Record::HostDrop {
            h: hash.to_string(),
            who: holder.to_string(),
            t: now_ms,
        })?;
        Ok(Some(left))
    }

    async fn hosted_held(&self, holder: &str) -> Result<Vec<HostedRef>, StateError> {
        let inner = self.inner.lock();
        let h = &inner.hosted;
        let held: Vec<HostedRef> = h
            .by_holder
            .get(holder)
            .into_iter()
            .flatten()
            .filter_map(|hash| h.holds.get(hash).and_then(|m| m.get(holder)).cloned())
            .collect();
        Ok(HostedRef::newest_first(held))
    }

    async fn hosted_unreferenced(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<HostedContent>, StateError> {
        let inner = self.inner.lock();
        let h = &inner.hosted;
        let mut due: Vec<(i64, &String)> = h
            .unreferenced
            .iter()
            .filter(|(_, t)| **t <= before_ms)
            .map(|(hash, t)| (*t, hash))
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit)
            .filter_map(|(_, hash)| h.contents.get(hash).cloned())
            .collect())
    }

    async fn hosted_forget(&self, hash: &str) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        let h = &inner.hosted;
        if !h.contents.contains_key(hash) || h.holds.contains_key(hash) {
            return Ok(false);
        }
        inner.commit(Record::HostForget {
            h: hash.to_string(),
        })?;
        Ok(true)
    }
}
