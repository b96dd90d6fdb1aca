//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) through the `json-patch` crate, with
//! the API server's messages for a malformed or failing JSON patch; and the map-merge
//! approximation of strategic merge patch, which no crate implements.

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchErrorKind, PatchOperation, RemoveOperation,
    ReplaceOperation, TestOperation,
};
use serde_json::{Map, Value};

use meshplan_k8s::lists::{ListType, ListTypes};

/// RFC 7386: objects merge recursively, `null` removes, everything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Strategic merge patch: maps merge as in a merge patch; lists whose type is `Map` (the
/// built-in merge keys: containers by name, ports by port, ...) merge item by item on their
/// first key, honouring `$patch: delete` items and `$setElementOrder/<field>`; `Set` lists
/// take the union (minus `$deleteFromPrimitiveList/<field>`); other lists are replaced.
/// `$retainKeys` is not emulated.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value, list_types: &dyn ListTypes) {
    let mut path = Vec::new();
    smp(target, patch, &mut path, list_types);
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            for v in map.values_mut() {
                strip_directives(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn stripped(value: &Value) -> Value {
    let mut copy = value.clone();
    strip_directives(&mut copy);
    copy
}

fn smp(target: &mut Value, patch: &Value, path: &mut Vec<String>, lt: &dyn ListTypes) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = stripped(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(target_map) = target.as_object_mut() else {
        return;
    };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            if let Some(order) = value.as_array() {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(live)), Some(remove)) =
                (target_map.get_mut(field), value.as_array())
            {
                live.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        path.push(key.clone());
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        match value {
            Value::Object(_) => {
                let entry = target_map.entry(key.clone()).or_insert(Value::Null);
                smp(entry, value, path, lt);
            }
            Value::Array(items) => match lt.list_type(&path_refs) {
                ListType::Map(keys) if !keys.is_empty() => {
                    let entry = target_map
                        .entry(key.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if !entry.is_array() {
                        *entry = Value::Array(Vec::new());
                    }
                    merge_keyed(entry, items, &keys[0], path, lt);
                }
                ListType::Set => {
                    let entry = target_map
                        .entry(key.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(live) = entry {
                        for item in items {
                            if !live.contains(item) {
                                live.push(item.clone());
                            }
                        }
                    } else {
                        *entry = Value::Array(items.clone());
                    }
                }
                _ => {
                    target_map.insert(key.clone(), stripped(value));
                }
            },
            other => {
                target_map.insert(key.clone(), other.clone());
            }
        }
        path.pop();
    }
    for (field, order) in orders {
        path.push(field.clone());
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let list_type = lt.list_type(&path_refs);
        path.pop();
        if let Some(Value::Array(live)) = target_map.get_mut(&field) {
            reorder(live, &order, &list_type);
        }
    }
}

fn merge_keyed(
    live: &mut Value,
    items: &[Value],
    key: &str,
    path: &mut Vec<String>,
    lt: &dyn ListTypes,
) {
    let Value::Array(list) = live else {
        return;
    };
    for item in items {
        let Some(id) = item.get(key) else {
            list.push(stripped(item));
            continue;
        };
        let position = list.iter().position(|l| l.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            list.retain(|l| l.get(key) != Some(id));
            continue;
        }
        match position {
            Some(i) => smp(&mut list[i], item, path, lt),
            None => list.push(stripped(item)),
        }
    }
}

/// Orders `live` as `order` says (items named there first, in that order; the rest after).
fn reorder(live: &mut Vec<Value>, order: &[Value], list_type: &ListType) {
    let key = match list_type {
        ListType::Map(keys) => keys.first().cloned(),
        _ => None,
    };
    let ident = |v: &Value| -> Value {
        match &key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut rest = std::mem::take(live);
    for wanted in order {
        let wanted_id = ident(wanted);
        if let Some(i) = rest.iter().position(|v| ident(v) == wanted_id) {
            live.push(rest.remove(i));
        }
    }
    live.extend(rest);
}

/// Why a JSON patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonPatchError {
    /// The patch document itself is malformed (400).
    Malformed(String),
    /// An operation failed against the object (422).
    Failed(String),
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a Value, JsonPatchError> {
    op.get(name)
        .ok_or_else(|| JsonPatchError::Malformed(format!("operation missing {name:?} field")))
}

fn field_str<'a>(op: &'a Value, name: &str) -> Result<&'a str, JsonPatchError> {
    field(op, name)?.as_str().ok_or_else(|| {
        JsonPatchError::Malformed(format!("operation field {name:?} is not a string"))
    })
}

fn pointer(path: &str) -> Result<PointerBuf, JsonPatchError> {
    PointerBuf::parse(path)
        .map_err(|_| JsonPatchError::Malformed(format!("invalid JSON pointer {path:?}")))
}

/// Reads one operation, refusing a malformed one with the message the server gives.
fn operation(op: &Value) -> Result<PatchOperation, JsonPatchError> {
    let name = field_str(op, "op")?;
    let path = pointer(field_str(op, "path")?)?;
    let value = || field(op, "value").cloned();
    let from = || pointer(field_str(op, "from")?);
    Ok(match name {
        "add" => PatchOperation::Add(AddOperation {
            path,
            value: value()?,
        }),
        "remove" => PatchOperation::Remove(RemoveOperation { path }),
        "replace" => PatchOperation::Replace(ReplaceOperation {
            path,
            value: value()?,
        }),
        "move" => PatchOperation::Move(MoveOperation {
            from: from()?,
            path,
        }),
        "copy" => PatchOperation::Copy(CopyOperation {
            from: from()?,
            path,
        }),
        "test" => PatchOperation::Test(TestOperation {
            path,
            value: value()?,
        }),
        other => {
            return Err(JsonPatchError::Malformed(format!(
                "Unexpected kind: {other}"
            )));
        }
    })
}

/// Why an `add` at `path` fails on `doc`.
fn add_failure(doc: &Value, path: &str) -> String {
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    match doc.pointer(parent) {
        Some(Value::Array(_)) => match last.parse::<usize>() {
            Ok(index) => {
                format!("add operation does not apply: index {index} out of bounds in {path:?}")
            }
            Err(_) => format!("invalid array index {last:?} in {path:?}"),
        },
        _ => format!("doc is missing path: {path:?}"),
    }
}

/// Why a `remove` of `path` fails on `doc`.
fn remove_failure(doc: &Value, path: &str) -> String {
    if path.is_empty() {
        return "cannot remove the whole document".to_string();
    }
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    match doc.pointer(parent) {
        Some(Value::Object(_) | Value::Array(_)) => {
            format!("remove operation does not apply: doc is missing path: {path:?}")
        }
        _ => format!("doc is missing path: {path:?}"),
    }
}

/// The message for a failed operation, from the document as it was before the operation.
fn failure(doc: &Value, op: &PatchOperation, kind: &PatchErrorKind) -> String {
    match op {
        PatchOperation::Add(op) => add_failure(doc, op.path.as_str()),
        PatchOperation::Remove(op) => remove_failure(doc, op.path.as_str()),
        PatchOperation::Replace(op) => format!(
            "replace operation does not apply: doc is missing key: {}",
            op.path
        ),
        PatchOperation::Move(op) => match kind {
            _ if matches!(kind, PatchErrorKind::InvalidFromPointer)
                || op.from.is_root()
                || doc.pointer(op.from.as_str()).is_none() =>
            {
                remove_failure(doc, op.from.as_str())
            }
            _ => {
                // The value left `from` first: the target is looked up without it.
                let mut moved = doc.clone();
                let from = PatchOperation::Remove(RemoveOperation {
                    path: op.from.clone(),
                });
                let _ = json_patch::patch(&mut moved, &[from]);
                add_failure(&moved, op.path.as_str())
            }
        },
        PatchOperation::Copy(op) => match kind {
            PatchErrorKind::InvalidFromPointer => {
                format!("copy from {:?}: doc is missing path", op.from.as_str())
            }
            _ => add_failure(doc, op.path.as_str()),
        },
        PatchOperation::Test(op) => format!("testing value {} failed: test failed", op.path),
    }
}

/// Applies an RFC 6902 patch (`add`, `remove`, `replace`, `move`, `copy`, `test`) in order;
/// an operation is checked when it is reached, as the API server does.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Malformed("a JSON patch must be a list of operations".into())
    })?;
    for op in ops {
        let op = operation(op)?;
        // One operation at a time: on failure `doc` is as it was before this operation.
        if let Err(e) = json_patch::patch(doc, std::slice::from_ref(&op)) {
            return Err(JsonPatchError::Failed(failure(doc, &op, &e.kind)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_with_null_and_recurses() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        use meshplan_k8s::lists::BuiltinListTypes;
        let mut live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "2"}, {"name": "c", "$patch": "delete"}]
        }}}});
        strategic_merge_patch(&mut live, &patch, &BuiltinListTypes);
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "b", "image": "1"},
                {"name": "a", "image": "2", "env": [{"name": "X", "value": "1"}]}
            ])
        );
        let delete = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}});
        strategic_merge_patch(&mut live, &delete, &BuiltinListTypes);
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn json_patch_supports_all_operations() {
        let mut doc = json!({"a": 1, "list": [1, 2], "o": {"x": "y"}});
        let patch = json!([
            {"op": "test", "path": "/a", "value": 1},
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "remove", "path": "/list/1"},
            {"op": "copy", "from": "/o", "path": "/p"},
            {"op": "move", "from": "/o/x", "path": "/moved"},
        ]);
        json_patch(&mut doc, &patch).expect("patch applies");
        assert_eq!(
            doc,
            json!({"a": 2, "list": [0, 2, 3], "o": {}, "p": {"x": "y"}, "moved": "y"})
        );
    }

    #[test]
    fn json_patch_test_failure_is_reported() {
        let mut doc = json!({"a": 1});
        let err = json_patch(&mut doc, &json!([{"op": "test", "path": "/a", "value": 2}]));
        assert!(matches!(err, Err(JsonPatchError::Failed(_))));
        let err = json_patch(&mut doc, &json!({"op": "add"}));
        assert!(matches!(err, Err(JsonPatchError::Malformed(_))));
    }

    #[test]
    fn json_patch_messages_name_the_operation_and_path() {
        let doc = json!({"a": {"b": 1}, "list": [1, 2], "s": "x"});
        let failed = |ops: Value| {
            let mut d = doc.clone();
            match json_patch(&mut d, &ops) {
                Err(JsonPatchError::Failed(m)) => m,
                other => panic!("{ops}: {other:?}"),
            }
        };
        let one = |op: Value| failed(json!([op]));
        assert_eq!(
            one(json!({"op": "add", "path": "/x/y", "value": 1})),
            r#"doc is missing path: "/x/y""#
        );
        assert_eq!(
            one(json!({"op": "add", "path": "/s/y", "value": 1})),
            r#"doc is missing path: "/s/y""#
        );
        assert_eq!(
            one(json!({"op": "add", "path": "/list/5", "value": 1})),
            r#"add operation does not apply: index 5 out of bounds in "/list/5""#
        );
        assert_eq!(
            one(json!({"op": "add", "path": "/list/x", "value": 1})),
            r#"invalid array index "x" in "/list/x""#
        );
        assert_eq!(
            one(json!({"op": "remove", "path": "/a/c"})),
            r#"remove operation does not apply: doc is missing path: "/a/c""#
        );
        assert_eq!(
            one(json!({"op": "remove", "path": "/x/c"})),
            r#"doc is missing path: "/x/c""#
        );
        assert_eq!(
            one(json!({"op": "remove", "path": ""})),
            "cannot remove the whole document"
        );
        assert_eq!(
            one(json!({"op": "replace", "path": "/a/c", "value": 1})),
            "replace operation does not apply: doc is missing key: /a/c"
        );
        assert_eq!(
            one(json!({"op": "move", "from": "/a/c", "path": "/d"})),
            r#"remove operation does not apply: doc is missing path: "/a/c""#
        );
        assert_eq!(
            one(json!({"op": "move", "from": "/a", "path": "/a/b/c"})),
            r#"doc is missing path: "/a/b/c""#
        );
        assert_eq!(
            one(json!({"op": "copy", "from": "/x", "path": "/d"})),
            r#"copy from "/x": doc is missing path"#
        );
        assert_eq!(
            one(json!({"op": "copy", "from": "/a", "path": "/list/9"})),
            r#"add operation does not apply: index 9 out of bounds in "/list/9""#
        );
        assert_eq!(
            one(json!({"op": "test", "path": "/a/b", "value": 2})),
            "testing value /a/b failed: test failed"
        );
        // Operations run in order: a failure comes before a later malformed operation.
        assert_eq!(
            failed(json!([{"op": "test", "path": "/s", "value": "y"}, {"op": "bogus"}])),
            "testing value /s failed: test failed"
        );
    }

    #[test]
    fn malformed_json_patches_are_told_apart() {
        let malformed = |ops: Value| {
            let mut d = json!({"a": 1});
            match json_patch(&mut d, &ops) {
                Err(JsonPatchError::Malformed(m)) => m,
                other => panic!("{ops}: {other:?}"),
            }
        };
        assert_eq!(
            malformed(json!({"op": "add"})),
            "a JSON patch must be a list of operations"
        );
        assert_eq!(
            malformed(json!([{"path": "/a"}])),
            r#"operation missing "op" field"#
        );
        assert_eq!(
            malformed(json!([{"op": 1, "path": "/a"}])),
            r#"operation field "op" is not a string"#
        );
        assert_eq!(
            malformed(json!([{"op": "add", "path": "/a"}])),
            r#"operation missing "value" field"#
        );
        assert_eq!(
            malformed(json!([{"op": "move", "path": "/a"}])),
            r#"operation missing "from" field"#
        );
        assert_eq!(
            malformed(json!([{"op": "add", "path": "a", "value": 1}])),
            r#"invalid JSON pointer "a""#
        );
        assert_eq!(
            malformed(json!([{"op": "bogus", "path": "/a"}])),
            "Unexpected kind: bogus"
        );
    }

    #[test]
    fn json_patch_replace_and_escaped_pointers() {
        let mut doc = json!({"a/b": {"~c": 1}, "z": 0});
        let patch = json!([
            {"op": "replace", "path": "/a~1b/~0c", "value": 2},
            {"op": "replace", "path": "", "value": {"whole": [doc.clone()]}},
            {"op": "add", "path": "/whole/0/z", "value": null},
        ]);
        json_patch(&mut doc, &patch).expect("patch applies");
        assert_eq!(doc, json!({"whole": [{"a/b": {"~c": 1}, "z": null}]}));
    }
}
