//! Background jobs of the capabilities, on the serving snapshot: the
//! upload sweeper (`uploads::sweeper`) and the file host's collector
//! (`file_host::collect`), every `uploads.sweep_interval` (a reload's new
//! interval applies from the next round).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::proxy::metrics::{
    HOSTED_COLLECTED, HOSTED_COLLECTED_BYTES, UPLOADS_EXPIRED, UPLOADS_EXPIRED_BYTES,
};
use crate::proxy::reload::ConfigHolder;
use crate::uploads::sweeper;

pub struct UploadSweeper {
    pub holder: Arc<ConfigHolder>,
}

#[async_trait]
impl BackgroundService for UploadSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Who holds the sweep lease: one id per process.
        let instance = crate::state::lease_holder();
        loop {
            let snap = self.holder.current();
            let every = snap.config.uploads.sweep_interval.0;
            if let Some(storage) = &snap.storage {
                match sweeper::sweep(storage, &instance, every).await {
                    Ok(s) if s.files > 0 => {
                        log::info!("expired {} uploaded files ({} bytes)", s.files, s.bytes);
                        UPLOADS_EXPIRED.inc_by(s.files);
                        UPLOADS_EXPIRED_BYTES.inc_by(s.bytes);
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("upload sweep failed (next round retries): {e}"),
                }
                let bucket = &snap.config.file_host.bucket;
                match crate::file_host::collect(storage, bucket, &instance, every).await {
                    Ok(c) if c.contents > 0 => {
                        log::info!(
                            "collected {} hosted contents ({} bytes)",
                            c.contents,
                            c.bytes
                        );
                        HOSTED_COLLECTED.inc_by(c.contents);
                        HOSTED_COLLECTED_BYTES.inc_by(c.bytes);
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("file host collection failed (next round retries): {e}"),
                }
            }
            drop(snap);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(every.max(Duration::from_millis(100))) => {}
            }
        }
    }
}
