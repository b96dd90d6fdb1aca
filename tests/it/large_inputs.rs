//! Large and hostile inputs: a manifest file of more documents than the YAML parser's default
//! budget (1,024) is read; an alias bomb is refused with a plain message; a file that is not
//! UTF-8 is reported with the byte offset of the first bad byte.

use std::process::Command;

use crate::apply_cmd::BIN;

/// `meshplan validate` of a plan whose one manifest node reads `manifest` (bytes).
fn validate_with_manifest(manifest: &[u8]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("objects.yaml"), manifest).unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"large\"\n\n[manifest.objects]\nfile = \"objects.yaml\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate"])
        .arg(&plan)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_manifest_file_of_more_documents_than_the_parsers_default_budget_is_valid() {
    let text: String = (0..3_000)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: app\ndata:\n  k: v{i}\n"
            )
        })
        .collect();
    let (code, out, err) = validate_with_manifest(text.as_bytes());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("plan large is valid"), "{out}");
}

#[test]
fn an_alias_bomb_is_refused_with_a_plain_message() {
    let mut text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
    for (name, previous) in "bcdefghij".chars().zip("abcdefghi".chars()) {
        let items = vec![format!("*{previous}"); 10].join(", ");
        text.push_str(&format!("{name}: &{name} [{items}]\n"));
    }
    let (code, out, err) = validate_with_manifest(text.as_bytes());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("(an alias bomb)"), "{err}");
    assert!(!err.contains("budget breached"), "{err}");
}

#[test]
fn invalid_utf8_is_reported_with_its_byte_offset() {
    let (code, out, err) =
        validate_with_manifest(b"apiVersion: v1\nkind: ConfigMap\ndata:\n  k: \"\xff\"\n");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("the byte at offset 43 (line 4) is not UTF-8"),
        "{err}"
    );
}

/// `meshplan validate` of `plan` (the plan file's text) beside `objects.yaml` holding
/// `manifest`.
fn validate_plan(plan: &str, manifest: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("objects.yaml"), manifest).unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, plan).unwrap();
    let out = Command::new(BIN)
        .args(["validate"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MEGABYTE: usize = 1 << 20;

#[test]
fn a_megabyte_string_in_a_wrong_typed_field_is_not_echoed() {
    let plan = format!(
        "[plan]\nname = \"large\"\n\n[manifest.objects]\nfile = \"objects.yaml\"\ndepends_on = \"{}\"\n",
        "x".repeat(MEGABYTE)
    );
    let (code, out, err) = validate_plan(
        &plan,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n",
    );
    assert_eq!(code, 1, "{out}\n{}", &err[..err.len().min(4000)]);
    assert!(err.len() < 4096, "{} bytes:\n{}", err.len(), &err[..4000]);
    assert!(err.contains("plan.toml:6:14"), "{err}");
    assert!(
        err.contains("`depends_on` of manifest.objects must be"),
        "{err}"
    );
    // The snippet shows the start of the value.
    assert!(err.contains("depends_on = \"xxxxxxxx"), "{err}");
}

#[test]
fn a_megabyte_manifest_scalar_that_is_invalid_is_not_echoed() {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: app\ndata:\n  k: \"${{{}}}\"\n",
        "a b".repeat(MEGABYTE / 3)
    );
    let (code, out, err) = validate_plan(
        "[plan]\nname = \"large\"\n\n[manifest.objects]\nfile = \"objects.yaml\"\n",
        &manifest,
    );
    assert_eq!(code, 1, "{out}\n{}", &err[..err.len().min(4000)]);
    assert!(err.len() < 4096, "{} bytes:\n{}", err.len(), &err[..4000]);
    assert!(err.contains("objects.yaml:7:7"), "{err}");
    assert!(err.contains("invalid reference `${a ba b"), "{err}");
    assert!(err.contains("more bytes)"), "{err}");
}
