//! `upstreams.NAME`: an upstream pool as operators write it: endpoints,
//! how requests are spread over them (`balance`, `hash_on`), TLS, timeouts,
//! active health checks, passive ejection (`outlier`) and `slow_start_ms`,
//! retries with a budget (`retry`), and the circuit breaker (`limits`).
//! The runtime pool is `src/upstreams/`.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub endpoints: Vec<EndpointConfig>,
    /// How a request's endpoint is chosen (see [`Balance`]).
    #[serde(default)]
    pub balance: Balance,
    /// The input of `balance: consistent_hash` (required with it, refused
    /// without it).
    pub hash_on: Option<HashOn>,
    /// Present: connect with TLS, certificates verified.
    pub tls: Option<TlsConfig>,
    /// `Host` header sent upstream (default: the endpoint's host as written).
    pub host: Option<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub keepalive: Keepalive,
    pub health_check: Option<HealthCheckConfig>,
    /// Passive health: endpoints that keep failing are ejected for a while.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// An endpoint that returns (from an ejection, a failed active check,
    /// or added by a reload) ramps its weight from 10% to 100% over this
    /// many milliseconds. 0 (the default): at once.
    #[serde(default)]
    pub slow_start_ms: u64,
    /// `balance: peak_ewma`: how fast an endpoint's latency estimate
    /// forgets (its time constant), in milliseconds. Default 10,000.
    #[serde(default = "ten_thousand")]
    pub ewma_decay_ms: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// The circuit breaker: requests in flight, per pool and per endpoint.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `/readyz` answers 503 while this pool has no endpoint to send to.
    /// Default false: one instance's view of a shared upstream is rarely a
    /// reason to take that instance out of its load balancer.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `HOST:PORT`; names are resolved when the config is loaded.
    pub address: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}
fn ten_thousand() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin (nginx's): each endpoint in turn, as
    /// often as its `weight`.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// The endpoint with the fewest requests in flight for its weight
    /// (ties in turn).
    LeastConn,
    /// Peak-EWMA latency (Finagle's, Linkerd's): of two endpoints drawn at
    /// random, the one whose decayed peak latency times (in flight + 1),
    /// over its weight, is lower.
    PeakEwma,
    /// Ketama consistent hashing on `hash_on`: a request goes to the same
    /// endpoint as long as it is in the pool; when it is not, its requests
    /// go to the next one on the ring and the rest stay where they were.
    ConsistentHash,
}

/// What `consistent_hash` hashes: `client_ip`, `path`, `key` or
/// `{header: NAME}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(from = "HashOnYaml")]
pub enum HashOn {
    /// The client's address.
    ClientIp,
    /// The request path (without the query).
    Path,
    /// The authenticated key (image keys and storage keys alike): one
    /// customer's requests stick to one endpoint. Requests without a key
    /// are spread in turn.
    Key,
    /// `{header: NAME}`: that request header's value. Requests without it
    /// are spread in turn.
    Header(String),
}

