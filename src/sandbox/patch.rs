//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the map-merge approximation of
//! strategic merge patch.

use serde_json::Value;

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

/// Strategic merge patch approximated by a map merge: lists are replaced as a whole and the
/// `$patch`/`$retainKeys`/`$setElementOrder` directives are dropped.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let mut cleaned = patch.clone();
    strip_directives(&mut cleaned);
    merge_patch(target, &cleaned);
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$') && !k.starts_with("$setElementOrder/"));
            for v in map.values_mut() {
                strip_directives(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
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
