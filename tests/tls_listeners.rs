//! TLS on the listeners, with certificates the tests make (rcgen): SNI picks
//! the certificate, real clients (curl, Python requests, httpx over h2)
//! verify it, certificates swap at reload without a failed request, a bad
//! certificate is refused at reload and by `check`, and the admin listener
//! can require client certificates.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{served, Ca, Leaf};
use common::*;

const BODY: &str = r#"{"model":"seedream-4-0-250828","prompt":"a lighthouse","size":"1K","response_format":"url"}"#;

/// A listener line with TLS: the default certificate, then `sni` entries.
fn tls_listener(default: &Leaf, sni: &str, extra: &str) -> String {
    format!(
        "listeners:\n  public:\n    address: '127.0.0.1:{{PUBLIC}}'\n    tls: {{cert_file: '{}', key_file: '{}', sni: [{sni}]{extra}}}\n  admin: {{address: '127.0.0.1:{{ADMIN}}'}}\ndata_dir: '{{DATA}}'\nserver: {{threads: 2, watch_interval_ms: 100}}\n",
        default.cert.display(),
        default.key.display()
    )
}

fn sni_entry(leaf: &Leaf, names: &str) -> String {
    format!(
        "{{cert_file: '{}', key_file: '{}'{names}}}",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// An image gateway whose public listener is `listeners` (with the
/// `{PUBLIC}`, `{ADMIN}` and `{DATA}` placeholders).
fn image_gateway(listeners: &str) -> Gateway {
    let (yaml, sim) = images::config("", "", 1000);
    let gw = Gateway::start(&format!("{listeners}{yaml}"));
    wait_for_port(sim);
    gw
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl for the image route at `https://<host>:<port>`, `host` resolved to
/// loopback and verified against `ca`.
fn curl_image(host: &str, port: u16, ca: &Path, extra: &[&str]) -> (bool, String, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/v1/images/generations");
    let auth = format!("Authorization: Bearer {}", images::KEY);
    let mut args = vec![
        "--resolve",
        &resolve,
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        BODY,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_each_certificate_and_real_clients_verify_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let default = ca.leaf(d, "default", &["default.test"], -1, 365);
    let api = ca.leaf(d, "api", &["api.test"], -1, 365);
    let files = ca.leaf(d, "files", &["*.files.test"], -1, 365);
    let sni = format!(
        "{}, {}",
        sni_entry(&api, ""),
        sni_entry(&files, ", names: ['*.files.test']")
    );
    let gw = image_gateway(&tls_listener(&default, &sni, ""));
    let port = gw.public;

    // Each name gets its certificate, verified against the CA.
    assert_eq!(
        served(port, Some("api.test"), &ca.file).await.unwrap(),
        api.der
    );
    assert_eq!(
        served(port, Some("API.Test"), &ca.file).await.unwrap(),
        api.der
    );
    assert_eq!(
        served(port, Some("eu.files.test"), &ca.file).await.unwrap(),
        files.der
    );
    assert_eq!(
        served(port, Some("default.test"), &ca.file).await.unwrap(),
        default.der
    );
    // No SNI (a client connecting by IP address): the default.
    assert_eq!(served(port, None, &ca.file).await.unwrap(), default.der);
    // A name no certificate has: the default, which a verifying client
    // refuses for that name.
    let other = served(port, Some("other.test"), &ca.file)
        .await
        .unwrap_err();
    assert!(other.contains("default.test"), "{other}");
    // A wildcard covers one label only.
    let deep = served(port, Some("a.b.files.test"), &ca.file)
        .await
        .unwrap_err();
    assert!(deep.contains("default.test"), "{deep}");

    // curl, verifying against the CA, on every name.
    for host in ["api.test", "eu.files.test", "default.test"] {
        let (ok, out, err) = curl_image(host, port, &ca.file, &[]);
        assert!(ok, "{host}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(images::images(&v), 1, "{host}: {out}");
    }
    let (ok, _, err) = curl_image("other.test", port, &ca.file, &[]);
    assert!(!ok && err.contains("other.test"), "{err}");

    // TLS 1.2 and 1.3 serve; nothing older does.
    for (min, max, want) in [
        ("--tlsv1.2", "1.2", "TLSv1.2"),
        ("--tlsv1.3", "1.3", "TLSv1.3"),
    ] {
        let (ok, _, err) = curl_image("api.test", port, &ca.file, &[min, "--tls-max", max, "-v"]);
        assert!(ok && err.contains(want), "{want}: {err}");
    }
    let old = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "api.test"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&old.stdout).to_string() + &String::from_utf8_lossy(&old.stderr);
    assert!(!old.status.success(), "TLS 1.1 was accepted:\n{text}");
    // The server's alert (a refusal on the client's side sends none).
    assert!(
        text.contains("alert handshake failure") || text.contains("alert protocol version"),
        "the server's refusal:\n{text}"
    );

    // Python requests, as the seeds' snippets call the image API.
    let script = format!(
        "import requests, sys\nr = requests.post('https://api.test:{port}/v1/images/generations', headers={{'Authorization': 'Bearer {}'}}, json={BODY}, verify=sys.argv[1])\nassert r.status_code == 200, (r.status_code, r.text)\nassert len(r.json()['data']) == 1, r.text\nprint('ok')\n",
        images::KEY
    );
    run_python(&script, &ca.file, "");
}

/// Run a Python script (with `*.test` sent to loopback) given the CA file
/// as its argument; it must succeed. `context` is shown when it does not.
fn run_python(script: &str, ca: &Path, context: &str) {
    let out = tool("python3")
        .args(["-c", &with_loopback_names(script), ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{context}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prefix a Python script with a resolver that sends `*.test` names to
/// loopback (the test's certificates are for such names).
fn with_loopback_names(script: &str) -> String {
    format!(
        "import socket\n_real = socket.getaddrinfo\ndef _gai(host, *a, **k):\n    return _real('127.0.0.1' if str(host).endswith('.test') else host, *a, **k)\nsocket.getaddrinfo = _gai\n{script}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_by_alpn_and_h2c_carry_the_image_route() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let default = ca.leaf(d, "default", &["default.test"], -1, 365);
    let gw = image_gateway(&tls_listener(&default, "", ""));

    // curl --http2 over TLS: ALPN picks h2.
    let (ok, out, err) = curl_image(
        "default.test",
        gw.public,
        &ca.file,
        &["--http2", "-w", "\n%{http_version}"],
    );
    assert!(ok, "{err}");
    let (body, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{out}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(images::images(&v), 1, "{body}");
    // HTTP/1.1 still works on the same listener.
    let (ok, out, err) = curl_image(
        "default.test",
        gw.public,
        &ca.file,
        &["--http1.1", "-w", "\n%{http_version}"],
    );
    assert!(ok && out.ends_with("\n1.1"), "{out}{err}");

    // httpx with h2: one answer, and a streamed one (`stream: true`) whose
    // events arrive over the h2 stream.
    let script = format!(
        "import httpx, json, sys\nwith httpx.Client(http2=True, verify=sys.argv[1]) as c:\n    h = {{'Authorization': 'Bearer {key}'}}\n    r = c.post('https://default.test:{port}/v1/images/generations', headers=h, content={BODY:?})\n    assert r.http_version == 'HTTP/2' and r.status_code == 200, (r.http_version, r.status_code, r.text)\n    assert len(r.json()['data']) == 1\n    body = dict(json.loads({BODY:?}), stream=True, n=2)\n    events = []\n    with c.stream('POST', 'https://default.test:{port}/v1/images/generations', headers=h, json=body) as s:\n        assert s.http_version == 'HTTP/2' and s.status_code == 200\n        for line in s.iter_lines():\n            if line.startswith('data: ') and line != 'data: [DONE]':\n                events.append(json.loads(line[6:])['type'])\n    assert events.count('image_generation.partial_succeeded') == 2, events\n    assert events[-1] == 'image_generation.completed', events\nprint('ok')\n",
        key = images::KEY,
        port = gw.public
    );
    run_python(&script, &ca.file, &gw.stderr());

    // h2c (HTTP/2 with prior knowledge) on a plain-text listener.
    let plain = "listeners:\n  public: {address: '127.0.0.1:{PUBLIC}', h2c: true}\n  admin: {address: '127.0.0.1:{ADMIN}'}\ndata_dir: '{DATA}'\nserver: {threads: 2}\n";
    let h2c = image_gateway(plain);
    let url = h2c.url("/v1/images/generations");
    let auth = format!("Authorization: Bearer {}", images::KEY);
    for (flag, want) in [("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")] {
        let (ok, out, err) = curl(&[
            flag,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            BODY,
            "-w",
            "\n%{http_version}",
            &url,
        ]);
        assert!(ok, "{flag}: {err}");
        let (body, version) = out.rsplit_once('\n').unwrap();
        assert_eq!(version, want, "{flag}: {out}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(images::images(&v), 1, "{flag}: {body}");
    }
}

/// A client that opens a new TLS connection for every request, trusting `ca`.
fn fresh_connection_client(ca: &Path, port: u16) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("default.test", ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn until_served(port: u16, ca: &Path, want: &[u8]) -> Duration {
    let start = Instant::now();
    while served(port, Some("default.test"), ca).await.ok().as_deref() != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_swap_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let live = ca.leaf(d, "live", &["default.test"], -1, 365);
    let gw = image_gateway(&tls_listener(&live, "", ""));
    let port = gw.public;
    assert_eq!(
        served(port, Some("default.test"), &ca.file).await.unwrap(),
        live.der
    );

    // Load: 8 clients, each request on a new TLS connection, plus 2 on
    // kept-alive ones (their connections outlive the swaps).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = if i < 8 {
            fresh_connection_client(&ca.file, port)
        } else {
            let pem = std::fs::read(&ca.file).unwrap();
            reqwest::Client::builder()
                .no_proxy()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .resolve("default.test", ([127, 0, 0, 1], port).into())
                .build()
                .unwrap()
        };
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let url = format!("https://default.test:{port}/v1/usage");
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(&url)
                    .header("authorization", bearer(images::KEY))
                    .send()
                    .await;
                let whole = match r {
                    Ok(r) if r.status() == 200 => r.bytes().await.map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match whole {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Swap 1: new files in place, picked up by the file watch.
    let second = ca.leaf(d, "second", &["default.test"], -1, 365);
    second.install_as(&live);
    let by_watch = until_served(port, &ca.file, &second.der).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Swap 2: SIGHUP as well (whichever of the two comes first reloads).
    let third = ca.leaf(d, "third", &["default.test"], -1, 365);
    third.install_as(&live);
    gw.signal("HUP");
    let by_hup = until_served(port, &ca.file, &third.der).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("swapped by file watch in {by_watch:?}, by SIGHUP in {by_hup:?}; {ok} requests ok, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the swaps");
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(gw.metric("kikaku_config_reloads_total{result=\"ok\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_certificate_at_reload_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let live = ca.leaf(d, "live", &["default.test"], -1, 365);
    let gw = image_gateway(&tls_listener(&live, "", ""));
    let port = gw.public;
    let refusals = || gw.metric("kikaku_config_reloads_total{result=\"error\"}");

    // Expired.
    let expired = ca.leaf(d, "expired", &["default.test"], -30, -1);
    expired.install_as(&live);
    assert_eq!(
        gw.wait_metric("kikaku_config_reloads_total{result=\"error\"}", 1.0),
        1.0
    );
    assert!(gw.stderr().contains("expired on"), "{}", gw.stderr());
    assert!(
        gw.stderr().contains("listeners.public.tls.cert_file"),
        "{}",
        gw.stderr()
    );

    // A key that is not the certificate's.
    let other = ca.leaf(d, "other", &["default.test"], -1, 365);
    let fresh = ca.leaf(d, "fresh", &["default.test"], -1, 365);
    std::fs::copy(&fresh.cert, &live.cert).unwrap();
    std::fs::copy(&other.key, &live.key).unwrap();
    assert_eq!(
        gw.wait_metric("kikaku_config_reloads_total{result=\"error\"}", 2.0),
        2.0
    );
    assert!(
        gw.stderr().contains("is not the key of the certificate"),
        "{}",
        gw.stderr()
    );

    // Meanwhile the first certificate serves, to new connections too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served(port, Some("default.test"), &ca.file).await.unwrap(),
        live.der
    );
    assert_eq!(
        refusals(),
        2.0,
        "one refusal per change, not one per watch tick"
    );
    let (ok, _, err) = curl_image("default.test", port, &ca.file, &[]);
    assert!(ok, "{err}");

    // A good pair is taken.
    std::fs::copy(&fresh.key, &live.key).unwrap();
    until_served(port, &ca.file, &fresh.der).await;
}

fn check(yaml: &str, dir: &Path) -> (i32, String) {
    let path = dir.join("check.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_reads_the_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let good = ca.leaf(d, "good", &["default.test"], -1, 365);
    let soon = ca.leaf(d, "soon", &["soon.test"], -1, 5);
    let expired = ca.leaf(d, "expired", &["old.test"], -30, -1);
    let listeners = |default: &Leaf, sni: &str| {
        tls_listener(default, sni, "")
            .replace("{PUBLIC}", "18443")
            .replace("{ADMIN}", "18444")
            .replace("{DATA}", &d.to_string_lossy())
    };

    let (code, out) = check(&listeners(&good, ""), d);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");

    // Ending within 14 days: a warning, still valid.
    let (code, out) = check(&listeners(&good, &sni_entry(&soon, "")), d);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: listeners.public.tls.sni[0].cert_file")
            && out.contains("expires on"),
        "{out}"
    );

    // Each fault: exit 1, the field's path and why.
    let pair = |cert: &Path, key: &Path| Leaf {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        der: vec![],
    };
    for (leaf, path, why) in [
        (
            pair(&expired.cert, &expired.key),
            "listeners.public.tls.cert_file",
            "expired on",
        ),
        (
            pair(&good.cert, &soon.key),
            "listeners.public.tls.key_file",
            "is not the key",
        ),
        (
            pair(&d.join("nowhere.pem"), &good.key),
            "listeners.public.tls.cert_file",
            "cannot read",
        ),
        // A key file that holds a certificate.
        (
            pair(&good.cert, &good.cert),
            "listeners.public.tls.key_file",
            "holds no PEM private key",
        ),
    ] {
        let (code, out) = check(&listeners(&leaf, ""), d);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(path) && out.contains(why),
            "want {path}: {why}\n{out}"
        );
    }

    // Client certificates belong to the admin listener.
    let (code, out) = check(
        &listeners(&good, "").replace("sni: []", "sni: [], client_ca_file: '/etc/hosts'"),
        d,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("listeners.public.tls.client_ca_file"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_can_require_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d);
    let server = ca.leaf(d, "admin", &["admin.test"], -1, 365);
    let ops = ca.client(d, "ops", "ops@example.com");
    let stranger_dir = d.join("stranger");
    std::fs::create_dir(&stranger_dir).unwrap();
    let stranger = Ca::new(&stranger_dir).client(&stranger_dir, "eve", "eve@example.com");
    let listeners = format!(
        "listeners:\n  public: {{address: '127.0.0.1:{{PUBLIC}}'}}\n  admin:\n    address: '127.0.0.1:{{ADMIN}}'\n    tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}\ndata_dir: '{{DATA}}'\n",
        server.cert.display(),
        server.key.display(),
        ca.file.display()
    );
    let gw = image_gateway(&listeners);
    let resolve = format!("admin.test:{}:127.0.0.1", gw.admin);
    let url = format!("https://admin.test:{}/healthz", gw.admin);
    let base = ["--resolve", &resolve, "--cacert", ca.file.to_str().unwrap()];
    let with = |leaf: Option<&Leaf>| {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        if let Some(l) = leaf {
            args.extend(["--cert".into(), l.cert.display().to_string()]);
            args.extend(["--key".into(), l.key.display().to_string()]);
        }
        args.push(url.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args)
    };
    let (ok, out, err) = with(Some(&ops));
    assert!(
        ok && out.contains("ok"),
        "with the operators' certificate: {out}{err}"
    );
    let (ok, _, err) = with(None);
    assert!(!ok, "no client certificate was let in: {err}");
    let (ok, _, err) = with(Some(&stranger));
    assert!(!ok, "a certificate of another CA was let in: {err}");
    // The public listener is unaffected.
    let (ok, _, err) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &gw.url("/v1/usage"),
    ]);
    assert!(ok, "{err}");
}

/// A 64 MiB S3 PUT and GET over HTTP/2 by curl --http2 and httpx (h2), on
/// presigned URLs, against the embedded backend behind the HTTPS endpoint
/// (`http2_64mib` in tests/s3/scenarios.py).
#[test]
fn the_s3_endpoint_carries_64_mib_each_way_over_http2() {
    let sg = common::s3::StorageGateway::start(common::s3::Backend::Embedded);
    let out = sg.scenario("http2_64mib");
    eprintln!("{out}");
    assert_eq!(out.matches("\"protocol\": \"HTTP/2\"").count(), 2, "{out}");
}
