//! Random and truncated input never panics: the TOML parser, the YAML reader, the reference
//! parser and the whole load (model + references + graph), and every diagnostic it returns
//! points inside the file it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use meshplan::load::{FileReader, LoadRequest, load_with};
use meshplan::model::template::parse_template;
use meshplan::planfile::{Diagnostics, FileId, Span, parse_plan, parse_yaml};
use proptest::prelude::*;

use crate::support::root;

/// Serves the plan from memory and everything else from a fixed map (the real manifests).
struct Memory {
    plan: String,
    files: BTreeMap<PathBuf, String>,
}

impl FileReader for Memory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == Path::new("plan.toml") {
            return Ok(self.plan.clone());
        }
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn sample() -> (String, BTreeMap<PathBuf, String>) {
    let plan = std::fs::read_to_string(root().join("plans/linkerd.toml")).unwrap();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("plans/manifests")).unwrap() {
        let path = entry.unwrap().path();
        let name = PathBuf::from("manifests").join(path.file_name().unwrap());
        files.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    (plan, files)
}

fn load_text(
    plan: &str,
    files: &BTreeMap<PathBuf, String>,
    vars: &[String],
) -> Result<(), Diagnostics> {
    let reader = Memory {
        plan: plan.to_string(),
        files: files.clone(),
    };
    let request = LoadRequest {
        plan: PathBuf::from("plan.toml"),
        vars: vars.to_vec(),
        var_files: Vec::new(),
    };
    load_with(&request, &reader).map(|_| ())
}

/// Every label of every diagnostic lies inside its file, on char boundaries, and rendering works.
fn check_diagnostics(diags: &Diagnostics) {
    assert!(!diags.is_empty());
    for d in &diags.items {
        for label in &d.labels {
            let text = diags.sources.text(label.span.file);
            assert!(label.span.range.start <= label.span.range.end, "{d:?}");
            assert!(label.span.range.end <= text.len(), "{d:?}");
            assert!(text.is_char_boundary(label.span.range.start), "{d:?}");
            assert!(text.is_char_boundary(label.span.range.end), "{d:?}");
        }
    }
    let rendered = diags.render(Default::default());
    assert!(rendered.ends_with("nothing was changed\n"));
}

#[test]
fn sample_plan_truncated_at_every_boundary_never_panics() {
    let (plan, files) = sample();
    assert!(load_text(&plan, &files, &[]).is_ok());
    let mut failures = 0;
    for end in (0..plan.len()).filter(|i| plan.is_char_boundary(*i)) {
        if let Err(diags) = load_text(&plan[..end], &files, &[]) {
            check_diagnostics(&diags);
            failures += 1;
        }
    }
    // Most prefixes are broken plans (missing nodes, cut strings): they must be reported.
    assert!(failures > plan.len() / 2, "{failures}");
}

#[test]
fn manifests_truncated_at_every_boundary_never_panic() {
    let (plan, files) = sample();
    let name = PathBuf::from("manifests/linkerd-podmonitors.yaml");
    let full = files[&name].clone();
    for end in (0..full.len())
        .filter(|i| full.is_char_boundary(*i))
        .step_by(7)
    {
        let mut cut = files.clone();
        cut.insert(name.clone(), full[..end].to_string());
        if let Err(diags) = load_text(&plan, &cut, &[]) {
            check_diagnostics(&diags);
        }
    }
}

/// Plan-like text: fragments of valid syntax glued in random order.
fn plan_like() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("[plan]\nname = \"p\"\n".to_string()),
        Just("[vars]\nv = \"1\"\nflag = true\n".to_string()),
        Just("[repos]\nr = \"https://example.com\"\n".to_string()),
        "[a-z]{1,8}".prop_map(|n| format!("[helm.{n}]\nchart = \"r/{n}\"\n")),
        "[a-z]{1,8}".prop_map(|n| format!("[manifest.{n}]\nyaml = \"{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {n}}}}}\"\n")),
        "[a-z]{1,8}".prop_map(|n| format!("depends_on = [\"helm.{n}\", \"manifest.{n}\"]\n")),
        "[a-z${}.]{0,20}".prop_map(|s| format!("version = \"{s}\"\n")),
        Just("enabled = \"${var.flag}\"\n".to_string()),
        Just("wait = { condition = \"Ready\", timeout = \"1m\" }\n".to_string()),
        Just("[read.r]\napi_version = \"v1\"\nkind = \"Secret\"\nname = \"s\"\nkey = \"k\"\n".to_string()),
        Just("[helm.x.values]\na = \"${read.r.value}\"\n".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics_the_parser(text in any::<String>()) {
        let _ = parse_plan(FileId(0), &text);
    }

    #[test]
    fn plan_like_text_never_panics_the_loader(text in plan_like(), var in "[a-z_=0-9]{0,12}") {
        let (_, files) = sample();
        if let Err(diags) = load_text(&text, &files, &[var]) {
            check_diagnostics(&diags);
        }
    }

    #[test]
    fn random_references_never_panic_the_resolver(text in "[a-z$_{}. -]{0,40}") {
        let whole = Span::new(FileId(0), 0..text.len());
        let _ = parse_template(&text, &whole, &|r| Span::new(FileId(0), r));
        // Through the whole pipeline as a helm value, too.
        let plan = format!(
            "[plan]\nname = \"p\"\n[vars]\nv = \"1\"\n[repos]\nr = \"https://e.com\"\n[helm.a]\nchart = \"r/a\"\n[helm.a.values]\nx = '{}'\n",
            text.replace('\'', "")
        );
        if let Err(diags) = load_text(&plan, &BTreeMap::new(), &[]) {
            check_diagnostics(&diags);
        }
    }

    #[test]
    fn random_yaml_never_panics(text in any::<String>()) {
        let _ = parse_yaml(FileId(0), &text, 0);
    }

    #[test]
    fn random_manifest_files_are_reported_inside_the_file(
        text in prop_oneof![any::<String>(), "[a-z:{}\\[\\], \n$-]{0,60}"]
    ) {
        let (plan, mut files) = sample();
        files.insert(PathBuf::from("manifests/linkerd-namespace.yaml"), text);
        if let Err(diags) = load_text(&plan, &files, &[]) {
            check_diagnostics(&diags);
        }
    }
}
