//! The API server's size limits, with its messages: a request body over 3 MiB is refused
//! before it is decoded (413 `Request entity too large: limit is 3145728`, the apiserver's
//! default `--max-request-body-bytes`), and a Secret or ConfigMap whose data add up to more
//! than 1 MiB is invalid (422, `MaxSecretSize` of `ValidateSecret` and `ValidateConfigMap`).

use serde_json::Value;

use super::registry::ResourceType;
use super::status::{ApiError, Cause};

/// The largest request body the API server reads (`MaxRequestBodyBytes`, 3 MiB).
pub(crate) const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// The most bytes the values of a Secret's `data` (or a ConfigMap's `data` and `binaryData`
/// together) may hold (`MaxSecretSize`, 1 MiB).
pub(crate) const MAX_DATA_SIZE: usize = 1024 * 1024;

/// 413 for a body over [`MAX_REQUEST_BODY`].
pub(crate) fn body_too_large() -> ApiError {
    ApiError::entity_too_large(format!("limit is {MAX_REQUEST_BODY}"))
}

/// Checks the data size of a Secret (after `stringData` is folded into `data`) or a ConfigMap.
pub(crate) fn check_data_size(ty: &ResourceType, obj: &Value, name: &str) -> Result<(), ApiError> {
    if !ty.group.is_empty() {
        return Ok(());
    }
    // The Secret's field is `data`; the ConfigMap's error is about the whole object, whose
    // empty field path the server prints as `[]`.
    let (field, total) = match ty.plural.as_str() {
        "secrets" => ("data", binary_size(obj.get("data"))),
        "configmaps" => (
            "[]",
            text_size(obj.get("data")) + binary_size(obj.get("binaryData")),
        ),
        _ => return Ok(()),
    };
    if total <= MAX_DATA_SIZE {
        return Ok(());
    }
    Err(ApiError::invalid(
        &ty.kind,
        &ty.group,
        name,
        vec![Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: must have at most {MAX_DATA_SIZE} bytes"),
            field: field.into(),
        }],
    ))
}

/// The bytes of a map of strings.
fn text_size(map: Option<&Value>) -> usize {
    values(map).map(str::len).sum()
}

/// The decoded bytes of a map of base64 strings, from their length and padding (without
/// decoding a megabyte to count it).
fn binary_size(map: Option<&Value>) -> usize {
    values(map)
        .map(|v| {
            let padding = v.bytes().rev().take_while(|&b| b == b'=').count().min(2);
            (v.len().div_ceil(4) * 3).saturating_sub(padding)
        })
        .sum()
}

fn values(map: Option<&Value>) -> impl Iterator<Item = &str> {
    map.and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_size_is_the_decoded_length() {
        for text in ["", "a", "ab", "abc", "abcd", "abcde"] {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            assert_eq!(
                binary_size(Some(&json!({ "k": encoded }))),
                text.len(),
                "{text}"
            );
        }
    }
}
