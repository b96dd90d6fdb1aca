//! `meshplan validate`: success on the sample plan, variables from the command line and var files.

use crate::support::{meshplan, run};

#[test]
fn sample_plan_is_valid() {
    let (code, stdout, stderr) = run(&["validate", "plans/linkerd.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(
        stdout,
        "plan linkerd is valid: 13 nodes (1 disabled: manifest.viz_dashboard), 12 edges, 11 layers, \
         9 vars, 2 repos\n"
    );
}

#[test]
fn var_override_enables_the_dashboard() {
    let (code, stdout, stderr) = run(&[
        "validate",
        "plans/linkerd.toml",
        "--var",
        "viz_dashboard_ingress=true",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "plan linkerd is valid: 14 nodes, 13 edges, 11 layers, 9 vars, 2 repos\n"
    );
}

#[test]
fn var_file_then_var_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prod.toml");
    std::fs::write(
        &file,
        "viz_dashboard_ingress = true\nlinkerd_viz_version = \"30.12.12\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, stdout, stderr) = run(&["validate", "plans/linkerd.toml", "--var-file", file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("plan linkerd is valid: 14 nodes,"),
        "{stdout}"
    );
    // --var wins over the var file.
    let (code, stdout, _) = run(&[
        "validate",
        "plans/linkerd.toml",
        "--var-file",
        file,
        "--var",
        "viz_dashboard_ingress=false",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("(1 disabled: manifest.viz_dashboard)"),
        "{stdout}"
    );
}

#[test]
fn var_file_errors_point_into_the_var_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "viz_dashboard_ingress = \"yes\"\n").unwrap();
    let output = meshplan()
        .args(["validate", "plans/linkerd.toml", "--var-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = format!("{}:1:25]", file.display());
    assert!(stderr.contains(&shown), "{stderr}");
    assert!(stderr.contains(
        "`viz_dashboard_ingress` is declared as a boolean but the var file sets a string"
    ));
}

#[test]
fn colour_is_off_when_not_a_terminal() {
    let output = meshplan()
        .env_remove("NO_COLOR")
        .args(["validate", "tests/fixtures/invalid/bad_toml/plan.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&output.stderr).contains('\u{1b}'));
}

#[test]
fn every_form_of_the_language_validates() {
    let (code, stdout, stderr) = run(&["validate", "tests/fixtures/valid/all_forms/plan.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "plan all-forms is valid: 8 nodes (1 disabled: manifest.optional), 4 edges, 3 layers, \
         7 vars, 1 repo\n"
    );
}
