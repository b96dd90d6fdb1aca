//! `scripts/install-helm.sh` without the network: a suitable helm on PATH is used as it is, an
//! old one is replaced only when the machine has a helm build, the pinned helm is recognised;
//! on a machine whose `uname` says aarch64 or armv7l (a stand-in `uname`, and a stand-in
//! `curl` serving a local copy of the release site) the matching archive is fetched, checked
//! against its published SHA-256 and installed, a wrong checksum installs nothing, and an
//! unreachable site says what to do instead.

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

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

/// A machine that `uname` says is `os`/`machine`, whose `curl` serves files from a local
/// "release site" (by the URL's file name, logging every URL asked for) and has no helm.
struct OfflineMachine {
    _dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    site: std::path::PathBuf,
    tools: std::path::PathBuf,
    curl_log: std::path::PathBuf,
}

impl OfflineMachine {
    fn new(os: &str, machine: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let site = dir.path().join("site");
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(&site).unwrap();
        let curl_log = dir.path().join("curl.log");
        executable(
            &bin.join("uname"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in -s) echo {os} ;; -m) echo {machine} ;; *) echo {os} ;; esac\n"
            ),
        );
        // curl -fsSL --retry 2 -o OUT URL: copy the site's file named like the URL's last part.
        executable(
            &bin.join("curl"),
            &format!(
                "#!/bin/sh\nout=\nwhile [ $# -gt 1 ]; do\n  if [ \"$1\" = -o ]; then out=\"$2\"; shift; fi\n  shift\ndone\n\
                 echo \"$1\" >> {log}\nname=\"${{1##*/}}\"\n[ -f {site}/\"$name\" ] || exit 22\ncp {site}/\"$name\" \"$out\"\n",
                log = curl_log.display(),
                site = site.display()
            ),
        );
        let tools = dir.path().join("tools");
        Self {
            bin,
            site,
            tools,
            curl_log,
            _dir: dir,
        }
    }

    /// Publishes helm's release archive for `plat` (`linux-arm64`) holding a stand-in helm
    /// that reports `version`, with its checksum file (`checksum` overrides the right one).
    fn publish(&self, plat: &str, version: &str, checksum: Option<&str>) -> Vec<u8> {
        let stage = self.site.join("stage");
        std::fs::create_dir_all(stage.join(plat)).unwrap();
        let helm = stage.join(plat).join("helm");
        executable(&helm, &format!("#!/bin/sh\necho {version}\n"));
        let archive = format!("helm-v4.1.4-{plat}.tar.gz");
        let status = Command::new("tar")
            .arg("-czf")
            .arg(self.site.join(&archive))
            .arg("-C")
            .arg(&stage)
            .arg(plat)
            .status()
            .unwrap();
        assert!(status.success());
        let sum = Command::new("sha256sum")
            .arg(self.site.join(&archive))
            .output()
            .unwrap();
        let right = String::from_utf8(sum.stdout).unwrap();
        let right = right.split_whitespace().next().unwrap().to_string();
        std::fs::write(
            self.site.join(format!("{archive}.sha256sum")),
            format!("{}  {archive}\n", checksum.unwrap_or(&right)),
        )
        .unwrap();
        std::fs::read(&helm).unwrap()
    }

    fn install(&self) -> Output {
        run(&self.bin, &self.tools, &[], None)
    }

    fn asked_for(&self) -> Vec<String> {
        std::fs::read_to_string(&self.curl_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

#[test]
fn a_raspberry_pi_gets_the_arm64_build_checked_against_its_checksum() {
    let pi = OfflineMachine::new("Linux", "aarch64");
    let published = pi.publish("linux-arm64", "v4.1.4", None);
    let out = pi.install();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "fetching https://get.helm.sh/helm-v4.1.4-linux-arm64.tar.gz; this needs the network"
        ),
        "{said}"
    );
    assert_eq!(
        pi.asked_for(),
        [
            "https://get.helm.sh/helm-v4.1.4-linux-arm64.tar.gz",
            "https://get.helm.sh/helm-v4.1.4-linux-arm64.tar.gz.sha256sum"
        ]
    );
    // The binary installed is the one from the archive, executable.
    let installed = pi.tools.join("bin/helm");
    assert_eq!(std::fs::read(&installed).unwrap(), published);
    assert!(said.contains("helm v4.1.4 installed at"), "{said}");
}

#[test]
fn a_32_bit_arm_board_gets_the_arm_build() {
    let board = OfflineMachine::new("Linux", "armv7l");
    board.publish("linux-arm", "v4.1.4", None);
    let out = board.install();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        board.asked_for().first().map(String::as_str),
        Some("https://get.helm.sh/helm-v4.1.4-linux-arm.tar.gz")
    );
}

#[test]
fn an_archive_whose_checksum_does_not_match_is_refused_and_nothing_installed() {
    let pi = OfflineMachine::new("Linux", "aarch64");
    pi.publish("linux-arm64", "v4.1.4", Some(&"0".repeat(64)));
    let out = pi.install();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("checksum mismatch for helm-v4.1.4-linux-arm64.tar.gz"),
        "{said}"
    );
    assert!(!pi.tools.join("bin/helm").exists());
}

#[test]
fn an_unreachable_release_site_says_so_and_what_to_do_instead() {
    let pi = OfflineMachine::new("Linux", "aarch64");
    // Nothing published: every fetch fails as curl -f does on a 404 or without a network.
    let out = pi.install();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "could not fetch https://get.helm.sh/helm-v4.1.4-linux-arm64.tar.gz (no network?)"
        ),
        "{said}"
    );
    assert!(
        said.contains("put a helm 3.8.0 or newer on PATH instead"),
        "{said}"
    );
    assert!(!pi.tools.join("bin/helm").exists());
}
