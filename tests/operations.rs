//! Operations: the admin listener, metrics, daemon mode and graceful upgrade.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The image route, `extra_routes`, then the test keys.
fn config_with(extra_routes: &str) -> String {
    format!(
        "routes:\n{}{extra_routes}{}",
        authed_route(
            "images",
            "/v1",
            "image",
            "handler: {type: not_implemented, message: later}"
        ),
        test_keys()
    )
}

fn config() -> String {
    config_with("")
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_and_metrics() {
    let up = common::upstream::Upstream::start("u").await;
    let gw = Gateway::with(&format!(
        "upstreams:\n  echo:\n    endpoints: [{{address: '{}'}}]\n{}",
        up.address(),
        config_with("  - name: proxied\n    match: {path_prefix: /echo}\n    upstream: echo\n")
    ));
    let http = client();
    let r = http.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            b["ready"].as_bool(),
            b["config_generation"].as_u64(),
            b["state"].as_str()
        ),
        (Some(true), Some(1), Some("embedded"))
    );
    assert_eq!(
        http.get(gw.admin_url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The admin listener is not the public one.
    assert_eq!(
        http.get(gw.url("/metrics")).send().await.unwrap().status(),
        404
    );

    for _ in 0..3 {
        http.get(gw.url("/v1/x")).send().await.unwrap();
    }
    http.get(gw.url("/v1/x"))
        .header("authorization", bearer(IMAGE_KEY))
        .send()
        .await
        .unwrap();
    http.get(gw.url("/elsewhere")).send().await.unwrap();

    assert_eq!(
        gw.wait_metric(
            "kikaku_requests_total{route=\"images\",status=\"401\"}",
            3.0
        ),
        3.0
    );
    assert_eq!(
        gw.wait_metric(
            "kikaku_requests_total{route=\"images\",status=\"501\"}",
            1.0
        ),
        1.0
    );
    // `/elsewhere`, and `/metrics` asked of the public listener above.
    assert_eq!(
        gw.wait_metric("kikaku_requests_total{route=\"-\",status=\"404\"}", 2.0),
        2.0
    );
    assert_eq!(
        gw.wait_metric(
            "kikaku_rejections_total{filter=\"key_auth\",reason=\"unauthorized\"}",
            3.0
        ),
        3.0
    );
    assert_eq!(
        gw.wait_metric(
            "kikaku_rejections_total{filter=\"router\",reason=\"not_found\"}",
            2.0
        ),
        2.0
    );
    assert_eq!(
        gw.wait_metric(
            "kikaku_request_duration_seconds_count{route=\"images\"}",
            4.0
        ),
        4.0
    );
    http.get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(
        gw.wait_metric(
            "kikaku_upstream_latency_seconds_count{route=\"proxied\",upstream=\"echo\"}",
            1.0
        ),
        1.0
    );
    assert_eq!(
        gw.wait_metric(
            "kikaku_requests_total{route=\"proxied\",status=\"200\"}",
            1.0
        ),
        1.0
    );
    let text = gw.metrics();
    assert!(text.contains("kikaku_config_reloads_total{result=\"error\"} 0"));
}

/// Wait until `port` answers `/healthz`-style GETs on the public listener.
fn wait_serving(port: u16, path: &str, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get_status(port, path) == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Listening TCP sockets on `port` (any process).
fn listening_sockets(port: u16) -> usize {
    common::listening_sockets()
        .iter()
        .filter(|(p, _)| *p == port)
        .count()
}

/// A daemon (`serve -d` of `bin`) on the operations config, serving.
struct Daemon {
    public: u16,
    cfg: std::path::PathBuf,
    body: String,
    pid_file: std::path::PathBuf,
}

fn start_daemon(dir: &std::path::Path, bin: &std::path::Path) -> Daemon {
    let (public, admin) = (free_port(), free_port());
    let body = format!("{}{}", header(), config())
        .replace("{PUBLIC}", &public.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{DATA}", &dir.join("data").to_string_lossy());
    let cfg = dir.join("kikaku.yaml");
    std::fs::write(&cfg, &body).unwrap();
    // -d: the command returns and the daemon serves.
    let out = Command::new(bin)
        .args(["serve", "-d", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_serving(public, "/v1/x", 401), "daemon not serving");
    Daemon {
        public,
        cfg,
        body,
        pid_file: dir.join("data/kikaku-edge.pid"),
    }
}

/// Requests keep being answered while `old` hands over and exits; how many.
/// `log`: the daemon's error log, shown when the hand-over never ends.
fn answered_through_hand_over(public: u16, old: i32, log: &std::path::Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = 0;
    while pid_alive(old) {
        assert!(
            Instant::now() < deadline,
            "old process never exited:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert_eq!(
            http_get_status(public, "/v1/x"),
            Some(401),
            "a request failed during the hand-over"
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        wait_serving(public, "/v1/x", 401),
        "new process not serving"
    );
    answered
}

fn stop(pid: i32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn daemon_mode_and_graceful_upgrade_hand_over_the_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_kikaku-edge");
    let d = start_daemon(dir.path(), std::path::Path::new(bin));
    // `server.reuse_port` (default) with the default 2 threads: a socket each.
    assert_eq!(listening_sockets(d.public), 2);
    let old_pid = read_pid(&d.pid_file);

    // -u: the new instance waits for the sockets (before daemonizing);
    // SIGQUIT makes the old one hand them over and drain.
    let mut upgrader = Command::new(bin)
        .args(["serve", "-d", "-u", "-c"])
        .arg(&d.cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-QUIT", &old_pid.to_string()])
        .status()
        .unwrap();
    let answered =
        answered_through_hand_over(d.public, old_pid, &dir.path().join("data/error.log"));
    assert!(
        upgrader.wait().unwrap().success(),
        "the upgrading command failed"
    );
    let new_pid = read_pid(&d.pid_file);
    assert_ne!(new_pid, old_pid);
    assert!(pid_alive(new_pid));
    // Both sockets were handed over, none left behind or bound anew.
    assert_eq!(listening_sockets(d.public), 2);
    eprintln!("{answered} requests answered during the hand-over");
    stop(new_pid);
}

/// Access-log lines wait in memory for the writer thread (written every
/// 100 ms); a clean shutdown (SIGTERM) writes out every one of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_shutdown_writes_every_access_log_line() {
    let mut gw = Gateway::with(&config());
    let http = client();
    let n = 300;
    for _ in 0..n {
        let r = http.get(gw.url("/v1/x")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    gw.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let out = gw.stdout();
    let lines = out.lines().filter(|l| l.contains("\"status\":401")).count();
    assert_eq!(lines, n, "every request's line, none lost at exit");
}

/// SIGUSR2 (the systemd unit's documented upgrade): the daemon starts the
/// binary now at its path with `-u` and hands its sockets over; a new
/// process that cannot start cancels the upgrade.
#[test]
fn sigusr2_upgrades_to_the_binary_now_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    // The binary as installed, at a path of its own.
    let bin = dir.path().join("kikaku-edge");
    std::fs::copy(env!("CARGO_BIN_EXE_kikaku-edge"), &bin).unwrap();
    let d = start_daemon(dir.path(), &bin);
    let first = read_pid(&d.pid_file);
    let usr2 = |pid: i32| {
        Command::new("kill")
            .args(["-USR2", &pid.to_string()])
            .status()
            .unwrap()
    };

    // A config that no longer loads: the new process exits, the upgrade is
    // cancelled and the old process keeps serving.
    std::fs::write(&d.cfg, d.body.replace("routes:", "routes: [")).unwrap();
    usr2(first);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        pid_alive(first),
        "the old process quit for a failed upgrade"
    );
    assert_eq!(read_pid(&d.pid_file), first);
    assert_eq!(http_get_status(d.public, "/v1/x"), Some(401));
    let log = std::fs::read_to_string(dir.path().join("data/error.log")).unwrap_or_default();
    assert!(log.contains("upgrade cancelled"), "{log}");
    std::fs::write(&d.cfg, &d.body).unwrap();

    // Install a new binary (a new file renamed over the old, as package
    // managers do), then USR2: the new file takes over.
    let staged = dir.path().join("kikaku-edge.new");
    std::fs::copy(env!("CARGO_BIN_EXE_kikaku-edge"), &staged).unwrap();
    std::fs::rename(&staged, &bin).unwrap();
    usr2(first);
    let answered = answered_through_hand_over(d.public, first, &dir.path().join("data/error.log"));
    let second = read_pid(&d.pid_file);
    assert!(second != first && pid_alive(second), "pid file: {second}");
    let exe = std::fs::read_link(format!("/proc/{second}/exe")).unwrap();
    assert_eq!(exe, bin, "the new process runs the file now at the path");
    assert_eq!(listening_sockets(d.public), 2);
    eprintln!("{answered} requests answered during the USR2 upgrade");
    stop(second);
}
