//! The render cache: chart output by the digest of everything that determines it.
//!
//! The key of a helm node is blake3 over the canonical JSON of: the chart identity and its
//! content digest (a local chart: the digest of its files in sorted order; a remote chart:
//! repository URL, name and version), the merged values (values files included), the helm
//! version, the API versions and kube version given to helm, the release namespace and name,
//! and `include_crds`; and, for a node whose values hold sensitive inputs, the paths of those
//! values (the output's sensitive paths, found by provenance, are cached with it). Ownership marks, namespace defaulting and the comparison with the
//! previous render are applied after the cache, so they are not part of the key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value as Json, json};

use super::json::digest;

/// Format of the key material; bump when the key's contents change meaning.
const KEY_FORMAT: u32 = 1;

/// Why the cache failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("render cache: {message}")]
#[diagnostic(code(render::cache))]
pub struct CacheError {
    pub message: String,
}

/// Rendered chart output (JSON) by render cache key. Implemented in memory here and by the
/// state store.
pub trait RenderCache: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Json>, CacheError>;
    fn put(&self, key: &str, render: &Json) -> Result<(), CacheError>;
}

/// A cache that lives as long as the value.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<BTreeMap<String, Json>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RenderCache for MemoryCache {
    fn get(&self, key: &str) -> Result<Option<Json>, CacheError> {
        let entries = self.entries.lock().map_err(|_| CacheError {
            message: "the in-memory cache is poisoned".into(),
        })?;
        Ok(entries.get(key).cloned())
    }

    fn put(&self, key: &str, render: &Json) -> Result<(), CacheError> {
        let mut entries = self.entries.lock().map_err(|_| CacheError {
            message: "the in-memory cache is poisoned".into(),
        })?;
        entries.insert(key.to_string(), render.clone());
        Ok(())
    }
}

/// How a chart is identified in the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartIdentity {
    /// A local chart directory or archive: its name and content digest.
    Local {
        name: String,
        content_digest: String,
    },
    /// A chart from a repository URL.
    Repo {
        url: String,
        name: String,
        version: Option<String>,
    },
    /// An OCI reference.
    Oci {
        url: String,
        version: Option<String>,
    },
}

impl ChartIdentity {
    fn to_json(&self) -> Json {
        match self {
            ChartIdentity::Local {
                name,
                content_digest,
            } => json!({"local": {"name": name, "digest": content_digest}}),
            ChartIdentity::Repo { url, name, version } => {
                json!({"repo": {"url": url, "name": name, "version": version}})
            }
            ChartIdentity::Oci { url, version } => {
                json!({"oci": {"url": url, "version": version}})
            }
        }
    }
}

/// Everything the chart output depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInputs<'a> {
    pub chart: &'a ChartIdentity,
    pub values: &'a Json,
    pub helm_version: &'a str,
    pub api_versions: &'a [String],
    pub kube_version: Option<&'a str>,
    pub namespace: &'a str,
    pub release: &'a str,
    pub include_crds: bool,
    /// The paths of the values that hold sensitive inputs: the output's sensitive paths (kept
    /// with it) depend on them. Empty for most nodes, and then not part of the key material.
    pub sensitive_inputs: &'a std::collections::BTreeSet<String>,
}

/// The render cache key (blake3 hex) of a helm node.
pub fn cache_key(inputs: &KeyInputs<'_>) -> String {
    let mut material = json!({
        "format": KEY_FORMAT,
        "chart": inputs.chart.to_json(),
        "values": inputs.values,
        "helm_version": inputs.helm_version,
        "api_versions": inputs.api_versions,
        "kube_version": inputs.kube_version,
        "namespace": inputs.namespace,
        "release": inputs.release,
        "include_crds": inputs.include_crds,
    });
    if !inputs.sensitive_inputs.is_empty() {
        material["sensitive_inputs"] = json!(inputs.sensitive_inputs);
    }
    digest(&material)
}

/// The digest of a chart directory (every file, sorted by relative path, with its contents)
/// or of a chart archive.
pub fn chart_content_digest(path: &Path) -> std::io::Result<String> {
    scan_chart(path).map(|s| s.content_digest)
}

