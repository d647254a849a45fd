//! Load balancing against several real upstreams on loopback ports that
//! misbehave on purpose (`common::flaky`): refuse connections, answer 503,
//! answer slowly, die and come back. Shares, retries, the retry budget,
//! ejection and slow start, the circuit breaker and consistent hashing are
//! measured from what the upstreams and the clients saw.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::flaky::{endpoints, Flaky};
use common::{client, Gateway};
use reqwest::Method;

fn gateway(pool: &str) -> Gateway {
    Gateway::with(&format!(
        "upstreams:\n  pool:\n{pool}routes:\n  - name: open\n    match: {{path_prefix: /}}\n    upstream: pool\n"
    ))
}

/// One GET: its status and the server that answered (when one did).
async fn get(http: &reqwest::Client, url: &str, header: Option<&str>) -> (u16, Option<String>) {
    let mut req = http.get(url);
    if let Some(h) = header {
        req = req.header("x-user", h);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["server"].as_str().map(str::to_string))
}

/// Ten requests of this method with a body of `size` bytes, one after
/// another: each status and JSON answer.
async fn answers(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    size: usize,
) -> Vec<(u16, serde_json::Value)> {
    let mut got = Vec::new();
    for _ in 0..10 {
        let r = http
            .request(method.clone(), url)
            .body(vec![7u8; size])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        got.push((status, r.json().await.unwrap_or_default()));
    }
    got
}

