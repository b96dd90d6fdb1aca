//! Loading a plan: the one place where the plan pipeline touches the disk.
//!
//! 1. read the plan file and parse it ([`crate::planfile`]);
//! 2. read every file it refers to (`file` of manifests, `values_files` of helm nodes) and
//!    every `--var-file`, relative paths against the plan's directory;
//! 3. build the model ([`crate::model::build()`]) and the graph ([`crate::graph::build()`]).
//!
//! Every problem of every step is collected into one [`Diagnostics`] (cycles among the valid
//! nodes included); the steps after a TOML syntax error are skipped (their findings would be
//! noise).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::graph::{self, PlanGraph};
use crate::model::{self, BuildInput, LoadedFile, Plan};
use crate::planfile::{
    Diagnostic, DiagnosticKind, Diagnostics, RawKind, RawPlan, SourceMap, parse_plan,
};

/// What to load: the plan file and its variable settings.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    pub plan: PathBuf,
    /// `--var NAME=VALUE`, in order (later wins).
    pub vars: Vec<String>,
    /// `--var-file FILE`, in order (later wins; `--var` wins over all).
    pub var_files: Vec<PathBuf>,
}

/// A loaded, validated plan, its graph, and the sources it was read from.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    pub plan: Plan,
    pub graph: PlanGraph,
    pub sources: SourceMap,
}

/// Something that reads files (the disk, or memory in tests).
pub trait FileReader {
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// Reads from the local disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl FileReader for Disk {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        String::from_utf8(std::fs::read(path)?).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not valid UTF-8 text: the byte at offset {at} (line {line}) is not UTF-8"),
            )
        })
    }
}

/// Loads a plan from disk.
pub fn load(request: &LoadRequest) -> Result<LoadedPlan, Diagnostics> {
    load_with(request, &Disk)
}

