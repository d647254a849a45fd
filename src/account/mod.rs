//! Account endpoints: for image keys (DESIGN §3) `GET /v1/usage` and
//! `GET /v1/logs`; for both key types `POST /account/rotate-key`
//! (`rotate.rs`).

pub mod rotate;

use crate::reply::Exchange;
use std::sync::Arc;

use crate::state::{LogQuery, StateStore};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use kikaku_filters::{ErrorKind, GatewayError, KeyStatus};
use serde_json::{json, Value};

pub(crate) fn rfc3339(unix_ms: i64) -> Value {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .map(|t| Value::from(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::unavailable("Account data", e)
}

fn invalid(msg: String) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

pub async fn usage(state: &Arc<dyn StateStore>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let key = ex.ctx.require_key("image_usage")?;
    let s = key.subject();
    let q = state.quota_usage(&s).await.map_err(unavailable)?;
    let st = state.request_stats(&s).await.map_err(unavailable)?;
    let avg = st
        .total_response_time_ms
        .checked_div(st.total_requests)
        .unwrap_or(0);
    let v = json!({
        "owner_name": key.owner,
        "email": key.email,
        "quota_limit": key.quota,
        "used_count": q.used,
        "remaining": key.quota.saturating_sub(q.used),
        "status": if key.status == KeyStatus::Active { "active" } else { "suspended" },
        "created_at": rfc3339(key.created_at * 1000),
        "expires_at": key.expires_at.map(|t| rfc3339(t * 1000)).unwrap_or(Value::Null),
        "stats": {
            "total_requests": st.total_requests,
            "successful_requests": st.successful_requests,
            "failed_requests": st.failed_requests,
            "avg_response_time_ms": avg,
        },
    });
    ex.json(200, v).await
}

/// `start_date`/`end_date` (`YYYY-MM-DD`, inclusive), `page` ≥ 1, `limit` 1–100 (default 20).
pub fn parse_log_query(query: Option<&str>) -> Result<LogQuery, GatewayError> {
    let mut q = LogQuery {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        page: 1,
        limit: 20,
    };
    let date = |name: &str, v: &str| {
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| invalid(format!("{name} must be a date like 2025-01-31, not {v:?}.")))
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "start_date" => {
                q.from_ms = date(k, v)?
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_millis())
                    .unwrap_or(i64::MIN)
            }
            "end_date" => {
                let next = date(k, v)?
                    .succ_opt()
                    .ok_or_else(|| invalid("end_date is out of range.".into()))?;
                q.to_ms = next
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_millis())
                    .unwrap_or(i64::MAX);
            }
            "page" => {
                q.page =
                    v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                        invalid(format!("page must be an integer ≥ 1, not {v:?}."))
                    })?
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        invalid(format!(
                            "limit must be an integer from 1 to 100, not {v:?}."
                        ))
                    })?
            }
            _ => {}
        }
    }
    if q.from_ms >= q.to_ms {
        return Err(invalid("start_date must not be after end_date.".into()));
    }
    Ok(q)
}

pub async fn logs(state: &Arc<dyn StateStore>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let key = ex.ctx.require_key("image_logs")?;
    let q = parse_log_query(ex.session.req_header().uri.query())?;
    let page = state.logs(&key.subject(), q).await.map_err(unavailable)?;
    let logs: Vec<Value> = page
        .logs
        .iter()
        .map(|l| {
            json!({
                "id": l.id,
                "model": l.model,
                "timestamp": rfc3339(l.timestamp_ms),
                "status": l.status,
                "response_time_ms": l.response_time_ms,
                "images": l.images,
                "error_message": l.error_message,
            })
        })
        .collect();
    let v = json!({"logs": logs, "pagination": {"page": q.page, "limit": q.limit, "total": page.total}});
    ex.json(200, v).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_queries() {
        let q = parse_log_query(Some(
            "start_date=2025-01-01&end_date=2025-01-01&page=2&limit=5",
        ))
        .unwrap();
        assert_eq!(q.to_ms - q.from_ms, 86_400_000, "end_date is inclusive");
        assert_eq!((q.page, q.limit), (2, 5));
        assert_eq!(parse_log_query(None).unwrap().limit, 20);
        assert!(parse_log_query(Some("limit=101"))
            .unwrap_err()
            .message
            .contains("1 to 100"));
        assert!(parse_log_query(Some("page=0")).is_err());
        assert!(parse_log_query(Some("start_date=yesterday")).is_err());
        assert!(parse_log_query(Some("start_date=2025-02-01&end_date=2025-01-01")).is_err());
    }
}
