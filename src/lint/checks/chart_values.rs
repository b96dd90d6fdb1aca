//! `unknown-chart-value`: keys a helm node sets (in `values` or a values file) that its chart
//! does not declare — not in its `values.yaml`, its subcharts' (under their key), nor its
//! `values.schema.json` — with "did you mean" among the keys declared there.
//!
//! Free-form maps are never looked into: a map whose default is empty (`annotations: {}`,
//! `nodeSelector: {}`), whose name says it holds labels, annotations, selectors or
//! environment variables, whose keys look like label keys (`kubernetes.io/os`), a `null`
//! default, a schema map with `additionalProperties`, and `global`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::lint::context::Context;
use crate::lint::{ChartInfo, Finding};
use crate::model::NodeSpec;
use crate::model::lint_checks::CheckId;
use crate::planfile::{RawKind, RawValue, did_you_mean};

const ID: CheckId = CheckId::UnknownChartValue;

/// What a chart declares at one place of its values.
#[derive(Debug, Clone, PartialEq)]
enum Decl {
    /// Anything goes below.
    Free,
    /// Declared, without saying what is below (a schema's `type: object` without
    /// `properties`): another source may say more; alone it is not looked into.
    Unspecified,
    /// A scalar or a list.
    Leaf,
    /// A map with these keys.
    Map(BTreeMap<String, Decl>),
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    for node in ctx.input.plan.nodes.values() {
        let NodeSpec::Helm(helm) = &node.spec else {
            continue;
        };
        let layers: Vec<&RawValue> = helm
            .values_files
            .iter()
            .map(|f| &f.raw)
            .chain(helm.values_raw.as_ref())
            .collect();
        if layers.iter().all(|l| is_empty_table(l)) {
            continue;
        }
        let Some(chart) = ctx.chart(node, ID) else {
            continue;
        };
        let decl = of_chart(chart);
        let chart_text = format!("{} {}", chart.name, chart.version);
        for layer in layers {
            walk(
                layer,
                &decl,
                &mut Vec::new(),
                &mut |path, key_span, siblings| {
                    let dotted = path.join(".");
                    let key = path.last().map(String::as_str).unwrap_or_default();
                    let parent = &path[..path.len() - 1];
                    let fix = match did_you_mean(key, siblings.iter().map(String::as_str)) {
                        Some(s) => {
                            let mut p = parent.to_vec();
                            p.push(s);
                            format!("did you mean `{}`? Rename the key", p.join("."))
                        }
                        None if parent.is_empty() => format!(
                            "remove it, or check it against the values.yaml of {chart_text} (another \
                         chart version may have it)"
                        ),
                        None => format!(
                            "remove it, or check it against the values.yaml of {chart_text}: \
                         `{}` declares {}",
                            parent.join("."),
                            list(siblings)
                        ),
                    };
                    out.push(ctx.at_span(
                        ID,
                        node,
                        key_span,
                        Some(dotted.clone()),
                        format!("`{dotted}` is not a value of chart {chart_text}: helm ignores it"),
                        fix,
                    ));
                },
            );
        }
    }
}

fn list(keys: &[String]) -> String {
    const MAX: usize = 8;
    let shown: Vec<String> = keys.iter().take(MAX).map(|k| format!("`{k}`")).collect();
    if keys.len() > MAX {
        format!("{} and {} more", shown.join(", "), keys.len() - MAX)
    } else {
        shown.join(", ")
    }
}

fn is_empty_table(raw: &RawValue) -> bool {
    matches!(&raw.kind, RawKind::Table(t) if t.entries.is_empty())
}

/// Called with the path of an undeclared key, the key's span and the keys declared beside it.
type Report<'a> = dyn FnMut(&[String], &crate::planfile::Span, &[String]) + 'a;

/// Reports every key of `raw` below a declared map that the map does not declare.
fn walk(raw: &RawValue, decl: &Decl, path: &mut Vec<String>, report: &mut Report<'_>) {
    let (Decl::Map(children), RawKind::Table(table)) = (decl, &raw.kind) else {
        return;
    };
    for entry in &table.entries {
        path.push(entry.key.clone());
        match children.get(&entry.key) {
            Some(child) => walk(&entry.value, child, path, report),
            None => {
                let siblings: Vec<String> = children.keys().cloned().collect();
                report(path, &entry.key_span, &siblings);
            }
        }
        path.pop();
    }
}

