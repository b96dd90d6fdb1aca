//! A deterministic text dump of a [`Plan`], for tests and `--verbose` output: every var with
//! its origin, every repo, every node with its typed fields. Strings are shown as written
//! (references as `${...}`), structured values as compact JSON.

use std::fmt::Write as _;

use super::duration::format_duration;
use super::plan::{
    Chart, ManifestSource, Node, NodeSpec, Plan, ReadSelect, Value, VarOrigin, Wait,
};

/// The dump of a plan (see the module documentation).
pub fn dump_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plan {}", plan.name);
    if !plan.vars.is_empty() {
        out.push_str("vars\n");
        for var in plan.vars.values() {
            let origin = match &var.origin {
                VarOrigin::Default => "default".to_string(),
                VarOrigin::VarFile(f) => format!("var file {f}"),
                VarOrigin::CommandLine => "--var".to_string(),
            };
            let _ = writeln!(out, "  {} = {}  ({origin})", var.name, var.value);
        }
    }
    if !plan.repos.is_empty() {
        out.push_str("repos\n");
        for repo in plan.repos.values() {
            let _ = writeln!(out, "  {} = {}", repo.name, repo.url);
        }
    }
    for node in plan.nodes.values() {
        dump_node(&mut out, node);
    }
    for rule in &plan.ignore {
        let _ = writeln!(out, "ignore {}", rule_text(rule));
    }
    if !plan.disabled.is_empty() {
        out.push_str("disabled\n");
        for address in plan.disabled.keys() {
            let _ = writeln!(out, "  {address}");
        }
    }
    out
}

fn dump_node(out: &mut String, node: &Node) {
    let _ = writeln!(out, "{}", node.address);
    if !node.depends_on.is_empty() {
        let deps: Vec<String> = node
            .depends_on
            .iter()
            .map(|d| d.target.to_string())
            .collect();
        let _ = writeln!(out, "  depends_on = {}", deps.join(", "));
    }
    if let Some(ns) = &node.namespace {
        let _ = writeln!(out, "  namespace = {ns}");
    }
    if node.wait != Wait::default() {
        let _ = writeln!(out, "  wait = {}", wait_text(&node.wait));
    }
    if let Some(t) = node.timeout {
        let _ = writeln!(out, "  timeout = {}", format_duration(t));
    }
    if node.prevent_destroy {
        out.push_str("  prevent_destroy = true\n");
    }
    for rule in &node.ignore {
        let _ = writeln!(out, "  ignore {}", rule_text(rule));
    }
    for s in &node.suppress {
        let _ = writeln!(out, "  suppress = {} ({})", s.check, s.reason);
    }
    match &node.spec {
        NodeSpec::Manifest(m) => {
            let source = match &m.source {
                ManifestSource::File { written, .. } => format!("file {written}"),
                ManifestSource::Yaml { .. } => "inline yaml".to_string(),
                ManifestSource::Objects { .. } => "toml objects".to_string(),
            };
            let _ = writeln!(out, "  source = {source}");
            for o in &m.objects {
                let ns = o
                    .namespace
                    .as_ref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  object {} {} {ns}{}", o.api_version, o.kind, o.name);
                let _ = writeln!(out, "    {}", value_json(&o.value));
            }
        }
        NodeSpec::Helm(h) => {
            let chart = match &h.chart {
                Chart::Repo { repo, url, name } => format!("{repo}/{name} ({url})"),
                Chart::Oci(url) => url.clone(),
                Chart::Local(path) => format!("local {}", path.display()),
            };
            let _ = writeln!(out, "  chart = {chart}");
            if let Some(v) = &h.version {
                let _ = writeln!(out, "  version = {v}");
            }
            let _ = writeln!(out, "  release = {}", h.release);
            let _ = writeln!(
                out,
                "  include_crds = {}, create_namespace = {}",
                h.include_crds, h.create_namespace
            );
            for f in &h.values_files {
                let _ = writeln!(
                    out,
                    "  values_file {} = {}",
                    f.written,
                    value_json(&f.values)
                );
            }
            let _ = writeln!(out, "  values = {}", value_json(&h.values));
        }
        NodeSpec::Read(r) => {
            let _ = writeln!(out, "  object = {} {} {}", r.api_version, r.kind, r.name);
            match &r.select {
                ReadSelect::Key(k) => {
                    let _ = writeln!(out, "  key = {k}");
                }
                ReadSelect::Field(path) => {
                    let _ = writeln!(out, "  field = {}", path.join("."));
                }
            }
            let _ = writeln!(out, "  sensitive = {}", r.sensitive);
        }
        NodeSpec::Check(c) => {
            let _ = writeln!(out, "  object = {} {} {}", c.api_version, c.kind, c.name);
            let _ = writeln!(out, "  condition {} = {}", c.condition, c.status);
        }
    }
}

fn wait_text(wait: &Wait) -> String {
    if !wait.enabled {
        return "false".to_string();
    }
    let mut parts = Vec::new();
    if let Some(c) = &wait.condition {
        parts.push(format!("condition {c}"));
    }
    if let Some(t) = wait.timeout {
        parts.push(format!("timeout {}", format_duration(t)));
    }
    parts.join(", ")
}

/// A value as compact JSON with strings shown as templates.
pub fn value_json(value: &Value) -> String {
    fn to_json(value: &Value) -> serde_json::Value {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Integer(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(t) => t.to_string().into(),
            Value::Array(items) => items.iter().map(to_json).collect(),
            Value::Table(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            ),
        }
    }
    to_json(value).to_string()
}

/// `Deployment linkerd-viz/web: /spec/replicas (scaled by an HPA)`.
fn rule_text(rule: &super::ignore::IgnoreRule) -> String {
    let kind = rule.kind.as_deref().unwrap_or("*");
    let place = match (&rule.namespace, &rule.name) {
        (Some(ns), Some(name)) => format!(" {ns}/{name}"),
        (Some(ns), None) => format!(" {ns}/*"),
        (None, Some(name)) => format!(" {name}"),
        (None, None) => String::new(),
    };
    let fields: Vec<String> = rule.fields.iter().map(ToString::to_string).collect();
    let reason = rule
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("{kind}{place}: {}{reason}", fields.join(", "))
}
