//! The file host's contents and holds on Redis, all under the `{filehost}`
//! hash tag so each change is one script on one Cluster slot:
//! `content` (hash → record), `holds:<hash>` (holder → hold),
//! `held:<holder>` (hash → hold) and `unref` (hash by the time nobody held
//! it).

use async_trait::async_trait;

use super::RedisState;
use crate::state::{HostedContent, HostedFiles, HostedRef, StateError};

const CONTENT: &str = "kikaku:{filehost}:content";
const UNREF: &str = "kikaku:{filehost}:unref";

fn holds_key(hash: &str) -> String {
    format!("kikaku:{{filehost}}:holds:{hash}")
}

fn held_key(holder: &str) -> String {
    format!("kikaku:{{filehost}}:held:{holder}")
}

fn decode<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, StateError> {
    serde_json::from_str(raw).map_err(|e| StateError::Corrupt(format!("file-host record: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StateError> {
    serde_json::to_string(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

#[async_trait]
impl HostedFiles for RedisState {
    async fn hosted_get(&self, hash: &str) -> Result<Option<(HostedContent, u64)>, StateError> {
        let (h, holds) = (hash.to_string(), holds_key(hash));
        let (raw, holders): (Option<String>, u64) = self
            .run(move |c, _| async move {
                let mut p = redis::pipe();
                p.cmd("HGET").arg(CONTENT).arg(h).cmd("HLEN").arg(holds);
                c.query_pipe(p).await
            })
            .await?;
        raw.map(|r| decode(&r).map(|c| (c, holders))).transpose()
    }

    async fn hosted_put(&self, content: HostedContent, now_ms: i64) -> Result<(), StateError> {
        let json = encode(&content)?;
        let holds = holds_key(&content.hash);
        let hash = content.hash;
        self.run(move |c, s| async move {
            let mut inv = s.hosted_put.prepare_invoke();
            inv.key(CONTENT).key(holds).key(UNREF);
            inv.arg(hash).arg(json).arg(now_ms);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn hosted_hold(&self, r: HostedRef) -> Result<bool, StateError> {
        let json = encode(&r)?;
        let (holds, held) = (holds_key(&r.hash), held_key(&r.holder));
        let (hash, holder) = (r.hash, r.holder);
        let got: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.hosted_hold.prepare_invoke();
                inv.key(CONTENT).key(holds).key(held).key(UNREF);
                inv.arg(hash).arg(holder).arg(json);
                c.invoke(inv).await
            })
            .await?;
        match got {
            -1 => Err(StateError::Corrupt(
                "a hold on a content that is not recorded".into(),
            )),
            n => Ok(n == 1),
        }
    }

    async fn hosted_release(
        &self,
        hash: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StateError> {
        let (holds, held) = (holds_key(hash), held_key(holder));
        let (hash, holder) = (hash.to_string(), holder.to_string());
        let left: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.hosted_release.prepare_invoke();
                inv.key(CONTENT).key(holds).key(held).key(UNREF);
                inv.arg(hash).arg(holder).arg(now_ms);
                c.invoke(inv).await
            })
            .await?;
        Ok((left >= 0).then_some(left as u64))
    }

    async fn hosted_held(&self, holder: &str) -> Result<Vec<HostedRef>, StateError> {
        let held = held_key(holder);
        let raw: Vec<(String, String)> = self
            .run(move |c, _| async move { c.query(redis::cmd("HGETALL").arg(held).clone()).await })
            .await?;
        let held = raw
            .iter()
            .map(|(_, r)| decode::<HostedRef>(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostedRef::newest_first(held))
    }

    async fn hosted_unreferenced(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<HostedContent>, StateError> {
        let raw = self.due_records(UNREF, CONTENT, before_ms, limit).await?;
        raw.iter().map(|r| decode(r)).collect()
    }

    async fn hosted_forget(&self, hash: &str) -> Result<bool, StateError> {
        let (holds, hash) = (holds_key(hash), hash.to_string());
        let gone: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.hosted_forget.prepare_invoke();
                inv.key(CONTENT).key(holds).key(UNREF).arg(hash);
                c.invoke(inv).await
            })
            .await?;
        Ok(gone == 1)
    }
}