/// What a chart declares: its values, its schema, its subcharts under their keys.
fn of_chart(chart: &ChartInfo) -> Decl {
    let mut decl = of_values(&chart.values, "");
    if let Some(schema) = &chart.schema {
        decl = merge(decl, of_schema(schema));
    }
    if let Decl::Map(children) = &mut decl {
        for (key, sub) in &chart.subcharts {
            let parent = children.remove(key).unwrap_or(Decl::Map(BTreeMap::new()));
            children.insert(key.clone(), merge(parent, of_chart(sub)));
        }
        children.insert("global".to_string(), Decl::Free);
    }
    decl
}

/// Whether a map of this name holds keys of the user's choosing.
fn is_free_form_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "annotations",
        "labels",
        "selector",
        "env",
        "envvars",
        "extraenv",
    ]
    .iter()
    .any(|s| n.ends_with(s))
}

fn of_values(value: &Json, name: &str) -> Decl {
    match value {
        Json::Null => Decl::Free,
        Json::Object(map) if map.is_empty() || is_free_form_name(name) => Decl::Free,
        Json::Object(map) if map.keys().any(|k| k.contains('/')) => Decl::Free,
        Json::Object(map) => Decl::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), of_values(v, k)))
                .collect(),
        ),
        _ => Decl::Leaf,
    }
}

fn of_schema(schema: &Json) -> Decl {
    let Some(obj) = schema.as_object() else {
        return Decl::Free;
    };
    if ["$ref", "allOf", "anyOf", "oneOf"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        return Decl::Free;
    }
    let additional = obj.get("additionalProperties");
    let open = matches!(additional, Some(Json::Bool(true)) | Some(Json::Object(_)))
        || obj.contains_key("patternProperties");
    if open {
        return Decl::Free;
    }
    match obj.get("properties").and_then(Json::as_object) {
        Some(props) => Decl::Map(
            props
                .iter()
                .map(|(k, v)| (k.clone(), of_schema(v)))
                .collect(),
        ),
        None => match obj.get("type") {
            Some(Json::String(t)) if t == "object" => Decl::Unspecified,
            Some(Json::Array(ts)) if ts.iter().any(|t| t == "object") => Decl::Unspecified,
            Some(_) => Decl::Leaf,
            None => Decl::Unspecified,
        },
    }
}

fn merge(a: Decl, b: Decl) -> Decl {
    match (a, b) {
        (Decl::Unspecified, other) | (other, Decl::Unspecified) => other,
        (Decl::Free, _) | (_, Decl::Free) => Decl::Free,
        (Decl::Map(mut x), Decl::Map(y)) => {
            for (k, v) in y {
                let merged = match x.remove(&k) {
                    Some(existing) => merge(existing, v),
                    None => v,
                };
                x.insert(k, merged);
            }
            Decl::Map(x)
        }
        (Decl::Map(x), Decl::Leaf) | (Decl::Leaf, Decl::Map(x)) => Decl::Map(x),
        (Decl::Leaf, Decl::Leaf) => Decl::Leaf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn free_form_maps_and_schemas() {
        let values = json!({
            "podAnnotations": {},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "commonLabels": {"team": "mesh"},
            "proxy": {"image": {"name": "p"}, "ports": {"admin": 4191}},
            "extra": null,
            "list": [1]
        });
        let Decl::Map(top) = of_values(&values, "") else {
            panic!()
        };
        assert_eq!(top["podAnnotations"], Decl::Free);
        assert_eq!(top["nodeSelector"], Decl::Free);
        assert_eq!(top["commonLabels"], Decl::Free);
        assert_eq!(top["extra"], Decl::Free);
        assert_eq!(top["list"], Decl::Leaf);
        assert!(matches!(&top["proxy"], Decl::Map(m) if m.contains_key("ports")));
        let schema = json!({"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "config": {"type": "object", "additionalProperties": {"type": "string"}},
            "tls": {"type": "object", "properties": {"enabled": {"type": "boolean"}}}
        }});
        let Decl::Map(s) = of_schema(&schema) else {
            panic!()
        };
        assert_eq!(s["config"], Decl::Free);
        // A schema's bare object says nothing against what values.yaml declares.
        let bare = json!({"type": "object", "properties": {"cache": {"type": "object"}}});
        let Decl::Map(m) = merge(
            of_values(&json!({"cache": {"port": 1}}), ""),
            of_schema(&bare),
        ) else {
            panic!()
        };
        assert!(matches!(&m["cache"], Decl::Map(c) if c.contains_key("port")));
        assert_eq!(s["replicas"], Decl::Leaf);
        let merged = merge(
            of_values(&json!({"tls": {"cert": ""}}), ""),
            of_schema(&schema),
        );
        let Decl::Map(m) = merged else { panic!() };
        let Decl::Map(tls) = &m["tls"] else { panic!() };
        assert!(tls.contains_key("cert") && tls.contains_key("enabled"));
    }
}
