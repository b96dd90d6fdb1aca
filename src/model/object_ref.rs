//! References to Kubernetes objects (`apiVersion`, `kind`, namespace, name), as evaluated from
//! the model: what a manifest declares, what a read or a check looks at.

use super::plan::{Check, Helm, ManifestObject, Node, Read, Value};
use super::template::{EvalError, Scope, Template};
use meshplan_k8s::ObjectRef;

fn string(t: &Template, scope: &dyn Scope) -> Result<String, EvalError> {
    Ok(match t.evaluate(scope)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

fn optional(t: Option<&Template>, scope: &dyn Scope) -> Result<Option<String>, EvalError> {
    t.map(|t| string(t, scope)).transpose()
}

impl ManifestObject {
    /// The object's identity; `default_namespace` (the node's `namespace`) applies when the
    /// object sets none. Whether the kind is namespaced is for the cluster to say.
    pub fn object_ref(
        &self,
        default_namespace: Option<&Template>,
        scope: &dyn Scope,
    ) -> Result<ObjectRef, EvalError> {
        Ok(ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: optional(self.namespace.as_ref().or(default_namespace), scope)?,
            name: string(&self.name, scope)?,
        })
    }
}

impl Read {
    /// The object this read looks at (`namespace` is the node's).
    pub fn object_ref(&self, node: &Node, scope: &dyn Scope) -> Result<ObjectRef, EvalError> {
        Ok(ObjectRef {
            api_version: string(&self.api_version, scope)?,
            kind: string(&self.kind, scope)?,
            namespace: optional(node.namespace.as_ref(), scope)?,
            name: string(&self.name, scope)?,
        })
    }
}

impl Check {
    /// The object this check looks at (`namespace` is the node's).
    pub fn object_ref(&self, node: &Node, scope: &dyn Scope) -> Result<ObjectRef, EvalError> {
        Ok(ObjectRef {
            api_version: string(&self.api_version, scope)?,
            kind: string(&self.kind, scope)?,
            namespace: optional(node.namespace.as_ref(), scope)?,
            name: string(&self.name, scope)?,
        })
    }
}

impl Helm {
    /// The chart values: every values file in order, then `values`, deep-merged (tables merge
    /// key by key; anything else is replaced), evaluated in `scope`.
    pub fn merged_values(&self, scope: &dyn Scope) -> Result<serde_json::Value, EvalError> {
        let mut merged = serde_json::Value::Object(serde_json::Map::new());
        let layers = self
            .values_files
            .iter()
            .map(|f| &f.values)
            .chain(std::iter::once(&self.values));
        for layer in layers {
            deep_merge(&mut merged, layer.evaluate(scope)?);
        }
        Ok(merged)
    }
}

/// Merges `top` into `base`: tables key by key, everything else replaced.
pub fn deep_merge(base: &mut serde_json::Value, top: serde_json::Value) {
    match (base, top) {
        (serde_json::Value::Object(b), serde_json::Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

impl Value {
    /// True when the value is a table without entries.
    pub fn is_empty_table(&self) -> bool {
        matches!(self, Value::Table(entries) if entries.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_merges_tables_and_replaces_the_rest() {
        let mut base = json!({"image": {"repo": "a", "tag": "1"}, "list": [1, 2], "x": 1});
        deep_merge(
            &mut base,
            json!({"image": {"tag": "2"}, "list": [3], "y": true}),
        );
        assert_eq!(
            base,
            json!({"image": {"repo": "a", "tag": "2"}, "list": [3], "x": 1, "y": true})
        );
    }
}
