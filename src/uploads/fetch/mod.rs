//! The URL upload's fetch, which cannot be turned against the host (SSRF):
//! every URL (the first and each redirect) passes [`Policy::check_url`];
//! names are resolved by the gateway and every address checked
//! ([`Policy::check_addr`]) in the client's resolver, so the connection
//! goes to the very address that was checked (a DNS answer that changes
//! between check and connect cannot win). No proxy is used, the whole
//! fetch is bounded in time, and the body in size while it streams.

pub mod policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kikaku_filters::{ErrorKind, GatewayError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::config::UrlFetchConfig;
pub use policy::Policy;

/// Why a fetch was refused before any connection to a refused address.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves names and refuses any answer holding an address the policy
/// refuses (all or nothing: one bad address refuses the name).
struct CheckedResolver {
    policy: Arc<Policy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(Refused(format!("{host} could not be resolved: {e}"))))?
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused(format!("{host} has no address"))).into());
            }
            for a in &addrs {
                policy
                    .check_addr(&host, a.ip())
                    .map_err(|why| Box::new(Refused(why)))?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A fetcher for one `uploads.url_fetch` config.
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<Policy>,
    pub max_bytes: u64,
}

fn refusal(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(
        ErrorKind::InvalidParameter,
        format!("fileUrl refused: {}.", msg.into()),
    )
}

impl Fetcher {
    pub fn new(cfg: &UrlFetchConfig) -> Result<Fetcher, String> {
        let policy = Arc::new(Policy::new(&cfg.allow)?);
        let (redirect_policy, max) = (policy.clone(), cfg.max_redirects as usize);
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                let e = Refused(format!("more than {max} redirects"));
                return attempt.error(e);
            }
            match redirect_policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => {
                    let to = attempt.url().to_string();
                    attempt.error(Refused(format!("a redirect to {to}: {why}")))
                }
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .redirect(redirects)
            .timeout(cfg.timeout.0)
            .connect_timeout(Duration::from_secs(10).min(cfg.timeout.0))
            .user_agent(concat!("kikaku-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Fetcher {
            client,
            policy,
            max_bytes: cfg.max_bytes.0,
        })
    }

    /// Start fetching `raw`: the checked URL and the origin's answer, its
    /// body not yet read. Refusals and failures are 400 with the reason.
    pub async fn start(&self, raw: &str) -> Result<(Url, reqwest::Response), GatewayError> {
        let url = Url::parse(raw.trim()).map_err(|e| refusal(format!("not a URL ({e})")))?;
        self.policy.check_url(&url).map_err(refusal)?;
        let resp =
            self.client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| match find_refusal(&e) {
                    Some(why) => refusal(why),
                    None if e.is_timeout() => GatewayError::new(
                        ErrorKind::InvalidParameter,
                        "fileUrl could not be fetched: it timed out.",
                    ),
                    None => GatewayError::new(
                        ErrorKind::InvalidParameter,
                        format!("fileUrl could not be fetched: {}.", chain(&e)),
                    ),
                })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(GatewayError::new(
                ErrorKind::InvalidParameter,
                format!("fileUrl could not be fetched: the origin answered {status}."),
            ));
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large(self.max_bytes));
        }
        let final_url = resp.url().clone();
        Ok((final_url, resp))
    }
}

pub fn too_large(max: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("fileUrl is larger than {max} bytes, the most a URL upload may fetch."),
    )
}

/// The policy's reason, wherever in the error's chain it is.
fn find_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
