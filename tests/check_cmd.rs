//! `kikaku-edge check -c FILE`: 0 and a summary on good files; non-zero and
//! every error with its YAML path on bad ones.

use std::process::Command;

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    check_path(&path)
}

fn check_path(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .args(["check", "-c"])
        .arg(path)
        .env_remove("KIKAKU_HTTP_ADDR")
        // conf/production.example.yaml requires these, as it should.
        .env("ARK_API_KEY", "test-ark-key")
        .env("S3_ACCESS_KEY_ID", "test-s3-id")
        .env("S3_SECRET_ACCESS_KEY", "test-s3-secret")
        .env("KIKAKU_ADMIN_TOKEN", "test-admin-token-0123")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, out, err) = check_path(&path);
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
            assert!(out.contains(": ok ("), "{out}");
        }
    }
}

#[test]
fn every_semantic_error_is_listed_with_its_path() {
    let (code, _, err) = check(
        r#"listeners:
  public: {address: "not-an-address"}
upstreams:
  ark:
    endpoints: []
routes:
  - name: a
    match: {path_prefix: v1}
    upstream: nowhere
  - name: a
    match: {path_prefix: /x, methods: [get]}
    handler: {type: not_implemented, message: m}
    filters:
      - rate_limit: {per_minute: 0}
keys:
  - {key: sk-foreign, owner: x}
  - {key_sha256: abc, owner: ""}
"#,
    );
    assert_eq!(code, 1);
    for expected in [
        "listeners.public.address: must be IP:PORT",
        "upstreams.ark.endpoints: needs at least one endpoint",
        "routes[0].match.path_prefix: must start with /",
        "routes[0].upstream: names no upstream",
        "routes[1].name: is used by an earlier route",
        "routes[1].match.methods[0]: must be an upper-case HTTP method",
        "routes[1].filters[0].rate_limit.per_minute: must be > 0",
        "routes[1].filters[0].rate_limit: must come after key_auth",
        "keys[0].key: must start with kikaku_ or kikaku_s3_",
        "keys[1].type: is required with key_sha256",
        "keys[1].key_sha256: must be 64 hex digits",
        "keys[1].owner: must not be empty",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("12 error(s)"), "{err}");
}

#[test]
fn structural_errors_name_their_path() {
    let (code, _, err) = check("listeners:\n  public: {address: '127.0.0.1:1'}\nroutes:\n  - name: r\n    match: {path_prefix: /}\n    handler: {type: teleport}\n");
    assert_eq!(code, 1);
    assert!(err.contains("routes[0].handler"), "{err}");
    assert!(err.contains("teleport"), "{err}");

    let (code, _, err) = check("listeners:\n  public: {address: '127.0.0.1:1'}\nroutes:\n  - name: r\n    match: {path_prefix: /}\n    handler: {type: not_implemented, message: m}\n    filters:\n      - key_auth: {}\n      - rate_limit: {per_minute: ten}\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("routes[0].filters[1].rate_limit.per_minute"),
        "{err}"
    );
}

#[test]
fn bad_yaml_missing_files_and_env_are_errors_not_panics() {
    let (code, _, err) = check("listeners: {public: [unclosed\n");
    assert_eq!(code, 1);
    assert!(err.contains("YAML syntax"), "{err}");

    let (code, _, err) = check_path(std::path::Path::new("/nonexistent/kikaku.yaml"));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");

    let (code, _, err) = check("listeners:\n  public: {address: '${KIKAKU_SURELY_UNSET_VAR}'}\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "listeners.public.address: environment variable KIKAKU_SURELY_UNSET_VAR is not set"
        ),
        "{err}"
    );

    let (code, _, _) =
        check("listeners:\n  public: {address: '${KIKAKU_SURELY_UNSET_VAR:-127.0.0.1:8080}'}\n");
    assert_eq!(code, 0);

    let (code, _, err) = check("\u{0}\u{1}binary");
    assert_eq!(code, 1, "{err}");
}

#[test]
fn the_admin_token_and_public_url_are_checked() {
    let (code, _, err) = check(
        "listeners:\n  public: {address: '127.0.0.1:8080'}\nadmin: {token: short}\npublic_url: 'ftp://files.example.com'\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("admin.token: must be at least 16"), "{err}");
    assert!(
        err.contains("public_url: must be an absolute http(s) URL"),
        "{err}"
    );
    let (code, out, err) = check(
        "listeners:\n  public: {address: '127.0.0.1:8080'}\nadmin: {token: a-long-enough-token}\npublic_url: 'https://gw.example.com/'\n",
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_upload_sections_are_typed_and_checked() {
    let base = "listeners:\n  public: {address: \"127.0.0.1:8080\"}\n";
    for (section, expected) in [
        (
            "uploads: {ttl: 3 days}\n",
            "uploads.ttl: unknown duration unit",
        ),
        (
            "uploads: {sweep_interval: 0s}\n",
            "uploads.sweep_interval: must be > 0",
        ),
        (
            "uploads: {max_base64_bytes: 10XB}\n",
            "uploads.max_base64_bytes: unknown size unit",
        ),
        (
            "uploads: {url_fetch: {colour: red}}\n",
            "uploads.url_fetch.colour: unknown field `colour`",
        ),
        (
            "file_host: {anonymous: {enabled: yes-please}}\n",
            "file_host.anonymous.enabled",
        ),
        (
            "file_host: {bucket: Files_Here}\n",
            "file_host.bucket: \"Files_Here\" is not an S3 bucket name",
        ),
        (
            "file_host: {anonymous: {per_minute_per_ip: 0}}\n",
            "file_host.anonymous.per_minute_per_ip: must be > 0",
        ),
        ("file_host: {max_bytes: 0}\n", "file_host.max_bytes"),
    ] {
        let (code, _, err) = check(&format!("{base}{section}"));
        assert_eq!(code, 1, "{section}");
        assert!(err.contains(expected), "{section}: {err}");
    }
    let (code, _, err) = check(&format!(
        "{base}uploads: {{url_fetch: {{allow: [\"files.internal\", \"10.9.0.0/16\", \"not a host!\"]}}}}\n"
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("uploads.url_fetch.allow[2]: \"not a host!\" is neither a host name"),
        "{err}"
    );
}

#[test]
fn image_models_are_checked_with_their_paths() {
    let yaml = r#"listeners:
  public: {address: "127.0.0.1:8080"}
upstreams:
  ark: {endpoints: [{address: "127.0.0.1:9100"}]}
routes:
  - name: images
    match: {path_prefix: /v1/images/generations}
    filters: [{key_auth: {}}]
    handler:
      type: image_generation
      upstream: ark
      api_key: k
      models:
        - {alias: s5, upstream_id: s-5, presets: [5K], min_pixels: 1, max_pixels: 2}
        - {alias: s6, upstream_id: s-6, presets: [2K], min_pixels: 1, max_pixels: 2, fields: [steps]}
"#;
    let (code, _, err) = check(yaml);
    assert_eq!(code, 1);
    // serde names the handler (its enum is tagged by `type`) and the value.
    assert!(
        err.contains("routes[0].handler: unknown variant `steps`"),
        "{err}"
    );
    let fixed = yaml.replace(", fields: [steps]", "");
    let (code, _, err) = check(&fixed);
    assert_eq!(code, 1);
    assert!(
        err.contains("routes[0].handler.models[0].presets[0]: unknown preset \"5K\""),
        "{err}"
    );
}

/// `--version` names the release and the commit the binary was built from,
/// so an operator can tell which build is running.
#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        printed.trim(),
        format!("kikaku-edge {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}
