//! What `apply` and `destroy` say besides their progress: the values that were unknown at
//! plan time, and the objects a destroy will delete.

use std::fmt::Write as _;

use crate::apply::{KnownAfterApply, KnownValue};
use crate::state::RecordedObject;

/// `Known after apply:` and one line per node that was unknown at plan time (a read's value,
/// `(sensitive)` for a sensitive one); nothing when there is none.
pub fn known_after_apply(known: &[KnownAfterApply]) -> String {
    if known.is_empty() {
        return String::new();
    }
    let mut out = String::from("Known after apply:\n");
    for k in known {
        let node = &k.node;
        let _ = match &k.value {
            KnownValue::Value(v) => writeln!(out, "  {node}.value = {v}"),
            KnownValue::Sensitive => writeln!(out, "  {node}.value = (sensitive)"),
            KnownValue::NotFound => writeln!(out, "  {node}.value = (not found)"),
            KnownValue::Rendered => {
                writeln!(out, "  {node}: rendered during apply with the values read")
            }
            KnownValue::AsPlanned => {
                writeln!(out, "  {node}: rendered with the values read, as planned")
            }
        };
    }
    out
}

/// The objects a destroy will delete (its preview), and their count.
pub fn destroy_listing(records: &[&RecordedObject]) -> String {
    let mut out = String::from("meshplan will delete these objects the plan owns:\n");
    for r in records {
        let _ = writeln!(out, "  - {}  {}", r.node, r.object);
    }
    let _ = writeln!(out, "Destroy: {} to destroy.", records.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_values_are_listed_and_sensitive_ones_masked() {
        let k = |node: &str, value| KnownAfterApply {
            node: node.into(),
            value,
        };
        let text = known_after_apply(&[
            k("read.mode", KnownValue::Value(json!("blue"))),
            k("read.anchor", KnownValue::Sensitive),
            k("read.gone", KnownValue::NotFound),
            k("helm.app", KnownValue::Rendered),
        ]);
        assert_eq!(
            text,
            "Known after apply:\n  read.mode.value = \"blue\"\n  read.anchor.value = (sensitive)\n  read.gone.value = (not found)\n  helm.app: rendered during apply with the values read\n"
        );
        assert_eq!(known_after_apply(&[]), "");
    }
}
