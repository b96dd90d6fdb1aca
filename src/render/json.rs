//! JSON helpers shared by the render stage: JSON-pointer paths (RFC 6901), canonical JSON
//! (sorted keys) and its blake3 digest, and the structural difference of two values.

use std::collections::BTreeSet;

use serde_json::Value;

/// Appends one segment to a JSON pointer, escaping `~` and `/`.
pub fn push_segment(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

/// The value with every object's keys sorted, recursively.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Canonical JSON text: sorted keys, no whitespace.
pub fn canonical_text(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the canonical JSON text of `value` (the text of [`canonical`]) without building
/// the sorted copy: keys and leaves are written by serde_json itself, so the text is the
/// same byte for byte.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_leaf(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        leaf => write_leaf(leaf, out),
    }
}

fn write_leaf<T: serde::Serialize + ?Sized>(leaf: &T, out: &mut Vec<u8>) {
    // Writing a string, number, boolean or null to memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, leaf);
}

/// blake3 of the canonical JSON text, as lowercase hex.
pub fn digest(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    blake3::hash(&out).to_hex().to_string()
}

/// Every path where `a` and `b` differ. Objects are compared key by key, arrays of equal
/// length index by index; anything else (including arrays of different lengths) is one path.
pub fn diff_paths(a: &Value, b: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    diff_into(a, b, "", &mut out);
    out
}

fn diff_into(a: &Value, b: &Value, path: &str, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = push_segment(path, k);
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff_into(l, r, &p, out),
                    _ => {
                        out.insert(p);
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff_into(l, r, &format!("{path}/{i}"), out);
            }
        }
        _ => {
            if a != b {
                out.insert(path.to_string());
            }
        }
    }
}

/// True when `a` and `b` are equal everywhere outside `paths` (and below them).
pub fn equal_outside(a: &Value, b: &Value, paths: &BTreeSet<String>) -> bool {
    diff_paths(a, b).iter().all(|d| {
        paths
            .iter()
            .any(|p| d == p || d.starts_with(&format!("{p}/")))
    })
}

/// Sets the value at `pointer`, creating objects on the way; `false` when a segment runs into
/// a non-object (or an array index that does not exist).
pub fn set_pointer(root: &mut Value, pointer: &str, value: Value) -> bool {
    if pointer.is_empty() {
        *root = value;
        return true;
    }
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut current = root;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        current = match current {
            Value::Object(map) => {
                if last {
                    map.insert(seg.clone(), value);
                    return true;
                }
                map.entry(seg.clone())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()))
            }
            Value::Array(items) => {
                let Some(slot) = seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) else {
                    return false;
                };
                if last {
                    *slot = value;
                    return true;
                }
                slot
            }
            _ => return false,
        };
    }
    false
}

/// Removes the value at `pointer` (object keys only); `true` when something was removed.
pub fn remove_pointer(root: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match root.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&last).is_some(),
        _ => false,
    }
}

/// Every leaf path (strings, numbers, booleans, nulls, empty containers) of a value.
pub fn leaves(value: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    leaves_into(value, String::new(), &mut out);
    out
}

fn leaves_into<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves_into(v, push_segment(&path, k), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves_into(v, format!("{path}/{i}"), out);
            }
        }
        _ => out.push((path, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_and_digest_ignores_key_order() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": null}});
        let b = json!({"a": {"c": null, "d": [1, {"y": 1, "z": 0}]}, "b": 1});
        assert_eq!(
            canonical_text(&a),
            r#"{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}"#
        );
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"b": 2})));
    }

    #[test]
    fn canonical_text_is_the_text_of_the_sorted_copy() {
        let v = json!({
            "z": "quote \" slash / back \\ tab \t nl \n ctl \u{1} é ✓",
            "a\"k": [1.5, -2, 1e300, 18446744073709551615u64, true, null, {}, []],
            "m": {"b~/": {"y": [{"d": 1, "c": 2}]}, "a": ""},
        });
        assert_eq!(canonical_text(&v), canonical(&v).to_string());
        assert_eq!(
            digest(&v),
            blake3::hash(canonical(&v).to_string().as_bytes())
                .to_hex()
                .to_string()
        );
    }

    #[test]
    fn diff_paths_escapes_and_descends() {
        let a =
            json!({"metadata": {"annotations": {"checksum/config": "x"}}, "l": [1, 2], "m": [1]});
        let b = json!({"metadata": {"annotations": {"checksum/config": "y"}}, "l": [1, 3], "m": [1, 2], "n": 1});
        let d: Vec<_> = diff_paths(&a, &b).into_iter().collect();
        assert_eq!(
            d,
            ["/l/1", "/m", "/metadata/annotations/checksum~1config", "/n"]
        );
        assert!(diff_paths(&a, &a).is_empty());
    }

    #[test]
    fn set_and_remove_pointer() {
        let mut v = json!({"a": [{"b": 1}]});
        assert!(set_pointer(&mut v, "/a/0/b", json!(2)));
        assert!(set_pointer(&mut v, "/x/y~1z", json!(true)));
        assert!(!set_pointer(&mut v, "/a/5/b", json!(0)));
        assert_eq!(v, json!({"a": [{"b": 2}], "x": {"y/z": true}}));
        assert!(remove_pointer(&mut v, "/x/y~1z"));
        assert!(!remove_pointer(&mut v, "/x/nothing"));
    }

    #[test]
    fn equal_outside_ignores_listed_subtrees() {
        let a = json!({"data": {"tls.crt": "A"}, "k": 1});
        let b = json!({"data": {"tls.crt": "B"}, "k": 1});
        let paths: BTreeSet<String> = ["/data".to_string()].into();
        assert!(equal_outside(&a, &b, &paths));
        assert!(!equal_outside(&a, &json!({"data": {}, "k": 2}), &paths));
    }
}
