//! The files operators deploy with (`deploy/`): the systemd unit passes
//! `systemd-analyze verify` without a warning, the container file's stages
//! and copies hang together, and the two-instance example serves, two
//! instances on a real Redis and one S3 backend (moto).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `systemd-analyze verify` on a unit, its binary path pointed at this
/// build (verify wants the executables to exist). Its output: empty when
/// the unit is clean (it exits 0 on warnings, so the output is the test).
fn verify(unit_text: &str, dir: &Path) -> (bool, String) {
    let unit = dir.join("kikaku-edge.service");
    let text = unit_text.replace(
        "/usr/local/bin/kikaku-edge",
        env!("CARGO_BIN_EXE_kikaku-edge"),
    );
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_systemd_unit_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("deploy/systemd/kikaku-edge.service")).unwrap();
    let (ok, out) = verify(&text, dir.path());
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    // The check sees mistakes: a misspelt value and an unknown key.
    let (_, out) = verify(
        &text.replace("ProtectSystem=strict", "ProtectSystem=strikt"),
        dir.path(),
    );
    assert!(
        out.contains("ProtectSystem") || out.contains("protect system"),
        "{out}"
    );
    let (_, out) = verify(
        &text.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
        dir.path(),
    );
    assert!(out.contains("NoNewPrivilege"), "{out}");

    // What the issue asks of it.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Type=forking",
        "PIDFile=/var/lib/kikaku-edge/kikaku-edge.pid",
    ] {
        assert!(lines.contains(&want), "missing {want}");
    }
    // The graceful upgrade is documented with the signal the binary takes.
    assert!(text.contains("--signal=SIGUSR2"), "upgrade not documented");
    // The pid file is where the gateway writes it: <data_dir>/kikaku-edge.pid
    // with data_dir the unit's StateDirectory.
    assert!(lines.contains(&"StateDirectory=kikaku-edge"));
}

/// One instruction of a container file: keyword, arguments (continuation
/// lines joined).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (kw, args) = pending.split_once(' ').unwrap_or((&pending, ""));
        out.push((kw.to_string(), args.trim().to_string()));
        pending.clear();
    }
    assert!(pending.is_empty(), "a continuation runs off the end");
    out
}

#[test]
fn the_container_file_builds_in_two_stages_that_hang_together() {
    let text = std::fs::read_to_string(repo("deploy/container/Containerfile")).unwrap();
    let ins = instructions(&text);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    let mut stages: Vec<String> = Vec::new();
    let mut copied_to: Vec<String> = Vec::new();
    for (kw, args) in &ins {
        assert!(
            KNOWN.contains(&kw.as_str()),
            "unknown instruction {kw} {args}"
        );
        match kw.as_str() {
            "FROM" => {
                let (_, name) = args.split_once(" AS ").expect("every stage is named");
                stages.push(name.trim().to_string());
            }
            "COPY" => {
                let parts: Vec<&str> = args.split_whitespace().collect();
                let (from, rest) = match parts[0].strip_prefix("--from=") {
                    Some(stage) => (Some(stage), &parts[1..]),
                    None => (None, &parts[..]),
                };
                let (dest, sources) = rest.split_last().unwrap();
                match from {
                    // From an earlier stage, by name.
                    Some(stage) => assert!(
                        stages[..stages.len() - 1].iter().any(|s| s == stage),
                        "COPY --from={stage}: no earlier stage of that name"
                    ),
                    // From the build context: each source exists (`.` is the repo).
                    None => {
                        for s in sources {
                            assert!(repo(s).exists(), "COPY source {s} is not in the repo");
                        }
                    }
                }
                copied_to.push(dest.to_string());
            }
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let get = |kw: &str| -> Vec<&String> {
        ins.iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, a)| a)
            .collect()
    };
    // The build stage builds the binary Cargo names, with the lock file.
    let runs = get("RUN")
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        runs.contains("cargo build --release --locked --bin kikaku-edge"),
        "{runs}"
    );
    // The runtime stage runs what it copied: the binary and the config.
    let entry: Vec<String> = serde_json::from_str(get("ENTRYPOINT").last().unwrap()).unwrap();
    assert!(
        copied_to.contains(&entry[0]),
        "ENTRYPOINT {entry:?} was never copied in"
    );
    let cmd: Vec<String> = serde_json::from_str(get("CMD").last().unwrap()).unwrap();
    let config = cmd
        .iter()
        .skip_while(|a| *a != "-c")
        .nth(1)
        .expect("CMD names a config");
    assert!(
        copied_to.contains(config),
        "CMD's config {config} was never copied in"
    );
    assert!(
        get("USER").last().is_some_and(|u| u.as_str() != "root"),
        "runs as root"
    );
    // The variables the runtime stage sets are ones the shipped config reads.
    let shipped = std::fs::read_to_string(repo("conf/kikaku.yaml")).unwrap();
    let last_from = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    for (_, env) in ins[last_from..].iter().filter(|(k, _)| k == "ENV") {
        for pair in env.split_whitespace() {
            let name = pair.split('=').next().unwrap();
            assert!(
                shipped.contains(&format!("${{{name}")),
                "conf/kikaku.yaml does not read {name}"
            );
        }
    }
    // The context leaves out what would make it huge or leak the history.
    let ignore = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    for dir in ["target", ".git", ".venv"] {
        assert!(
            ignore.lines().any(|l| l.trim() == dir),
            ".dockerignore lacks {dir}"
        );
    }
}