/// `requests` GETs from `workers` concurrent clients; answers by server.
async fn spread(gw: &Gateway, workers: usize, requests: usize) -> HashMap<String, usize> {
    let url = gw.url("/x");
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = client();
                let mut seen = Vec::new();
                for _ in 0..requests / workers {
                    let (status, server) = get(&http, &url, None).await;
                    assert_eq!(status, 200);
                    seen.push(server.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut by = HashMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *by.entry(s).or_insert(0) += 1;
        }
    }
    by
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_and_peak_ewma_move_load_off_the_slow_endpoint() {
    let [a, b, slow] = Flaky::several(["a", "b", "slow"]).await;
    slow.delay(150);
    let mut shares = Vec::new();
    for balance in ["round_robin", "least_conn", "peak_ewma"] {
        let gw = gateway(&format!(
            "{}    balance: {balance}\n",
            endpoints(&[&a, &b, &slow])
        ));
        let by = spread(&gw, 8, 240).await;
        let share = *by.get("slow").unwrap_or(&0) as f64 / 240.0;
        eprintln!("{balance}: {by:?}, slow share {share:.3}");
        shares.push(share);
    }
    // Round robin gives the slow one its third whatever it costs.
    assert!((shares[0] - 1.0 / 3.0).abs() < 0.02, "{shares:?}");
    // The other two send it a small fraction of that.
    assert!(shares[1] < 0.12, "least_conn: {shares:?}");
    assert!(shares[2] < 0.08, "peak_ewma: {shares:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_go_to_another_endpoint_with_no_client_errors() {
    let ups = Flaky::several(["a", "b", "c", "d"]).await;
    ups[1].kill();
    ups[2].kill();
    ups[3].kill();
    // Three of four refuse: three retries reach the live one whatever the
    // order; ejection is off, so every request meets the dead ones.
    let gw = gateway(&format!(
        "{}    retry: {{retries: 3, budget: {{percent: 100, min_per_second: 100}}}}\n    outlier: {{enabled: false}}\n",
        endpoints(&ups.iter().collect::<Vec<_>>())
    ));
    let http = client();
    for _ in 0..100 {
        let (status, server) = get(&http, &gw.url("/x"), None).await;
        assert_eq!((status, server.as_deref()), (200, Some("a")));
    }
    let retries = gw.metric("kikaku_upstream_retries_total{reason=\"connect\",upstream=\"pool\"}");
    assert!(retries >= 100.0, "retries {retries}");
    assert_eq!(ups[0].hits(), 100);
    // Each retry is counted on the endpoint that failed.
    let per_endpoint: f64 = ups[1..]
        .iter()
        .map(|u| {
            gw.metric(&format!(
                "kikaku_upstream_endpoint_retries_total{{endpoint=\"{}\",upstream=\"pool\"}}",
                u.address()
            ))
        })
        .sum();
    assert_eq!(per_endpoint, retries);

    // None left: the client is told 502, after one try on each.
    ups[0].kill();
    let (status, _) = get(&http, &gw.url("/x"), None).await;
    assert_eq!(status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_retries_are_for_idempotent_methods_and_kept_bodies() {
    let (bad, good) = (Flaky::start("bad").await, Flaky::start("good").await);
    bad.answer(503);
    let gw = gateway(&format!(
        "{}    retry: {{retries: 1, on_status: [503], budget: {{percent: 100, min_per_second: 100}}}}\n    outlier: {{enabled: false}}\n",
        endpoints(&[&bad, &good])
    ));
    let http = client();
    for _ in 0..20 {
        let (status, server) = get(&http, &gw.url("/x"), None).await;
        assert_eq!((status, server.as_deref()), (200, Some("good")));
    }
    // A PUT whose body fits the retry buffer goes again, whole.
    for (status, v) in answers(&http, Method::PUT, &gw.url("/x"), 10_000).await {
        assert_eq!(status, 200);
        assert_eq!(v["received"], 10_000);
    }
    let seen_503 = |got: &[(u16, serde_json::Value)]| got.iter().filter(|(s, _)| *s == 503).count();
    // POST is not retried: half of them see the 503.
    let posts = answers(&http, Method::POST, &gw.url("/x"), 2).await;
    assert_eq!(seen_503(&posts), 5);
    // A body past the 64 KiB buffer that went upstream is not sent again.
    let before = bad.hits() + good.hits();
    let big_503 = seen_503(&answers(&http, Method::PUT, &gw.url("/x"), 200_000).await);
    assert_eq!(big_503, 5);
    assert_eq!(bad.hits() + good.hits() - before, 10);
    let refused =
        gw.metric("kikaku_upstream_retries_refused_total{upstream=\"pool\",why=\"body_sent\"}");
    assert_eq!(refused, 5.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_budget_caps_amplification() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.answer(503);
    b.answer(503);
    let http = client();
    let mut ratios = Vec::new();
    for percent in [100, 20] {
        let gw = gateway(&format!(
            "{}    retry: {{retries: 1, on_status: [503], budget: {{percent: {percent}, min_per_second: 0, window_seconds: 10}}}}\n    outlier: {{enabled: false}}\n",
            endpoints(&[&a, &b])
        ));
        let before = a.hits() + b.hits();
        for _ in 0..200 {
            let (status, _) = get(&http, &gw.url("/x"), None).await;
            assert_eq!(status, 503);
        }
        let ratio = (a.hits() + b.hits() - before) as f64 / 200.0;
        eprintln!("budget {percent}%: {ratio:.3} upstream requests per client request");
        ratios.push(ratio);
    }
    // Unbounded: every request is tried twice. Under a 20% budget, at most
    // 1.2 tries per request.
    assert_eq!(ratios[0], 2.0);
    assert!(ratios[1] <= 1.2 && ratios[1] >= 1.15, "{ratios:?}");
}

/// GETs one after another until `until`; (ms since `t0`, server) of each.
async fn timeline(gw: &Gateway, t0: Instant, until: Duration) -> Vec<(u128, String)> {
    let http = client();
    let mut seen = Vec::new();
    while t0.elapsed() < until {
        let (_, server) = get(&http, &gw.url("/x"), None).await;
        seen.push((t0.elapsed().as_millis(), server.unwrap_or_default()));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

fn share(seen: &[(u128, String)], from: u128, to: u128, who: &str) -> (f64, usize) {
    let window: Vec<_> = seen.iter().filter(|(t, _)| *t >= from && *t < to).collect();
    let n = window.iter().filter(|(_, s)| s == who).count();
    (n as f64 / window.len().max(1) as f64, window.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn ejection_and_slow_start_follow_the_schedule() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let gw = gateway(&format!(
        "{}    outlier: {{consecutive_failures: 3, base_ejection_ms: 1000, max_ejection_ms: 4000, max_ejected_percent: 50}}\n    slow_start_ms: 2000\n    retry: {{retries: 0}}\n",
        endpoints(&[&a, &b])
    ));
    let http = client();
    a.answer(503);
    // Round robin: a sees every other request; its third 503 ejects it.
    let mut ejected_at = None;
    for _ in 0..6 {
        get(&http, &gw.url("/x"), None).await;
        if a.hits() == 3 && ejected_at.is_none() {
            ejected_at = Some(Instant::now());
        }
    }
    let t0 = ejected_at.expect("a took three requests");
    assert_eq!(a.hits(), 3);
    a.answer(200);
    let seen = timeline(&gw, t0, Duration::from_millis(3300)).await;
    // Ejected for 1 s: nothing for a.
    let (away, n) = share(&seen, 0, 950, "a");
    assert_eq!(away, 0.0, "{n} requests while ejected");
    // Back at 1 s, ramping from 10% of its weight to all of it by 3 s:
    // its share grows from about 0.1/1.1 to about a half.
    let (early, n1) = share(&seen, 1050, 1550, "a");
    let (late, n2) = share(&seen, 2600, 3300, "a");
    eprintln!("a's share: {early:.3} of {n1} early in slow start, {late:.3} of {n2} after it");
    // Ramping: well under its half early on (about 0.1 to 0.2 expected;
    // a slow machine sends few requests in that window, so no floor), about
    // half once slow start is over.
    assert!(early < 0.3, "early {early}");
    assert!(late > 0.4 && late < 0.6, "late {late}");
    assert!(late > early + 0.15, "early {early}, late {late}");
    let series = format!(
        "kikaku_upstream_endpoint_ejections_total{{endpoint=\"{}\",upstream=\"pool\"}}",
        a.address()
    );
    assert_eq!(gw.metric(&series), 1.0);

    // Failing again soon after: the second ejection in a row lasts 2 s.
    a.answer(503);
    let hits = a.hits();
    let mut t1 = None;
    for _ in 0..400 {
        get(&http, &gw.url("/x"), None).await;
        if a.hits() == hits + 3 {
            t1 = Some(Instant::now());
            break;
        }
    }
    let t1 = t1.expect("a failed three more times");
    a.answer(200);
    let seen = timeline(&gw, t1, Duration::from_millis(2600)).await;
    assert_eq!(share(&seen, 0, 1950, "a").0, 0.0);
    assert!(share(&seen, 2100, 2600, "a").0 > 0.0);
    assert_eq!(gw.metric(&series), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_is_ejected_and_serves_again_when_back() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let gw = gateway(&format!(
        "{}    outlier: {{consecutive_failures: 2, base_ejection_ms: 500, max_ejection_ms: 500}}\n    required: true\n    health_check: {{kind: tcp, interval_seconds: 1, timeout_ms: 200}}\n",
        endpoints(&[&a, &b])
    ));
    let http = client();
    a.kill();
    let t0 = Instant::now();
    for _ in 0..50 {
        let (status, server) = get(&http, &gw.url("/x"), None).await;
        assert_eq!((status, server.as_deref()), (200, Some("b")));
    }
    // Connect failures count toward ejection: a was tried twice, then left
    // alone for 500 ms (twice more each time it is back, on a slow machine).
    let spells = 1 + t0.elapsed().as_millis() as u64 / 500;
    let refused = gw.metric("kikaku_upstream_retries_total{reason=\"connect\",upstream=\"pool\"}");
    assert!(
        refused <= 2.0 * spells as f64,
        "{refused} retries in {spells} spell(s)"
    );
    assert!(refused >= 2.0, "{refused}");
    // Both down: /readyz turns not-ready once the checks see it.
    b.kill();
    let ready = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = common::http_get_status(gw.admin, "/readyz");
            if got == Some(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(ready(503), Some(503));
    a.revive().await;
    b.revive().await;
    assert_eq!(ready(200), Some(200));
    let mut seen = HashMap::new();
    for _ in 0..40 {
        let (status, server) = get(&http, &gw.url("/x"), None).await;
        assert_eq!(status, 200);
        *seen.entry(server.unwrap()).or_insert(0) += 1;
    }
    assert!(seen.get("a").copied().unwrap_or(0) > 0, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_breaker_answers_503_when_full() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.delay(1000);
    b.delay(1000);
    for (limits, ok_want) in [
        ("{max_in_flight: 3, retry_after_seconds: 2}", 3),
        ("{max_in_flight_per_endpoint: 1}", 2),
    ] {
        let gw = gateway(&format!("{}    limits: {limits}\n", endpoints(&[&a, &b])));
        let url = gw.url("/x");
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let r = client().get(url).send().await.unwrap();
                    let after = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (r.status().as_u16(), after)
                })
            })
            .collect();
        let mut ok = 0;
        let mut full = Vec::new();
        for c in calls {
            match c.await.unwrap() {
                (200, _) => ok += 1,
                (503, after) => full.push(after),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ok, ok_want, "{limits}");
        assert_eq!(full.len(), 6 - ok_want);
        let want_after = if limits.contains("retry_after") {
            "2"
        } else {
            "1"
        };
        assert!(
            full.iter().all(|a| a.as_deref() == Some(want_after)),
            "{full:?}"
        );
        let overflow = gw.metric("kikaku_upstream_overflow_total{upstream=\"pool\"}");
        assert_eq!(overflow, (6 - ok_want) as f64);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hashing_keeps_keys_when_one_of_five_goes() {
    let ups = Flaky::several(["a", "b", "c", "d", "e"]).await;
    let all: Vec<&Flaky> = ups.iter().collect();
    let pool = |list: &[&Flaky]| {
        format!(
            "{}    balance: consistent_hash\n    hash_on: {{header: x-user}}\n",
            endpoints(list)
        )
    };
    let gw = gateway(&pool(&all));
    let http = client();
    let users: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    let mut placed = HashMap::new();
    for u in &users {
        let (_, s) = get(&http, &gw.url("/x"), Some(u)).await;
        placed.insert(u.clone(), s.unwrap());
    }
    // Every endpoint has some users, and the same user always lands on the same one.
    let mut per: HashMap<&str, usize> = HashMap::new();
    for s in placed.values() {
        *per.entry(s.as_str()).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 5, "{per:?}");
    for u in users.iter().take(50) {
        let (_, s) = get(&http, &gw.url("/x"), Some(u)).await;
        assert_eq!(s.as_ref(), placed.get(u));
    }

    // c leaves the pool (a reload), then c dies instead (a failure).
    let kept: Vec<&Flaky> = all.iter().copied().filter(|u| u.id != "c").collect();
    gw.write_config(&format!(
        "{}upstreams:\n  pool:\n{}routes:\n  - name: open\n    match: {{path_prefix: /}}\n    upstream: pool\n",
        common::header(),
        pool(&kept)
    ));
    let stay = |gw: &Gateway| {
        let gw_url = gw.url("/x");
        let placed = placed.clone();
        let users = users.clone();
        let http = http.clone();
        async move {
            let (mut kept, mut elsewhere, mut moved) = (0, 0, 0);
            for u in &users {
                let (status, s) = get(&http, &gw_url, Some(u)).await;
                assert_eq!(status, 200);
                let s = s.unwrap();
                if placed[u] == "c" {
                    moved += (s != "c") as usize;
                } else if s == placed[u] {
                    kept += 1;
                } else {
                    elsewhere += 1;
                }
            }
            (kept, elsewhere, moved)
        }
    };
    // Wait for the reload: c gets nothing more.
    let deadline = Instant::now() + Duration::from_secs(5);
    let c_users = per["c"];
    loop {
        let before = ups[2].hits();
        let (_, s) = get(
            &http,
            &gw.url("/x"),
            Some(placed.iter().find(|(_, s)| *s == "c").unwrap().0),
        )
        .await;
        if s.as_deref() != Some("c") && ups[2].hits() == before {
            break;
        }
        assert!(Instant::now() < deadline, "the reload did not take");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (kept_n, elsewhere, moved) = stay(&gw).await;
    let others = users.len() - c_users;
    eprintln!(
        "removed: {kept_n} of {others} stayed, {elsewhere} moved, {moved} of c's {c_users} rehomed"
    );
    assert!(kept_n as f64 >= 0.9 * others as f64);
    assert_eq!(moved, c_users);

    gw.write_config(&format!(
        "{}upstreams:\n  pool:\n{}routes:\n  - name: open\n    match: {{path_prefix: /}}\n    upstream: pool\n",
        common::header(),
        pool(&all)
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, s) = get(
            &http,
            &gw.url("/x"),
            Some(placed.iter().find(|(_, s)| *s == "c").unwrap().0),
        )
        .await;
        if s.as_deref() == Some("c") {
            break;
        }
        assert!(Instant::now() < deadline, "c did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ups[2].kill();
    let (kept_n, elsewhere, moved) = stay(&gw).await;
    eprintln!(
        "dead: {kept_n} of {others} stayed, {elsewhere} moved, {moved} of c's {c_users} rehomed"
    );
    assert!(kept_n as f64 >= 0.9 * others as f64);
    assert_eq!(moved, c_users);
}

#[tokio::test(flavor = "multi_thread")]
async fn hashing_on_the_key_keeps_each_customer_on_one_endpoint() {
    let ups = Flaky::several(["a", "b", "c", "d", "e"]).await;
    let keys: Vec<String> = (0..12)
        .map(|i| format!("kikaku_lb_customer_{i:02}"))
        .collect();
    let mut yaml = format!(
        "upstreams:\n  pool:\n{}    balance: consistent_hash\n    hash_on: key\nroutes:\n{}keys:\n",
        endpoints(&ups.iter().collect::<Vec<_>>()),
        common::authed_route("open", "/", "image", "upstream: pool")
    );
    for k in &keys {
        yaml += &format!("  - {{key: {k}, owner: {k}, rate_limit_per_minute: 100000}}\n");
    }
    let gw = Gateway::with(&yaml);
    let http = client();
    let mut homes = HashMap::new();
    for round in 0..5 {
        for k in &keys {
            let r = http.get(gw.url("/x")).bearer_auth(k).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            let server = v["server"].as_str().unwrap().to_string();
            let home = homes.entry(k.clone()).or_insert_with(|| server.clone());
            assert_eq!(*home, server, "{k} moved in round {round}");
        }
    }
    // The keys are spread, not all on one endpoint.
    let used: std::collections::HashSet<_> = homes.values().collect();
    eprintln!("12 keys on {} endpoints: {homes:?}", used.len());
    assert!(used.len() >= 3, "{homes:?}");
}
