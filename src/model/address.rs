//! Node addresses: `TYPE.NAME`, as in Terraform. Ordered by type, then name (string order).

use std::fmt;

pub use crate::planfile::NodeKind;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: NodeKind,
    pub name: String,
}

impl Address {
    pub fn new(kind: NodeKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// Parses `TYPE.NAME`; `None` when the type is unknown or the name is not an identifier.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once('.')?;
        let kind = NodeKind::parse(kind)?;
        crate::planfile::syntax::is_identifier(name).then(|| Self::new(kind, name))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let a = Address::parse("helm.linkerd_crds").unwrap();
        assert_eq!(a.kind, NodeKind::Helm);
        assert_eq!(a.to_string(), "helm.linkerd_crds");
        assert_eq!(Address::parse("helms.x"), None);
        assert_eq!(Address::parse("helm"), None);
        assert_eq!(Address::parse("helm.a.b"), None);
    }

    #[test]
    fn order_is_string_order() {
        let mut v = [
            Address::parse("read.a").unwrap(),
            Address::parse("check.z").unwrap(),
            Address::parse("manifest.b").unwrap(),
            Address::parse("helm.c").unwrap(),
        ];
        v.sort();
        let s: Vec<_> = v.iter().map(|a| a.to_string()).collect();
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(s, sorted);
    }
}
