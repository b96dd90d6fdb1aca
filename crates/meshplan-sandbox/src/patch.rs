//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the map-merge approximation of
//! strategic merge patch.

use serde_json::{Map, Value};

use meshplan_k8s::lists::{ListType, ListTypes};

/// RFC 7386: objects merge recursively, `null` removes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Some(target_map) = target.as_object_mut() {
                for (key, value) in patch_map {
                    if value.is_null() {
                        target_map.remove(key);
                    } else {
                        let entry = target_map.entry(key.clone()).or_insert(Value::Null);
                        merge_patch(entry, value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Strategic merge patch: maps merge as in a merge patch; lists whose type is `Map` (the
/// built-in merge keys: containers by name, ports by port, ...) merge item by item on their
/// first key, honouring `$patch: delete` items and `$setElementOrder/<field>`; `Set` lists
/// take the union (minus `$deleteFromPrimitiveList/<field>`); other lists are replaced.
/// `$retainKeys` is not emulated.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value, list_types: &dyn ListTypes) {
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
pub enum JsonPatchError {
    /// The patch document itself is malformed (400).
    Malformed(String),
    /// An operation failed against the object (422).
    Failed(String),
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| JsonPatchError::Malformed(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn pointer_get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, JsonPatchError> {
    let mut cur = doc;
    for t in &tokens[..tokens.len().saturating_sub(1)] {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| JsonPatchError::Failed(format!("doc is missing path: {path:?}")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), JsonPatchError> {
    let tokens = split_pointer(path)?;
    let Some(last) = tokens.last().cloned() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, &tokens, path)? {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let index = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| {
                    JsonPatchError::Failed(format!("invalid array index {last:?} in {path:?}"))
                })?
            };
            if index > a.len() {
                return Err(JsonPatchError::Failed(format!(
                    "add operation does not apply: index {index} out of bounds in {path:?}"
                )));
            }
            a.insert(index, value);
            Ok(())
        }
        _ => Err(JsonPatchError::Failed(format!(
            "doc is missing path: {path:?}"
        ))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, JsonPatchError> {
    let tokens = split_pointer(path)?;
    let Some(last) = tokens.last().cloned() else {
        return Err(JsonPatchError::Failed(
            "cannot remove the whole document".into(),
        ));
    };
    let missing = || {
        JsonPatchError::Failed(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match parent_mut(doc, &tokens, path)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let index = last.parse::<usize>().map_err(|_| missing())?;
            if index < a.len() {
                Ok(a.remove(index))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
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

/// Applies an RFC 6902 patch (`add`, `remove`, `replace`, `move`, `copy`, `test`).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Malformed("a JSON patch must be a list of operations".into())
    })?;
    for op in ops {
        let name = field_str(op, "op")?;
        let path = field_str(op, "path")?;
        match name {
            "add" => add(doc, path, field(op, "value")?.clone())?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let tokens = split_pointer(path)?;
                if pointer_get(doc, &tokens).is_none() {
                    return Err(JsonPatchError::Failed(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    )));
                }
                if tokens.is_empty() {
                    *doc = field(op, "value")?.clone();
                } else {
                    remove(doc, path)?;
                    add(doc, path, field(op, "value")?.clone())?;
                }
            }
            "move" => {
                let from = field_str(op, "from")?;
                let value = remove(doc, from)?;
                add(doc, path, value)?;
            }
            "copy" => {
                let from = field_str(op, "from")?;
                let value = pointer_get(doc, &split_pointer(from)?)
                    .cloned()
                    .ok_or_else(|| {
                        JsonPatchError::Failed(format!("copy from {from:?}: doc is missing path"))
                    })?;
                add(doc, path, value)?;
            }
            "test" => {
                let expected = field(op, "value")?;
                let actual = pointer_get(doc, &split_pointer(path)?);
                if actual != Some(expected) {
                    return Err(JsonPatchError::Failed(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(JsonPatchError::Malformed(format!(
                    "Unexpected kind: {other}"
                )));
            }
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
}
