//! The corpus of malformed plans: `tests/fixtures/invalid/<case>/plan.toml` (with the files it
//! refers to, and an optional `args` file of extra command-line arguments, one per line).
//! Every case must exit with code 1, print nothing on stdout, and print exactly the snapshot
//! on stderr: message, file, line and column, and the help.

use crate::support::{root, run};

fn check_invalid(case: &str) {
    let dir = format!("tests/fixtures/invalid/{case}");
    let plan = format!("{dir}/plan.toml");
    let extra = std::fs::read_to_string(root().join(&dir).join("args")).unwrap_or_default();
    let mut args = vec!["validate", plan.as_str()];
    args.extend(extra.lines().filter(|l| !l.is_empty()));
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(1), "{case}: exit code\n{stderr}");
    assert_eq!(stdout, "", "{case}: nothing on stdout");
    assert!(
        stderr.ends_with("nothing was changed\n"),
        "{case}: summary line\n{stderr}"
    );
    insta::assert_snapshot!(case, stderr);
}

macro_rules! invalid_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_invalid(stringify!($name));
            }
        )*
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

invalid_cases!(
    bad_reference_syntax,
    bad_timeout,
    bad_toml,
    bad_toml_value,
    bad_var_syntax,
    bad_wait,
    cli_var_wrong_type,
    cycle_of_three,
    cycle_through_reference,
    depends_on_missing_node,
    depends_on_not_an_address,
    disabled_node_is_checked,
    disabled_node_reference,
    duplicate_depends_on,
    duplicate_node_name,
    duplicate_object,
    enabled_not_boolean,
    ignore_rules_malformed,
    ignore_wrong_shape,
    incomplete_object,
    invalid_names,
    manifest_two_sources,
    manifest_without_source,
    many_errors,
    missing_manifest_file,
    missing_plan_table,
    missing_required_field,
    missing_var_file,
    near_miss_field,
    near_miss_node_ref,
    near_miss_node_type,
    near_miss_var,
    node_without_name,
    read_key_and_field,
    self_dependency,
    state_table,
    suppress_missing_reason,
    suppress_unknown_check,
    table_var_in_string,
    top_level_key,
    undeclared_cli_var,
    undeclared_repo,
    undefined_node_ref,
    undefined_var,
    undefined_var_in_manifest_file,
    unknown_attribute,
    unknown_field,
    unknown_node_type,
    unterminated_reference,
    var_file_errors,
    wrong_value_types,
    yaml_error_in_manifest,
    yaml_error_inline,
);

#[test]
fn every_fixture_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("tests/fixtures/invalid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 25);
}

#[test]
fn cycle_of_three_names_all_three_in_order_with_each_edge() {
    let (code, _, stderr) = run(&[
        "validate",
        "tests/fixtures/invalid/cycle_of_three/plan.toml",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("dependency cycle: manifest.a → manifest.c → manifest.b → manifest.a"));
    for edge in [
        "1. manifest.a depends on manifest.c",
        "2. manifest.c depends on manifest.b",
        "3. manifest.b depends on manifest.a",
    ] {
        assert!(stderr.contains(edge), "{edge}\n{stderr}");
    }
}

#[test]
fn graph_reports_the_same_errors_as_validate() {
    let plan = "tests/fixtures/invalid/many_errors/plan.toml";
    let (code_v, _, stderr_v) = run(&["validate", plan]);
    let (code_g, stdout_g, stderr_g) = run(&["graph", plan, "--format", "dot"]);
    assert_eq!((code_v, code_g), (Some(1), Some(1)));
    assert_eq!(stdout_g, "");
    assert_eq!(stderr_v, stderr_g);
}

#[test]
fn missing_plan_file_is_an_error_without_a_snippet() {
    let (code, stdout, stderr) = run(&["validate", "plans/nope.toml"]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    insta::assert_snapshot!(stderr, @r"
    plan::io

      × cannot read the plan file `plans/nope.toml`: file not found
      help: check the path of the plan file

    error: 1 problem found; nothing was changed
    ");
}
