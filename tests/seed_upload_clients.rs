//! Seed 003's client classes, `FileUploadAPI` in Python (requests) and in
//! JavaScript (fetch, FormData), as printed (`tests/seed_clients/
//! upload_api.{py,js}`), with the base URL and key substituted: each of the
//! three methods against the shipped config, the URL upload fetching from
//! an allowed origin on 127.0.0.5.

mod common;

use std::path::Path;

use common::uploads::{self as up, origin, JPEG, KEY};
use common::*;
use serde_json::Value;

fn snippet(name: &str, base: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seed_clients")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .replace("https://kieai.redpandaai.co", base)
}

fn run(prog: &str, args: &[&str], dir: &Path) -> Vec<Value> {
    let out = tool(prog).args(args).current_dir(dir).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{prog}: {o}\n{e}");
    serde_json::from_str(o.trim()).unwrap_or_else(|err| panic!("{err}: {o}"))
}

/// The three answers: a stream upload, a URL upload, a base64 upload.
async fn check(gw: &Gateway, answers: &[Value], local: &[u8]) {
    assert_eq!(answers.len(), 3, "{answers:?}");
    for a in answers {
        assert_eq!(
            (a["success"].as_bool(), a["code"].as_u64()),
            (Some(true), Some(200)),
            "{a}"
        );
    }
    let [stream, url, b64] = answers else {
        unreachable!()
    };
    assert_eq!(stream["data"]["uploadPath"], "user-uploads");
    assert_eq!(stream["data"]["fileName"], "file-1-notes.txt");
    assert_eq!(url["data"]["fileName"], "download-1.jpg");
    assert_eq!(url["data"]["mimeType"], "image/jpeg");
    assert_eq!(b64["data"]["fileName"], "base64-image.png");
    for (a, want) in [
        (stream, local),
        (url, JPEG),
        (b64, b"\x89PNG\r\n\x1a\n".as_slice()),
    ] {
        let (st, _, got) = up::fetch(a["data"]["fileUrl"].as_str().unwrap(), &[]).await;
        assert_eq!((st, got.as_slice()), (200, want), "{a}");
    }
    let total = (local.len() + JPEG.len() + 8) as u64;
    assert_eq!(up::used(gw, KEY).await, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_class_as_printed() {
    let o = origin();
    let u = up::start(&[("KIKAKU_URL_FETCH_ALLOW", "127.0.0.5".into())]);
    let dir = tempfile::tempdir().unwrap();
    let local = b"notes from the python client\n".repeat(50);
    std::fs::write(dir.path().join("notes.txt"), &local).unwrap();
    let script = format!(
        "{class}\n\nimport json\nuploader = FileUploadAPI('{KEY}')\nresults = [\n    uploader.upload_file('notes.txt', 'user-uploads', f'file-1-{{os.path.basename(\"notes.txt\")}}'),\n    uploader.upload_from_url('http://127.0.0.5:{o}/file.jpg', 'downloads', 'download-1.jpg'),\n    uploader.upload_base64('data:image/png;base64,iVBORw0KGgo=', 'images', 'base64-image.png'),\n]\nprint(json.dumps(results))\n",
        class = snippet("upload_api.py", &u.gw.url(""))
    );
    std::fs::write(dir.path().join("run.py"), script).unwrap();
    let answers = run("python3", &["run.py"], dir.path());
    check(&u.gw, &answers, &local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_class_as_printed() {
    let o = origin();
    let u = up::start(&[("KIKAKU_URL_FETCH_ALLOW", "127.0.0.5".into())]);
    let dir = tempfile::tempdir().unwrap();
    let local = b"notes from the javascript client\n".repeat(50);
    let script = format!(
        "{class}\n\nconst uploader = new FileUploadAPI('{KEY}');\n(async () => {{\n  const file = new File([{bytes:?}], 'notes.txt', {{ type: 'text/plain' }});\n  const results = [\n    await uploader.uploadFile(file, 'user-uploads', `file-1-${{file.name}}`),\n    await uploader.uploadFromUrl('http://127.0.0.5:{o}/file.jpg', 'downloads', 'download-1.jpg'),\n    await uploader.uploadBase64('data:image/png;base64,iVBORw0KGgo=', 'images', 'base64-image.png'),\n  ];\n  console.log(JSON.stringify(results));\n}})().catch(e => {{ console.error(e); process.exit(1); }});\n",
        class = snippet("upload_api.js", &u.gw.url("")),
        bytes = String::from_utf8(local.clone()).unwrap(),
    );
    std::fs::write(dir.path().join("run.js"), script).unwrap();
    let answers = run("node", &["run.js"], dir.path());
    check(&u.gw, &answers, &local).await;
}
