//! Names the commit a build comes from, for `kikaku-edge --version`:
//! `KIKAKU_COMMIT` is the short hash of HEAD, or `unknown` outside a git
//! checkout (a source tarball). A build without `.git` (the container
//! build) may name it in the environment: `KIKAKU_COMMIT=<hash>`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run again when `path` (a file of the git directory) changes; a ref that
/// is not a file of its own lives in `packed-refs`.
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    } else if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        if Path::new(&packed).exists() {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=KIKAKU_COMMIT");
    let commit = std::env::var("KIKAKU_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KIKAKU_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit or a checkout moves HEAD or the branch it names.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(&head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            watch(&path);
        }
    }
}