/// `HashOn` as written: a name, or a map with `header`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "client_ip, path, key or {header: NAME}")]
enum HashOnYaml {
    Named(HashInput),
    Header(HeaderInput),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum HashInput {
    ClientIp,
    Path,
    Key,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderInput {
    header: String,
}

impl From<HashOnYaml> for HashOn {
    fn from(y: HashOnYaml) -> HashOn {
        match y {
            HashOnYaml::Named(HashInput::ClientIp) => HashOn::ClientIp,
            HashOnYaml::Named(HashInput::Path) => HashOn::Path,
            HashOnYaml::Named(HashInput::Key) => HashOn::Key,
            HashOnYaml::Header(h) => HashOn::Header(h.header.to_ascii_lowercase()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server name for SNI and certificate checks (default: the endpoint host).
    pub sni: Option<String>,
    /// Verify the certificate chain and host name (default true). Turning it
    /// off is for test rigs only and is logged as a warning.
    #[serde(default = "yes")]
    pub verify: bool,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`): proxied routes, the
    /// image route's Ark client and the storage backend's client speak it
    /// when the upstream picks it. Default true.
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Longest wait for the next bytes from upstream.
    pub read_ms: u64,
    pub write_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 5_000,
            read_ms: 120_000,
            write_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    pub enabled: bool,
    /// Idle upstream connections are closed after this long.
    pub idle_seconds: u64,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            enabled: true,
            idle_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(default)]
    pub kind: HealthCheckKind,
    /// HTTP checks: the path to GET; any 2xx is healthy.
    #[serde(default = "root_path")]
    pub path: String,
    #[serde(default = "five")]
    pub interval_seconds: u64,
    #[serde(default = "thousand")]
    pub timeout_ms: u64,
    /// Consecutive failures before an endpoint is taken out.
    #[serde(default = "one")]
    pub unhealthy_after: u32,
    /// Consecutive successes before it is put back.
    #[serde(default = "one")]
    pub healthy_after: u32,
}

fn root_path() -> String {
    "/".into()
}
fn five() -> u64 {
    5
}
fn thousand() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Tcp,
    Http,
}

/// Passive health (outlier ejection). Connect failures, timeouts and
/// (with `on_5xx`) 5xx answers are failures; any other answer resets the
/// count.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    pub enabled: bool,
    /// Failures in a row that eject an endpoint.
    pub consecutive_failures: u32,
    /// Whether 5xx answers count as failures (else only connection
    /// failures and timeouts do).
    pub on_5xx: bool,
    /// The first ejection lasts this long; the n-th in a row n times as
    /// long, up to `max_ejection_ms`. An endpoint that then serves a
    /// `max_ejection_ms` without being ejected starts again from 1.
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
    /// At most this share of the pool is ejected at once (rounded down):
    /// past it, failing endpoints keep serving. A pool of one is never
    /// ejected.
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: 5,
            on_5xx: true,
            base_ejection_ms: 30_000,
            max_ejection_ms: 300_000,
            max_ejected_percent: 50,
        }
    }
}

/// Retries go to an endpoint not yet tried for the request, while one is
/// left.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Tries after the first. A failed connection is retried for every
    /// method (the request never left); the other failures only for
    /// `methods`. 0 turns retries off.
    pub retries: u32,
    /// Answers retried as failures (for `methods` only), e.g. `[502, 503]`.
    /// Default none. The last try's answer goes to the client as it is.
    pub on_status: Vec<u16>,
    /// Methods retried after the request reached an endpoint (a status in
    /// `on_status`, a connection lost before the answer). Default the
    /// idempotent ones: GET, HEAD, OPTIONS, PUT, DELETE.
    pub methods: Vec<String>,
    /// Whether a request body is kept so such a request can be sent again:
    /// Pingora's retry buffer, 64 KiB. A body that was longer and already
    /// went upstream is not retried. Default true.
    pub buffer_body: bool,
    pub budget: RetryBudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retries: 2,
            on_status: Vec::new(),
            methods: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
                .map(String::from)
                .to_vec(),
            buffer_body: true,
            budget: RetryBudgetConfig::default(),
        }
    }
}

/// Retries in the last `window_seconds` may not pass `percent` of the
/// requests in it plus `min_per_second` per second, so retries cannot
/// multiply the load on a failing pool (Linkerd's and Envoy's budgets).
/// Counted per gateway process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    pub percent: u32,
    pub min_per_second: u32,
    pub window_seconds: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            percent: 20,
            min_per_second: 3,
            window_seconds: 10,
        }
    }
}

/// The circuit breaker. When it is full, a request is answered 503 with
/// `Retry-After` at once rather than queued.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests in flight on the whole pool.
    pub max_in_flight: Option<u32>,
    /// Requests in flight on one endpoint (over HTTP/1.1, its connections
    /// in use): a full endpoint is passed over.
    pub max_in_flight_per_endpoint: Option<u32>,
    /// The `Retry-After` of the 503 (default 1).
    pub retry_after_seconds: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_in_flight: None,
            max_in_flight_per_endpoint: None,
            retry_after_seconds: 1,
        }
    }
}

/// Split `host:port` (IPv6 as `[::1]:80`).
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

/// Checks serde cannot make, each with its path (`upstreams.NAME...`).
pub(super) fn check(name: &str, u: &UpstreamConfig, errs: &mut Vec<ConfigError>) {
    let p = format!("upstreams.{name}");
    let mut err = |path: String, msg: &str| errs.push(ConfigError::new(path, msg));
    if u.endpoints.is_empty() {
        err(format!("{p}.endpoints"), "needs at least one endpoint");
    }
    let mut seen = std::collections::HashSet::new();
    for (i, ep) in u.endpoints.iter().enumerate() {
        if split_host_port(&ep.address).is_none() {
            err(format!("{p}.endpoints[{i}].address"), "must be HOST:PORT");
        }
        if ep.weight == 0 {
            err(format!("{p}.endpoints[{i}].weight"), "must be > 0");
        }
        if !seen.insert(ep.address.as_str()) {
            err(
                format!("{p}.endpoints[{i}].address"),
                "is listed twice (give it a larger weight instead)",
            );
        }
    }
    if let Some(tls) = &u.tls {
        if tls.sni.as_deref() == Some("") {
            err(
                format!("{p}.tls.sni"),
                "must not be empty (an empty SNI turns certificate checks off)",
            );
        }
        let ip_endpoint = u.endpoints.iter().any(|ep| {
            split_host_port(&ep.address).is_some_and(|(h, _)| h.parse::<std::net::IpAddr>().is_ok())
        });
        if tls.sni.is_none() && ip_endpoint {
            err(
                format!("{p}.tls.sni"),
                "is required when an endpoint is an IP address",
            );
        }
    }
    if u.timeouts.connect_ms == 0 || u.timeouts.read_ms == 0 || u.timeouts.write_ms == 0 {
        err(format!("{p}.timeouts"), "every timeout must be > 0");
    }
    if let Some(hc) = &u.health_check {
        if hc.interval_seconds == 0 {
            err(format!("{p}.health_check.interval_seconds"), "must be > 0");
        }
        if !hc.path.starts_with('/') {
            err(format!("{p}.health_check.path"), "must start with /");
        }
        if hc.unhealthy_after == 0 || hc.healthy_after == 0 {
            err(format!("{p}.health_check"), "thresholds must be > 0");
        }
    }
    match (&u.balance, &u.hash_on) {
        (Balance::ConsistentHash, None) => err(
            format!("{p}.hash_on"),
            "is required with balance: consistent_hash (client_ip, path, key or {header: NAME})",
        ),
        (Balance::ConsistentHash, Some(HashOn::Header(h)))
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() =>
        {
            err(format!("{p}.hash_on.header"), "is not a header name")
        }
        (Balance::ConsistentHash, _) | (_, None) => {}
        (_, Some(_)) => err(
            format!("{p}.hash_on"),
            "is only read with balance: consistent_hash",
        ),
    }
    if u.ewma_decay_ms == 0 {
        err(format!("{p}.ewma_decay_ms"), "must be > 0");
    }
    let o = &u.outlier;
    if o.enabled {
        if o.consecutive_failures == 0 {
            err(format!("{p}.outlier.consecutive_failures"), "must be > 0");
        }
        if o.base_ejection_ms == 0 {
            err(format!("{p}.outlier.base_ejection_ms"), "must be > 0");
        }
        if o.max_ejection_ms < o.base_ejection_ms {
            err(
                format!("{p}.outlier.max_ejection_ms"),
                "must be at least base_ejection_ms",
            );
        }
        if o.max_ejected_percent > 100 {
            err(
                format!("{p}.outlier.max_ejected_percent"),
                "must be 0..=100",
            );
        }
    }
    let r = &u.retry;
    for (i, s) in r.on_status.iter().enumerate() {
        if !(400..=599).contains(s) {
            err(
                format!("{p}.retry.on_status[{i}]"),
                "must be an error status (400..=599)",
            );
        }
    }
    for (i, m) in r.methods.iter().enumerate() {
        if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
            err(
                format!("{p}.retry.methods[{i}]"),
                "must be an HTTP method in capitals (GET, PUT, ...)",
            );
        }
    }
    if r.budget.window_seconds == 0 || r.budget.window_seconds > 60 {
        err(format!("{p}.retry.budget.window_seconds"), "must be 1..=60");
    }
    if r.budget.percent > 100 {
        err(format!("{p}.retry.budget.percent"), "must be 0..=100");
    }
    let l = &u.limits;
    if l.max_in_flight == Some(0) || l.max_in_flight_per_endpoint == Some(0) {
        err(
            format!("{p}.limits"),
            "limits must be > 0 (leave one out for no limit)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<UpstreamConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    fn errors(yaml: &str) -> Vec<String> {
        let mut errs = Vec::new();
        check("p", &parse(yaml).unwrap(), &mut errs);
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn hash_on_is_a_name_or_a_header() {
        let c =
            parse("endpoints: [{address: 'a:1'}]\nbalance: consistent_hash\nhash_on: key").unwrap();
        assert_eq!(c.hash_on, Some(HashOn::Key));
        let c = parse("endpoints: [{address: 'a:1'}]\nhash_on: {header: X-Tenant}").unwrap();
        assert_eq!(c.hash_on, Some(HashOn::Header("x-tenant".into())));
        let e = parse("endpoints: [{address: 'a:1'}]\nhash_on: cookie").unwrap_err();
        assert!(e.contains("client_ip, path, key or {header: NAME}"), "{e}");
        assert!(parse("endpoints: [{address: 'a:1'}]\nhash_on: {header: x, y: 1}").is_err());
    }

    #[test]
    fn the_checks_name_their_paths() {
        assert_eq!(
            errors("endpoints: [{address: 'a:1'}]\nbalance: consistent_hash"),
            ["upstreams.p.hash_on: is required with balance: consistent_hash (client_ip, path, key or {header: NAME})"]
        );
        assert_eq!(
            errors("endpoints: [{address: 'a:1'}]\nhash_on: path"),
            ["upstreams.p.hash_on: is only read with balance: consistent_hash"]
        );
        let e = errors(
            "endpoints: [{address: 'a:1'}, {address: 'a:1'}]\nretry: {on_status: [200], methods: [get], budget: {window_seconds: 0}}\noutlier: {base_ejection_ms: 10, max_ejection_ms: 5, max_ejected_percent: 101}\nlimits: {max_in_flight: 0}",
        );
        for want in [
            "upstreams.p.endpoints[1].address: is listed twice",
            "upstreams.p.retry.on_status[0]: must be an error status",
            "upstreams.p.retry.methods[0]: must be an HTTP method in capitals",
            "upstreams.p.retry.budget.window_seconds: must be 1..=60",
            "upstreams.p.outlier.max_ejection_ms: must be at least base_ejection_ms",
            "upstreams.p.outlier.max_ejected_percent: must be 0..=100",
            "upstreams.p.limits: limits must be > 0",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want} not in {e:?}");
        }
        assert!(errors("endpoints: [{address: 'a:1'}]").is_empty());
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            split_host_port("ark.example.com:443"),
            Some(("ark.example.com", 443))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
