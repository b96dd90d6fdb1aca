//! What a cluster serves: every resource of every group and version.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::object::KindRef;

/// One served resource at one version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ApiResourceInfo {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment, e.g. `deployments`.
    pub plural: String,
    pub namespaced: bool,
    /// Sorted, e.g. `["create", "delete", "get", "list", "patch", "update", "watch"]`.
    pub verbs: Vec<String>,
    /// Sorted, e.g. `["scale", "status"]`.
    pub subresources: Vec<String>,
}

impl ApiResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every served resource, sorted by group, version, kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    pub resources: Vec<ApiResourceInfo>,
}

impl Discovery {
    /// Sorts and deduplicates.
    pub fn new(mut resources: Vec<ApiResourceInfo>) -> Self {
        resources.sort();
        resources.dedup_by(|a, b| a.group == b.group && a.version == b.version && a.kind == b.kind);
        Self { resources }
    }

    /// The resource serving `kind` at its apiVersion.
    pub fn find(&self, kind: &KindRef) -> Option<&ApiResourceInfo> {
        let (group, version) = (kind.group(), kind.version());
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind.kind)
    }

    /// Whether the kind is served at any version of its group.
    pub fn has_group_kind(&self, group: &str, kind: &str) -> bool {
        self.resources
            .iter()
            .any(|r| r.group == group && r.kind == kind)
    }

    /// What `helm template --api-versions` takes: every `group/version` and
    /// `group/version/Kind`, sorted.
    pub fn api_versions(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for r in &self.resources {
            let gv = r.api_version();
            out.insert(format!("{gv}/{}", r.kind));
            out.insert(gv);
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, version: &str, kind: &str) -> ApiResourceInfo {
        ApiResourceInfo {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            namespaced: true,
            verbs: vec!["get".into()],
            subresources: vec![],
        }
    }

    #[test]
    fn finds_kinds_and_lists_api_versions() {
        let d = Discovery::new(vec![
            res("apps", "v1", "Deployment"),
            res("", "v1", "ConfigMap"),
            res("", "v1", "ConfigMap"),
        ]);
        assert_eq!(d.resources.len(), 2);
        assert!(d.find(&KindRef::new("v1", "ConfigMap")).is_some());
        assert!(
            d.find(&KindRef::new("apps/v1beta1", "Deployment"))
                .is_none()
        );
        assert!(d.has_group_kind("apps", "Deployment"));
        assert_eq!(
            d.api_versions(),
            vec!["apps/v1", "apps/v1/Deployment", "v1", "v1/ConfigMap"]
        );
        assert!(d.resources[0].supports("get"));
    }
}
