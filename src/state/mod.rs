//! State backends behind the [`StateStore`] contract (DESIGN §8).
//! `embedded`: single node, durable on local disk.

mod contract;
mod embedded;
mod files;
pub mod hosted;
mod journal;
pub mod redis;

use std::path::Path;
use std::sync::Arc;

pub use self::redis::{RedisConfig, RedisState};
pub use contract::{
    Admission, Galleries, GalleryRecord, ImageAdmission, LedgerSlot, LogPage, LogQuery, OpenUpload,
    PresignedRecord, PresignedUrls, QuotaUsage, Quotas, RequestLog, RequestLogs, RequestStats,
    Reservation, StateStore, StorageLedger,
};
pub use embedded::EmbeddedState;
pub use files::{lease_holder, lease_wait, upload_path_key, Leases, TempFiles, UploadRecord};
pub use hosted::{HostedContent, HostedFiles, HostedRef, ANONYMOUS_HOLDER};
pub use kikaku_filters::state::{KeyStore, PendingRateLimit, RateDecision, RateLimits, StateError};

use crate::config::{Config, StateBackend};

/// Open the backend a config names. The backend is fixed for the life of the
/// process; a reload that changes it is logged as a warning and takes
/// effect at the next start (`reload::warn_fixed_settings`).
pub fn open(config: &Config) -> Result<Arc<dyn StateStore>, StateError> {
    match config.state.backend {
        StateBackend::Embedded => {
            let path = match &config.state.path {
                Some(p) => Path::new(p).to_path_buf(),
                None => Path::new(&config.data_dir).join("state.journal"),
            };
            Ok(Arc::new(EmbeddedState::open_with(
                &path,
                config.state.logs_per_key,
            )?))
        }
        StateBackend::Redis => {
            let cfg = config.state.redis.clone().ok_or_else(|| {
                StateError::Unavailable("state.redis is required with backend: redis".into())
            })?;
            Ok(Arc::new(RedisState::connect(
                cfg,
                config.state.logs_per_key,
            )?))
        }
    }
}