/// The two-instance example as written: both instances on one real Redis
/// and one S3 backend (moto standing in for MinIO). A key made on one
/// instance works on the other, and the quota it spends is one count.
#[tokio::test(flavor = "multi_thread")]
async fn the_two_instance_example_shares_keys_and_quotas_on_redis() {
    let redis = common::redis::RedisServer::start();
    let moto = common::s3::Moto::start();
    let token = "two-instances-admin-token-0123";
    let start = |data: &Path| {
        let (public, admin, sim) = (free_port(), free_port(), free_port());
        let env = vec![
            ("KIKAKU_HTTP_ADDR", format!("127.0.0.1:{public}")),
            ("KIKAKU_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ("KIKAKU_SIM_ARK_ADDR", format!("127.0.0.1:{sim}")),
            ("KIKAKU_DATA_DIR", data.display().to_string()),
            ("KIKAKU_ACCESS_LOG", "off".into()),
            ("KIKAKU_ADMIN_TOKEN", token.into()),
            ("KIKAKU_REDIS_URL", redis.url()),
            ("KIKAKU_S3_ADDR", format!("127.0.0.1:{}", moto.port)),
            ("S3_ACCESS_KEY_ID", "kikaku-edge".into()),
            ("S3_SECRET_ACCESS_KEY", "moto-accepts-any-secret".into()),
        ];
        let gw = Gateway::start_file(
            &repo("deploy/two-instances/kikaku.yaml"),
            &env,
            public,
            admin,
        );
        wait_for_port(sim);
        gw
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (start(da.path()), start(db.path()));

    let admin = |gw: &Gateway, body: serde_json::Value| {
        let url = gw.admin_url("/admin/v1/keys");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // An image key made on a, spent on b, counted on a.
    let (s, made) = admin(
        &a,
        serde_json::json!({"type": "image", "owner": "Two", "quota": 5}),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    let r = client()
        .post(b.url("/v1/images/generations"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "seedream-4-0-250828", "prompt": "a bridge", "size": "1K"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let usage = get_json(&a.url("/v1/usage"), &key).await;
    assert_eq!(usage["used_count"], 1, "{usage}");

    // A storage key made on b: its bucket is made on the shared backend, and
    // a file stored through a is listed through b.
    let (s, made) = admin(
        &b,
        serde_json::json!({"type": "storage", "owner": "Two S3"}),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let skey = made["key"].as_str().unwrap().to_string();
    let r = common::uploads::post_form(
        &a,
        "/s3/upload",
        Some(&skey),
        &[
            common::uploads::text("key", "two/hello.txt"),
            common::uploads::file("hello.txt", "text/plain", b"hello from a"),
        ],
    )
    .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let listed = get_json(&b.url("/s3/files"), &skey).await;
    assert!(listed.to_string().contains("two/hello.txt"), "{listed}");
}