/// What reading a local chart once tells: its content digest, and whether its templates may
/// generate material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartScan {
    /// See [`chart_content_digest`].
    pub content_digest: String,
    /// Why the chart may generate material on every render (`FILE: FUNCTION`, or a packaged
    /// chart whose templates are not read); None when no template action of it calls a
    /// generating function ([`super::stability::generating_call`]).
    pub generates: Option<String>,
}

/// Reads a local chart directory (or archive) once: its digest and what it generates.
pub fn scan_chart(path: &Path) -> std::io::Result<ChartScan> {
    let mut hasher = blake3::Hasher::new();
    if path.is_file() {
        hasher.update(&std::fs::read(path)?);
        return Ok(ChartScan {
            content_digest: hasher.finalize().to_hex().to_string(),
            generates: Some("a packaged chart (its templates are not read)".to_owned()),
        });
    }
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut generates = None;
    for relative in files {
        let bytes = std::fs::read(path.join(&relative))?;
        hasher.update(relative.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        if generates.is_none() {
            generates = if relative.ends_with(".tgz") || relative.ends_with(".tar.gz") {
                Some(format!(
                    "{relative}: a packaged subchart (its templates are not read)"
                ))
            } else {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(super::stability::generating_call)
                    .map(|f| format!("{relative}: {f}"))
            };
        }
    }
    Ok(ChartScan {
        content_digest: hasher.finalize().to_hex().to_string(),
        generates,
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_every_input() {
        let chart = ChartIdentity::Repo {
            url: "https://x".into(),
            name: "c".into(),
            version: Some("1".into()),
        };
        let values = json!({"a": 1});
        let api = vec!["v1".to_string()];
        let none = std::collections::BTreeSet::new();
        let some = std::collections::BTreeSet::from(["/password".to_string()]);
        let base = KeyInputs {
            chart: &chart,
            values: &values,
            helm_version: "v4.1.4",
            api_versions: &api,
            kube_version: Some("v1.31.0"),
            namespace: "ns",
            release: "r",
            include_crds: false,
            sensitive_inputs: &none,
        };
        let k = cache_key(&base);
        assert_eq!(k, cache_key(&base.clone()));
        let other_values = json!({"a": 2});
        let other_chart = ChartIdentity::Repo {
            url: "https://x".into(),
            name: "c".into(),
            version: Some("2".into()),
        };
        let variants = [
            KeyInputs {
                values: &other_values,
                ..base.clone()
            },
            KeyInputs {
                chart: &other_chart,
                ..base.clone()
            },
            KeyInputs {
                helm_version: "v4.0.0",
                ..base.clone()
            },
            KeyInputs {
                api_versions: &[],
                ..base.clone()
            },
            KeyInputs {
                kube_version: None,
                ..base.clone()
            },
            KeyInputs {
                namespace: "o",
                ..base.clone()
            },
            KeyInputs {
                release: "o",
                ..base.clone()
            },
            KeyInputs {
                include_crds: true,
                ..base.clone()
            },
            KeyInputs {
                sensitive_inputs: &some,
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(cache_key(&v), k, "{v:?}");
        }
    }

    #[test]
    fn memory_cache_round_trip() {
        let c = MemoryCache::new();
        assert_eq!(c.get("k").unwrap(), None);
        c.put("k", &json!([1])).unwrap();
        assert_eq!(c.get("k").unwrap(), Some(json!([1])));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_scan_names_what_a_chart_generates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "name: x").unwrap();
        std::fs::write(dir.path().join("templates/a.yaml"), "a: {{ .Values.a }}").unwrap();
        let scan = scan_chart(dir.path()).unwrap();
        assert_eq!(scan.generates, None);
        assert_eq!(
            scan.content_digest,
            chart_content_digest(dir.path()).unwrap()
        );
        std::fs::write(dir.path().join("templates/_h.tpl"), "{{ uuidv4 }}").unwrap();
        assert_eq!(
            scan_chart(dir.path()).unwrap().generates.as_deref(),
            Some("templates/_h.tpl: uuidv4")
        );
    }

    #[test]
    fn chart_digest_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "name: x").unwrap();
        std::fs::write(dir.path().join("templates/a.yaml"), "a: 1").unwrap();
        let d1 = chart_content_digest(dir.path()).unwrap();
        assert_eq!(d1, chart_content_digest(dir.path()).unwrap());
        std::fs::write(dir.path().join("templates/a.yaml"), "a: 2").unwrap();
        assert_ne!(d1, chart_content_digest(dir.path()).unwrap());
    }
}
