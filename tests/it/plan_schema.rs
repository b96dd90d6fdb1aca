//! The JSON Schema of the plan file (`docs/plan.schema.json`): it is what `meshplan schema`
//! prints (generated from the declarations the parser checks plans against), every plan of the
//! repository and every valid fixture satisfies it, and it refuses every invalid fixture whose
//! mistake is one of shape (a field, a type, a table, a required or conflicting field). Every
//! invalid fixture is in one of two lists, so a new fixture has to be classified.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{meshplan, root};

/// Invalid fixtures whose mistake the schema sees (shape).
const BY_SHAPE: &[&str] = &[
    "bad_timeout",
    "bad_wait",
    "depends_on_not_an_address",
    "duplicate_depends_on",
    "enabled_not_boolean",
    "ignore_rules_malformed",
    "ignore_wrong_shape",
    "invalid_names",
    "manifest_two_sources",
    "manifest_without_source",
    "many_errors",
    "missing_plan_table",
    "missing_required_field",
    "near_miss_field",
    "near_miss_node_type",
    "node_without_name",
    "read_key_and_field",
    "state_table",
    "suppress_missing_reason",
    "suppress_unknown_check",
    "top_level_key",
    "unknown_field",
    "unknown_node_type",
    "wrong_value_types",
];

/// Invalid fixtures whose mistake needs more than the file's shape: references and what they
/// name, the graph, other files, variables from the command line, or TOML that does not parse.
const BEYOND_SHAPE: &[&str] = &[
    "bad_reference_syntax",
    "bad_toml",
    "bad_toml_value",
    "bad_var_syntax",
    "cli_var_wrong_type",
    "cycle_of_three",
    "cycle_through_reference",
    "depends_on_missing_node",
    "disabled_node_is_checked",
    "disabled_node_reference",
    "duplicate_node_name",
    "duplicate_object",
    "incomplete_object",
    "missing_manifest_file",
    "missing_var_file",
    "near_miss_node_ref",
    "near_miss_var",
    "self_dependency",
    "table_var_in_string",
    "undeclared_cli_var",
    "undeclared_repo",
    "undefined_node_ref",
    "undefined_var",
    "undefined_var_in_manifest_file",
    "unknown_attribute",
    "unterminated_reference",
    "var_file_errors",
    "yaml_error_in_manifest",
    "yaml_error_inline",
];

fn shipped_schema() -> String {
    std::fs::read_to_string(root().join("docs/plan.schema.json")).unwrap()
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&shipped_schema()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// A plan file as the schema sees it: its TOML as JSON.
fn as_json(plan: &Path) -> Value {
    let text = std::fs::read_to_string(plan).unwrap();
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", plan.display()));
    serde_json::to_value(value).unwrap()
}

fn errors(validator: &jsonschema::Validator, plan: &Path) -> Vec<String> {
    validator
        .iter_errors(&as_json(plan))
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn fixture_dirs(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures").join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("plan.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn the_shipped_schema_is_what_meshplan_schema_prints() {
    let out = meshplan().arg("schema").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed == shipped_schema(),
        "docs/plan.schema.json is out of date: regenerate it with \
         `cargo run -- schema > docs/plan.schema.json`"
    );
    let schema: Value = serde_json::from_str(&printed).unwrap();
    jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("not a valid JSON Schema: {e}"));
}

#[test]
fn every_plan_of_the_repository_and_every_valid_fixture_satisfies_the_schema() {
    let validator = validator();
    let mut plans: Vec<PathBuf> = std::fs::read_dir(root().join("plans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    plans.extend(fixture_dirs("valid").iter().map(|d| d.join("plan.toml")));
    plans.push(root().join("tests/fixtures/sweep/plan.toml"));
    assert!(plans.len() >= 5, "{plans:?}");
    for plan in &plans {
        let errors = errors(&validator, plan);
        assert!(errors.is_empty(), "{}: {errors:#?}", plan.display());
        // And meshplan agrees that the shape is right.
        let out = meshplan().arg("validate").arg(plan).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            plan.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_schema_refuses_every_fixture_that_is_invalid_by_shape() {
    let validator = validator();
    for name in BY_SHAPE {
        let plan = root()
            .join("tests/fixtures/invalid")
            .join(name)
            .join("plan.toml");
        assert!(
            !errors(&validator, &plan).is_empty(),
            "{name}: the schema accepts a plan that is invalid by its shape"
        );
    }
}

#[test]
fn every_invalid_fixture_is_classified() {
    for dir in fixture_dirs("invalid") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let listed = BY_SHAPE.contains(&name.as_str()) as usize
            + BEYOND_SHAPE.contains(&name.as_str()) as usize;
        assert_eq!(
            listed, 1,
            "tests/fixtures/invalid/{name}: list it in exactly one of BY_SHAPE and BEYOND_SHAPE"
        );
    }
    let validator = validator();
    // What is beyond shape parses as TOML and passes the schema (else it belongs in BY_SHAPE);
    // TOML syntax errors are the exception: there is nothing for a schema to read.
    for name in BEYOND_SHAPE {
        let plan = root()
            .join("tests/fixtures/invalid")
            .join(name)
            .join("plan.toml");
        let text = std::fs::read_to_string(&plan).unwrap();
        if toml::from_str::<toml::Value>(&text).is_err() {
            continue;
        }
        let errors = errors(&validator, &plan);
        assert!(
            errors.is_empty(),
            "{name}: the schema refuses it, so it belongs in BY_SHAPE: {errors:#?}"
        );
    }
}

#[test]
fn a_plan_that_names_the_schema_in_a_comment_still_validates() {
    // The taplo directive `#:schema` is a comment: meshplan reads such a plan unchanged.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "#:schema ../docs/plan.schema.json\n[plan]\nname = \"demo\"\n\n[manifest.ns]\n\
         yaml = \"{apiVersion: v1, kind: Namespace, metadata: {name: demo}}\"\n",
    )
    .unwrap();
    assert!(errors(&validator(), &plan).is_empty());
    meshplan().arg("validate").arg(&plan).assert().success();
}
