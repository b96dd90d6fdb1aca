//! `scripts/install-helm.sh` without the network: a suitable helm on PATH is used as it is, an
//! old one is replaced only when the machine has a helm build, the pinned helm is recognised.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::root;

/// A stand-in helm that reports `version`.
fn fake_helm(dir: &Path, version: &str) {
    let path = dir.join("helm");
    std::fs::write(&path, format!("#!/bin/sh\necho {version}\n")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
}

fn run(path_dir: &Path, tools: &Path, args: &[&str], platform: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/install-helm.sh"))
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", path_dir.display()))
        .env("MESHPLAN_TOOLS_DIR", tools)
        .env_remove("MESHPLAN_HELM");
    if let Some(p) = platform {
        cmd.env("MESHPLAN_HELM_PLATFORM", p);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_suitable_helm_on_path_is_used_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_helm(&bin, "v3.14.2");
    let tools = dir.path().join("tools");
    let out = run(&bin, &tools, &[], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("v3.14.2"), "{}", text(&out));
    assert!(text(&out).contains("nothing to install"), "{}", text(&out));
    assert!(!tools.exists(), "nothing installed");
}

#[test]
fn an_old_helm_on_a_machine_without_a_helm_build_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_helm(&bin, "v3.5.0");
    let tools = dir.path().join("tools");
    let out = run(&bin, &tools, &[], Some("plan9/mips"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("v3.5.0, older than 3.8.0"), "{said}");
    assert!(
        said.contains("no helm build for this machine (plan9/mips)"),
        "{said}"
    );
    assert!(
        said.contains("https://helm.sh/docs/intro/install/"),
        "{said}"
    );
    assert!(!tools.join("bin/helm").exists());
}

#[test]
fn pinned_wants_exactly_the_pinned_helm_and_recognises_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A suitable helm on PATH does not satisfy --pinned ...
    fake_helm(&bin, "v3.14.2");
    let tools = dir.path().join("tools");
    let out = run(&bin, &tools, &["--pinned"], Some("plan9/mips"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // ... the pinned one in the tools directory does (nothing fetched).
    std::fs::create_dir_all(tools.join("bin")).unwrap();
    fake_helm(&tools.join("bin"), "v4.1.4");
    let out = run(&bin, &tools, &["--pinned"], Some("plan9/mips"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("helm v4.1.4 already installed"),
        "{}",
        text(&out)
    );
    let out = run(&bin, &tools, &["--frobnicate"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
