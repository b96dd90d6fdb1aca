//! The render-time scope and evaluation that tolerates unknowns.
//!
//! [`RenderScope`] answers vars and static node attributes like the plan's static scope, and
//! `${read.NAME.value}` from the values read so far (absent → unknown, shown as
//! `(known after apply)`). [`evaluate_marked`] evaluates a structured value leaf by leaf: a leaf
//! that uses an unknown value becomes [`KNOWN_AFTER_APPLY`] and its path is recorded, instead of
//! failing the whole value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::model::{Address, EvalError, Lookup, NodeKind, Plan, Reference, Scope, Template, Value};

use super::json::push_segment;

/// The placeholder of a value only known during apply.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// A value read from the cluster (`${read.NAME.value}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadValue {
    pub value: Json,
    /// Never printed or stored in clear.
    pub sensitive: bool,
}

/// Vars, static node attributes and the read values known so far.
#[derive(Debug, Clone, Copy)]
pub struct RenderScope<'a> {
    plan: &'a Plan,
    reads: &'a BTreeMap<Address, ReadValue>,
}

impl<'a> RenderScope<'a> {
    pub fn new(plan: &'a Plan, reads: &'a BTreeMap<Address, ReadValue>) -> Self {
        Self { plan, reads }
    }

    /// The sensitive read values that are known (for masking).
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .reads
            .iter()
            .filter(|(address, r)| {
                r.sensitive
                    || matches!(
                        self.plan.node(address).map(|n| &n.spec),
                        Some(crate::model::NodeSpec::Read(read)) if read.sensitive
                    )
            })
            .filter_map(|(_, r)| match &r.value {
                Json::String(s) => Some(s.clone()),
                Json::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| !s.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// True when `reference` is a sensitive read's value.
    pub fn is_sensitive(&self, reference: &Reference) -> bool {
        match reference {
            Reference::Node { address, attribute }
                if address.kind == NodeKind::Read && attribute == "value" =>
            {
                self.reads.get(address).is_some_and(|r| r.sensitive)
                    || matches!(
                        self.plan.node(address).map(|n| &n.spec),
                        Some(crate::model::NodeSpec::Read(read)) if read.sensitive
                    )
            }
            _ => false,
        }
    }
}

impl Scope for RenderScope<'_> {
    fn lookup(&self, reference: &Reference) -> Lookup {
        match reference {
            Reference::Node { address, attribute }
                if address.kind == NodeKind::Read && attribute == "value" =>
            {
                if self.plan.node(address).is_none() {
                    return Lookup::Missing;
                }
                match self.reads.get(address) {
                    Some(r) => Lookup::Known(r.value.clone()),
                    None => Lookup::Unknown,
                }
            }
            _ => self.plan.static_scope().lookup(reference),
        }
    }
}

/// A value evaluated with unknowns marked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Marked {
    pub value: Json,
    /// JSON pointers of leaves that are known only during apply.
    pub unknown_paths: BTreeSet<String>,
    /// The references that were unknown, sorted.
    pub unknown_references: BTreeSet<String>,
    /// JSON pointers of leaves built from sensitive values.
    pub sensitive_paths: BTreeSet<String>,
}

/// Evaluates a template; an unknown reference gives the placeholder and is recorded.
pub fn evaluate_template_marked(
    template: &Template,
    scope: &RenderScope<'_>,
    path: &str,
    out: &mut Marked,
) -> Result<Json, EvalError> {
    if template
        .references()
        .any(|r| scope.is_sensitive(&r.reference))
    {
        out.sensitive_paths.insert(path.to_string());
    }
    match template.evaluate(scope) {
        Ok(v) => Ok(v),
        Err(EvalError::Unknown { .. }) => {
            for r in template.references() {
                if matches!(scope.lookup(&r.reference), Lookup::Unknown) {
                    out.unknown_references.insert(r.reference.to_string());
                }
            }
            out.unknown_paths.insert(path.to_string());
            Ok(Json::String(KNOWN_AFTER_APPLY.into()))
        }
        Err(e) => Err(e),
    }
}

/// Evaluates a structured value leaf by leaf; unknown leaves become the placeholder.
/// Errors other than unknowns (a missing value, a table joined into a string) fail.
pub fn evaluate_marked(value: &Value, scope: &RenderScope<'_>) -> Result<Marked, EvalError> {
    let mut out = Marked::default();
    out.value = eval_into(value, scope, "", &mut out)?;
    Ok(out)
}

fn eval_into(
    value: &Value,
    scope: &RenderScope<'_>,
    path: &str,
    out: &mut Marked,
) -> Result<Json, EvalError> {
    Ok(match value {
        Value::String(t) => evaluate_template_marked(t, scope, path, out)?,
        Value::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| eval_into(v, scope, &format!("{path}/{i}"), out))
                .collect::<Result<_, _>>()?,
        ),
        Value::Table(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                map.insert(k.clone(), eval_into(v, scope, &push_segment(path, k), out)?);
            }
            Json::Object(map)
        }
        other => other.evaluate(scope)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{FileReader, LoadRequest, load_with};
    use std::path::Path;

    struct Mem(&'static str);
    impl FileReader for Mem {
        fn read(&self, _: &Path) -> std::io::Result<String> {
            Ok(self.0.to_string())
        }
    }

    const PLAN: &str = r#"
[plan]
name = "t"
[vars]
ns = "apps"
[read.ca]
api_version = "v1"
kind = "Secret"
namespace = "x"
name = "ca"
key = "ca.crt"
[manifest.cm]
yaml = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  namespace: ${var.ns}
data:
  ca: ${read.ca.value}
  both: "pre-${read.ca.value}"
"""
"#;

    fn plan() -> Plan {
        load_with(
            &LoadRequest {
                plan: "plan.toml".into(),
                ..Default::default()
            },
            &Mem(PLAN),
        )
        .unwrap()
        .plan
    }

    #[test]
    fn unknown_leaves_are_marked_not_errors() {
        let plan = plan();
        let reads = BTreeMap::new();
        let scope = RenderScope::new(&plan, &reads);
        let crate::model::NodeSpec::Manifest(m) = &plan.nodes.values().next().unwrap().spec else {
            panic!("manifest expected")
        };
        let marked = evaluate_marked(&m.objects[0].value, &scope).unwrap();
        assert_eq!(marked.value["metadata"]["namespace"], "apps");
        assert_eq!(marked.value["data"]["ca"], KNOWN_AFTER_APPLY);
        assert_eq!(
            marked.unknown_paths.iter().collect::<Vec<_>>(),
            ["/data/both", "/data/ca"]
        );
        assert_eq!(
            marked.unknown_references.iter().collect::<Vec<_>>(),
            ["read.ca.value"]
        );
        // Secret reads are sensitive by default.
        assert_eq!(marked.sensitive_paths.len(), 2);
    }

    #[test]
    fn known_reads_evaluate() {
        let plan = plan();
        let address = Address::parse("read.ca").unwrap();
        let reads = BTreeMap::from([(
            address,
            ReadValue {
                value: "PEM".into(),
                sensitive: false,
            },
        )]);
        let scope = RenderScope::new(&plan, &reads);
        let crate::model::NodeSpec::Manifest(m) = &plan.nodes.values().next().unwrap().spec else {
            panic!("manifest expected")
        };
        let marked = evaluate_marked(&m.objects[0].value, &scope).unwrap();
        assert_eq!(marked.value["data"]["both"], "pre-PEM");
        assert!(marked.unknown_paths.is_empty());
        assert_eq!(scope.sensitive_values(), ["PEM"]);
    }
}