/// Loads a plan through `reader`.
pub fn load_with(
    request: &LoadRequest,
    reader: &dyn FileReader,
) -> Result<LoadedPlan, Diagnostics> {
    let mut sources = SourceMap::new();
    let shown = request.plan.display().to_string();
    let text = match reader.read(&request.plan) {
        Ok(text) => text,
        Err(e) => {
            let d = Diagnostic::new(
                DiagnosticKind::Io,
                format!("cannot read the plan file `{shown}`: {}", io_reason(&e)),
            )
            .help("check the path of the plan file");
            return Err(Diagnostics::new(vec![d], sources));
        }
    };
    let file = sources.add(shown, text.clone());
    let (raw, mut diags) = parse_plan(file, &text);
    if diags.iter().any(|d| {
        matches!(
            d.kind,
            DiagnosticKind::TomlSyntax | DiagnosticKind::DuplicateName
        )
    }) {
        return Err(Diagnostics::new(diags, sources));
    }
    let base_dir = request
        .plan
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut input = BuildInput {
        base_dir: base_dir.clone(),
        cli_vars: request.vars.clone(),
        ..BuildInput::default()
    };
    for written in referenced_files(&raw) {
        let path = base_dir.join(&written);
        let loaded = match reader.read(&path) {
            Ok(text) => LoadedFile::Loaded(sources.add(path.display().to_string(), text)),
            Err(e) => LoadedFile::Failed(io_reason(&e)),
        };
        input.files.insert(written, loaded);
    }
    for path in &request.var_files {
        match reader.read(path) {
            Ok(text) => input
                .var_files
                .push(sources.add(path.display().to_string(), text)),
            Err(e) => diags.push(
                Diagnostic::new(
                    DiagnosticKind::Io,
                    format!(
                        "cannot read the var file `{}`: {}",
                        path.display(),
                        io_reason(&e)
                    ),
                )
                .help("check the path given to --var-file (relative to the current directory)"),
            ),
        }
    }
    let (plan, more) = model::build_partial(&raw, &input, &mut sources);
    diags.extend(more);
    // Cycles among the valid nodes are reported together with everything else.
    match graph::build(&plan) {
        Ok(graph) if diags.is_empty() => Ok(LoadedPlan {
            plan,
            graph,
            sources,
        }),
        Ok(_) => Err(Diagnostics::new(diags, sources)),
        Err(cycles) => {
            diags.extend(cycles);
            Err(Diagnostics::new(diags, sources))
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::InvalidData => {
            let text = e.to_string();
            if text.starts_with("not valid UTF-8") {
                text
            } else {
                "not valid UTF-8 text".to_string()
            }
        }
        _ => e.to_string(),
    }
}

/// Paths (as written) of the manifest files and values files a raw plan refers to.
pub fn referenced_files(raw: &RawPlan) -> Vec<String> {
    let mut out: BTreeMap<String, ()> = BTreeMap::new();
    for node in &raw.nodes {
        if let Some(e) = node.field("file")
            && let Some(s) = e.value.as_str()
        {
            out.insert(s.to_string(), ());
        }
        if let Some(e) = node.field("values_files")
            && let RawKind::Array(items) = &e.value.kind
        {
            for item in items {
                if let Some(s) = item.as_str() {
                    out.insert(s.to_string(), ());
                }
            }
        }
    }
    out.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Memory(BTreeMap<PathBuf, String>);

    impl FileReader for Memory {
        fn read(&self, path: &Path) -> std::io::Result<String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn files(entries: &[(&str, &str)]) -> Memory {
        Memory(
            entries
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    const PLAN: &str = r#"
[plan]
name = "t"
[vars]
ns = "apps"
[repos]
r = "https://example.com"
[manifest.ns]
file = "manifests/ns.yaml"
[helm.app]
chart = "r/app"
values_files = ["values/app.yaml"]
depends_on = ["manifest.ns"]
"#;

    #[test]
    fn files_are_read_relative_to_the_plan() {
        let reader = files(&[
            ("stacks/plan.toml", PLAN),
            (
                "stacks/manifests/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${var.ns}\n",
            ),
            ("stacks/values/app.yaml", "replicas: 2\n"),
        ]);
        let request = LoadRequest {
            plan: PathBuf::from("stacks/plan.toml"),
            ..LoadRequest::default()
        };
        let loaded = load_with(&request, &reader).unwrap();
        assert_eq!(loaded.plan.nodes.len(), 2);
        let names: Vec<&str> = (0..3)
            .map(|i| loaded.sources.name(crate::planfile::FileId(i)))
            .collect();
        assert_eq!(
            names,
            [
                "stacks/plan.toml",
                "stacks/manifests/ns.yaml",
                "stacks/values/app.yaml"
            ]
        );
        assert_eq!(loaded.graph.apply_order().len(), 2);
    }

    #[test]
    fn objects_of_yaml_are_parsed_again_with_the_spans_they_were_loaded_with() {
        let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n--- \n  apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b, namespace: a}\n  data:\n    k: v\n";
        let plan = concat!(
            "[plan]\nname = \"t\"\n[manifest.file]\nfile = \"m.yaml\"\n",
            "[manifest.inline]\nyaml = '''\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: a\n'''\n",
            "[[manifest.tables.objects]]\napiVersion = \"v1\"\nkind = \"Namespace\"\nmetadata = { name = \"d\" }\n",
        );
        let reader = files(&[("plan.toml", plan), ("m.yaml", manifest)]);
        let request = LoadRequest {
            plan: PathBuf::from("plan.toml"),
            ..LoadRequest::default()
        };
        let loaded = load_with(&request, &reader).unwrap();
        let direct = crate::planfile::parse_yaml(crate::planfile::FileId(1), manifest, 0).unwrap();
        let objects = |name: &str| {
            let node = loaded
                .plan
                .nodes
                .values()
                .find(|n| n.address.name == name)
                .unwrap();
            match &node.spec {
                crate::model::NodeSpec::Manifest(m) => m.objects.clone(),
                _ => panic!("{name} is not a manifest"),
            }
        };
        let file = objects("file");
        assert_eq!(file.len(), 2);
        for (object, direct) in file.iter().zip(&direct) {
            assert!(matches!(object.raw, crate::model::RawObject::Yaml { .. }));
            assert_eq!(object.raw(&loaded.sources).unwrap().as_ref(), direct);
        }
        // Inline YAML points into the plan file; TOML objects are kept.
        let inline = &objects("inline")[0];
        let raw = inline.raw(&loaded.sources).unwrap();
        let meta = raw.as_table().unwrap().get("metadata").unwrap();
        let name = meta.value.as_table().unwrap().get("name").unwrap();
        assert_eq!(loaded.sources.slice(&name.value.span), "c");
        assert!(matches!(
            objects("tables")[0].raw,
            crate::model::RawObject::Kept(_)
        ));
    }

    #[test]
    fn every_missing_file_is_reported_once() {
        let reader = files(&[("plan.toml", PLAN)]);
        let request = LoadRequest {
            plan: PathBuf::from("plan.toml"),
            vars: vec!["ns=other".into()],
            var_files: vec![PathBuf::from("prod.toml")],
        };
        let diags = load_with(&request, &reader).unwrap_err();
        let short = diags.render_short();
        assert_eq!(
            short,
            "plan::io: cannot read the var file `prod.toml`: file not found\n\
             plan.toml:9:8: plan::io: cannot read manifest file `manifests/ns.yaml`: file not found\n\
             plan.toml:12:17: plan::io: cannot read values file `values/app.yaml`: file not found\n"
        );
    }
}
