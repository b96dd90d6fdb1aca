//! `coordination.k8s.io/v1` Leases as the API server checks them on every write.
//!
//! 1. Decoding (400 BadRequest, `Lease in version "v1" cannot be handled as a Lease: ...`):
//!    `holderIdentity` and `preferredHolder`/`strategy` are strings, `leaseDurationSeconds` and
//!    `leaseTransitions` int32, `acquireTime` and `renewTime` MicroTime — RFC 3339 with exactly
//!    six fractional digits (`2006-01-02T15:04:05.000000Z07:00`), as Go's `time.Parse` of that
//!    layout demands.
//! 2. Validation (422 Invalid, `ValidateLeaseSpec`): `leaseDurationSeconds` greater than 0,
//!    `leaseTransitions` at least 0, `preferredHolder` only with a `strategy`.
//!
//! Everything else (optimistic concurrency with resourceVersion, preconditions on delete) is
//! the generic write path's.

use serde_json::Value;

use super::registry::ResourceType;
use super::status::{ApiError, Cause};

/// The layout MicroTime values are parsed with.
const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Checks a Lease about to be written (other kinds pass).
pub(crate) fn check(ty: &ResourceType, obj: &Value, name: &str) -> Result<(), ApiError> {
    if ty.group != "coordination.k8s.io" || ty.kind != "Lease" {
        return Ok(());
    }
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(spec)) => spec,
        Some(other) => {
            return Err(decode_error(&format!(
                "json: cannot unmarshal {} into Go struct field Lease.spec of type v1.LeaseSpec",
                json_kind(other)
            )));
        }
    };
    for field in ["holderIdentity", "preferredHolder", "strategy"] {
        match spec.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => return Err(type_error(field, other, "string")),
        }
    }
    for field in ["leaseDurationSeconds", "leaseTransitions"] {
        match spec.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_i64().and_then(|i| i32::try_from(i).ok()).is_some() => {}
            Some(Value::Number(n)) => {
                return Err(decode_error(&format!(
                    "json: cannot unmarshal number {n} into Go struct field LeaseSpec.spec.{field} of type int32"
                )));
            }
            Some(other) => return Err(type_error(field, other, "int32")),
        }
    }
    for field in ["acquireTime", "renewTime"] {
        match spec.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                if let Err(detail) = parse_micro_time(text) {
                    return Err(decode_error(&detail));
                }
            }
            Some(other) => {
                return Err(decode_error(&format!(
                    "json: cannot unmarshal {} into Go value of type string",
                    json_kind(other)
                )));
            }
        }
    }

    let mut causes = Vec::new();
    let int = |field: &str| spec.get(field).and_then(Value::as_i64);
    if let Some(d) = int("leaseDurationSeconds")
        && d <= 0
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {d}: must be greater than 0"),
            field: "spec.leaseDurationSeconds".into(),
        });
    }
    if let Some(t) = int("leaseTransitions")
        && t < 0
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {t}: must be greater than or equal to 0"),
            field: "spec.leaseTransitions".into(),
        });
    }
    let text = |field: &str| spec.get(field).and_then(Value::as_str).unwrap_or("");
    if !text("preferredHolder").is_empty() && text("strategy").is_empty() {
        causes.push(Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: may only be specified if `strategy` is defined".into(),
            field: "spec.preferredHolder".into(),
        });
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&ty.kind, &ty.group, name, causes))
    }
}

fn decode_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Lease in version \"v1\" cannot be handled as a Lease: {detail}"
    ))
}

fn type_error(field: &str, value: &Value, want: &str) -> ApiError {
    decode_error(&format!(
        "json: cannot unmarshal {} into Go struct field LeaseSpec.spec.{field} of type {want}",
        json_kind(value)
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses a MicroTime the way Go's `time.Parse(MICRO_LAYOUT, text)` does, returning its
/// error text (`parsing time "X" as "LAYOUT": cannot parse "REST" as "ELEM"`) on failure.
pub(crate) fn parse_micro_time(text: &str) -> Result<(), String> {
    // (layout element, what the value must hold there)
    enum Want {
        Digits(usize),
        Lit(&'static str),
        Zone,
    }
    let elems: [(&str, Want); 13] = [
        ("2006", Want::Digits(4)),
        ("-", Want::Lit("-")),
        ("01", Want::Digits(2)),
        ("-", Want::Lit("-")),
        ("02", Want::Digits(2)),
        ("T", Want::Lit("T")),
        ("15", Want::Digits(2)),
        (":", Want::Lit(":")),
        ("04", Want::Digits(2)),
        (":", Want::Lit(":")),
        ("05", Want::Digits(2)),
        (".000000", Want::Digits(6)),
        ("Z07:00", Want::Zone),
    ];
    let fail = |rest: &str, elem: &str| {
        Err(format!(
            "parsing time {text:?} as {MICRO_LAYOUT:?}: cannot parse {rest:?} as {elem:?}"
        ))
    };
    let mut rest = text;
    for (elem, want) in elems {
        match want {
            Want::Digits(n) => {
                let digits = if elem.starts_with('.') {
                    match rest.strip_prefix('.') {
                        Some(after) => after,
                        None => return fail(rest, elem),
                    }
                } else {
                    rest
                };
                if digits.len() < n || !digits[..n].bytes().all(|b| b.is_ascii_digit()) {
                    return fail(rest, elem);
                }
                rest = &digits[n..];
            }
            Want::Lit(lit) => match rest.strip_prefix(lit) {
                Some(after) => rest = after,
                None => return fail(rest, elem),
            },
            Want::Zone => {
                if let Some(after) = rest.strip_prefix('Z') {
                    rest = after;
                } else {
                    let b = rest.as_bytes();
                    let ok = b.len() >= 6
                        && matches!(b[0], b'+' | b'-')
                        && b[1..3].iter().all(u8::is_ascii_digit)
                        && b[3] == b':'
                        && b[4..6].iter().all(u8::is_ascii_digit);
                    if !ok {
                        return fail(rest, elem);
                    }
                    rest = &rest[6..];
                }
            }
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("parsing time {text:?}: extra text: {rest:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times_need_six_fractional_digits() {
        assert!(parse_micro_time("2026-01-02T03:04:05.123456Z").is_ok());
        assert!(parse_micro_time("2026-01-02T03:04:05.123456+02:00").is_ok());
        assert_eq!(
            parse_micro_time("2026-01-02T03:04:05Z").unwrap_err(),
            "parsing time \"2026-01-02T03:04:05Z\" as \"2006-01-02T15:04:05.000000Z07:00\": \
             cannot parse \"Z\" as \".000000\""
        );
        assert!(
            parse_micro_time("yesterday")
                .unwrap_err()
                .contains("cannot parse \"yesterday\" as \"2006\"")
        );
        assert!(
            parse_micro_time("2026-01-02T03:04:05.123456Zjunk")
                .unwrap_err()
                .contains("extra text")
        );
    }
}
