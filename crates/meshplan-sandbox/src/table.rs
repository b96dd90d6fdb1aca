//! `meta.k8s.io/v1` Tables: what `kubectl get` prints, built from a type's printer columns.

use serde_json::{Value, json};

use super::registry::{CellSource, Column, ResourceType};

/// Whether the Accept header asks for a Table.
pub(crate) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// kubectl's human duration (`5s`, `3m2s`, `4h`, `2d3h`, ...).
pub(crate) fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y{}d", d / 365, d % 365)
}

fn age(object: &Value, now: jiff::Timestamp) -> Value {
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match created {
        Some(t) => json!(human_duration(now.as_second() - t.as_second())),
        None => json!("<unknown>"),
    }
}

/// Reads a simple JSONPath (`.a.b`, `.a[0].b`, `{.a.b}`, and filters on list items
/// `.conditions[?(@.type=="Ready")].status`, which take the first matching item).
pub(crate) fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = object;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inside = &after[..end];
            rest = &after[end + 1..];
            match inside
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                Some(filter) => {
                    let (field, wanted) = filter.split_once("==")?;
                    let wanted = wanted.trim().trim_matches(|c| c == '"' || c == '\'');
                    cur = cur.as_array()?.iter().find(|item| {
                        json_path(item, field.trim()).and_then(Value::as_str) == Some(wanted)
                    })?;
                }
                None => cur = cur.get(inside.parse::<usize>().ok()?)?,
            }
        } else {
            let body = rest.strip_prefix('.').unwrap_or(rest);
            let end = body.find(['.', '[']).unwrap_or(body.len());
            let name = &body[..end];
            if !name.is_empty() {
                cur = cur.get(name)?;
            }
            rest = &body[end..];
        }
    }
    Some(cur)
}

fn cell(column: &Column, object: &Value, now: jiff::Timestamp) -> Value {
    match &column.source {
        CellSource::Name => object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        CellSource::Age => age(object, now),
        CellSource::DataCount => {
            let count = |k: &str| {
                object
                    .get(k)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            json!(count("data") + count("binaryData"))
        }
        CellSource::Ratio(a, b) => {
            let num = |p: &str| json_path(object, p).and_then(Value::as_i64).unwrap_or(0);
            json!(format!("{}/{}", num(a), num(b)))
        }
        CellSource::Path(p) => match json_path(object, p) {
            Some(v) if column.kind == "date" => {
                match v.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
                    Some(t) => json!(human_duration(now.as_second() - t.as_second())),
                    None => v.clone(),
                }
            }
            Some(Value::Array(items)) => json!(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Some(Value::Object(_)) => json!(json_path(object, p).map(Value::to_string)),
            Some(v) => v.clone(),
            None => Value::Null,
        },
    }
}

fn column_definitions(t: &ResourceType) -> Vec<Value> {
    t.columns
        .iter()
        .map(|c| {
            let description = if c.description.is_empty() {
                match c.source {
                    CellSource::Name => "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names".to_string(),
                    CellSource::Age => "CreationTimestamp is a timestamp representing the server time when this object was created.".to_string(),
                    _ => String::new(),
                }
            } else {
                c.description.clone()
            };
            json!({
                "name": c.name,
                "type": if c.kind == "date" { "string" } else { c.kind.as_str() },
                "format": c.format,
                "description": description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn row(t: &ResourceType, object: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let cells: Vec<Value> = t.columns.iter().map(|c| cell(c, object, now)).collect();
    let mut row = json!({"cells": cells});
    let embedded = match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    };
    if let (Some(obj), Some(map)) = (embedded, row.as_object_mut()) {
        map.insert("object".into(), obj);
    }
    row
}

/// A Table of `objects` (a list, or one object for a get or a watch event).
pub(crate) fn table(
    t: &ResourceType,
    objects: &[&Value],
    resource_version: &str,
    include: IncludeObject,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects.iter().map(|o| row(t, o, include, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(t),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn json_path_reads_nested_and_indexed() {
        let obj = json!({"spec": {"items": [{"x": 1}]}});
        assert_eq!(json_path(&obj, ".spec.items[0].x"), Some(&json!(1)));
        assert_eq!(json_path(&obj, ".spec.missing"), None);
        let cert = json!({"status": {"conditions": [
            {"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            json_path(&cert, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(
            json_path(&cert, ".status.conditions[?(@.type=='Gone')].status"),
            None
        );
    }

    #[test]
    fn wants_table_reads_the_first_media_type() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
