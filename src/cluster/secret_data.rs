//! Secrets sent as server-side apply bodies: `stringData` folded into `data` before the write.

/// A v1 Secret with `stringData`, rewritten for server-side apply: each `stringData` value
/// base64-encoded into `data` (over a `data` key of the same name), `stringData` removed.
/// None for any other object, or when nothing needs rewriting.
///
/// The API server folds `stringData` into `data` only after its field manager has merged an
/// apply, so an applier of `stringData` owns `stringData` keys that never exist and no `data`
/// key: a key dropped from the manifest then stays in the Secret forever, and an unchanged
/// re-apply still rewrites the object. Applying the same bytes as `data` makes the applier own
/// the keys it sends. `stringData` values that are not strings are left for the server to
/// refuse.
pub(super) fn secret_as_data(body: &serde_json::Value) -> Option<serde_json::Value> {
    use base64::Engine as _;
    use serde_json::Value;

    let is_secret = body.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && body.get("kind").and_then(Value::as_str) == Some("Secret");
    if !is_secret {
        return None;
    }
    let strings = body.get("stringData")?.as_object()?;
    if !strings.values().all(Value::is_string) {
        return None;
    }
    let mut out = body.clone();
    let map = out.as_object_mut()?;
    map.shift_remove("stringData");
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !data.is_object() {
        *data = Value::Object(serde_json::Map::new());
    }
    let data = data.as_object_mut()?;
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        data.insert(
            key.clone(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_data_becomes_data_for_apply() {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "a"},
            "data": {"keep": "eA==", "both": "b2xk"},
            "stringData": {"both": "new", "user": "admin"}
        });
        let out = secret_as_data(&body).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "a"},
                "data": {"keep": "eA==", "both": "bmV3", "user": "YWRtaW4="}
            })
        );
        assert!(out.get("stringData").is_none());
    }

    #[test]
    fn other_objects_and_plain_secrets_are_left_alone() {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "stringData": {"a": "b"}});
        assert_eq!(secret_as_data(&cm), None);
        let plain =
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "Yg=="}});
        assert_eq!(secret_as_data(&plain), None);
        let odd = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"n": 1}});
        assert_eq!(secret_as_data(&odd), None);
    }
}
