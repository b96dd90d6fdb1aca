//! `meshplan version`: meshplan's own version, helm's, and the cluster's server version, each
//! with what went wrong when it could not be found out.

use serde::Serialize;

/// What `meshplan version` found out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versions {
    pub meshplan: String,
    pub helm: Component,
    pub server: Component,
}

/// A version, or why it is not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The version, and where it comes from (helm's program, the server's URL and context).
    Known { version: String, from: String },
    /// Why it is not known (helm missing, no kubeconfig, the server unreachable).
    Unknown { reason: String },
}

/// Three aligned lines: `meshplan 0.1.0`, `helm     v4.1.4 from helm`, `server   v1.31.0 from
/// https://10.0.0.1:6443 (context k3s)`.
pub fn render_human(v: &Versions) -> String {
    let line = |name: &str, c: &Component| match c {
        Component::Known { version, from } => format!("{name:<8} {version} from {from}\n"),
        Component::Unknown { reason } => format!("{name:<8} unknown: {reason}\n"),
    };
    format!(
        "{:<8} {}\n{}{}",
        "meshplan",
        v.meshplan,
        line("helm", &v.helm),
        line("server", &v.server)
    )
}

/// The versions as one JSON object (`--output json`), with a final newline.
pub fn render_json(v: &Versions) -> String {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_versions_say_why() {
        let v = Versions {
            meshplan: "0.1.0".into(),
            helm: Component::Known {
                version: "v4.1.4".into(),
                from: "helm".into(),
            },
            server: Component::Unknown {
                reason: "no kubeconfig".into(),
            },
        };
        assert_eq!(
            render_human(&v),
            "meshplan 0.1.0\nhelm     v4.1.4 from helm\nserver   unknown: no kubeconfig\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&v)).unwrap();
        assert_eq!(json["helm"]["known"]["version"], "v4.1.4");
        assert_eq!(json["server"]["unknown"]["reason"], "no kubeconfig");
    }
}
