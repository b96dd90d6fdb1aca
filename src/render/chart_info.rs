//! What a chart declares: its `values.yaml`, its `values.schema.json` and its subcharts', read
//! from the chart the renderer resolves (a directory, a packaged `.tgz`, or a repository chart
//! fetched with `helm pull`). The lint stage compares a helm node's values with it.
//!
//! 1. [`ChartFiles`] gathers the files that matter (`Chart.yaml`, `values.yaml`,
//!    `values.schema.json`, everything under `charts/`) from a directory or an archive.
//! 2. [`ChartInfo::from_files`] parses them; subcharts come from `charts/<dir>/` and
//!    `charts/<name>-<version>.tgz`, and take the key their values live under from the
//!    parent's `dependencies` (`alias`, else `name`).
//!
//! Reading a directory or an archive is the only I/O here ([`read_chart`]); fetching a
//! repository chart runs helm ([`super::Renderer::chart_info`]).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value as Json;

/// What a chart declares about its values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChartInfo {
    pub name: String,
    pub version: String,
    /// `values.yaml` (an empty object when the chart has none).
    pub values: Json,
    /// `values.schema.json`, when present.
    pub schema: Option<Json>,
    /// Subcharts by the top-level key their values live under (alias or name).
    pub subcharts: BTreeMap<String, ChartInfo>,
}

/// The files of a chart that tell its values, by path relative to the chart's root.
#[derive(Debug, Clone, Default)]
pub struct ChartFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl ChartFiles {
    /// From a chart directory.
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        for name in ["Chart.yaml", "values.yaml", "values.schema.json"] {
            let path = dir.join(name);
            if path.is_file() {
                files.insert(name.to_string(), std::fs::read(path)?);
            }
        }
        let charts = dir.join("charts");
        if charts.is_dir() {
            collect(&charts, "charts", &mut files)?;
        }
        Ok(Self { files })
    }

    /// From a packaged chart (`.tgz`): the archive's single top directory is the chart root.
    pub fn from_archive(bytes: &[u8]) -> std::io::Result<Self> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut files = BTreeMap::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.to_string_lossy().replace('\\', "/");
            // `<chart>/values.yaml` → `values.yaml`.
            let Some((_, relative)) = path.split_once('/') else {
                continue;
            };
            let wanted = matches!(
                relative,
                "Chart.yaml" | "values.yaml" | "values.schema.json"
            ) || relative.starts_with("charts/");
            if wanted {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                files.insert(relative.to_string(), bytes);
            }
        }
        Ok(Self { files })
    }

    fn text(&self, name: &str) -> Option<Result<&str, String>> {
        self.files
            .get(name)
            .map(|b| std::str::from_utf8(b).map_err(|_| format!("{name} is not UTF-8 text")))
    }

    /// The files below `prefix/` (prefix removed).
    fn below(&self, prefix: &str) -> Self {
        let lead = format!("{prefix}/");
        Self {
            files: self
                .files
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&lead).map(|r| (r.to_string(), v.clone())))
                .collect(),
        }
    }
}

fn collect(dir: &Path, relative: &str, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{relative}/{name}");
        if entry.file_type()?.is_dir() {
            collect(&entry.path(), &rel, out)?;
        } else {
            out.insert(rel, std::fs::read(entry.path())?);
        }
    }
    Ok(())
}

fn yaml(text: &str, name: &str) -> Result<Json, String> {
    if text.trim().is_empty() {
        return Ok(Json::Object(serde_json::Map::new()));
    }
    let value: Json = serde_saphyr::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    Ok(match value {
        Json::Null => Json::Object(serde_json::Map::new()),
        other => other,
    })
}

impl ChartInfo {
    /// Parses a chart's files. Err: a message naming the file that cannot be read.
    pub fn from_files(files: &ChartFiles) -> Result<Self, String> {
        let chart = match files.text("Chart.yaml") {
            Some(text) => yaml(text?, "Chart.yaml")?,
            None => return Err("no Chart.yaml".to_string()),
        };
        let text_of = |v: Option<&Json>| match v {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let values = match files.text("values.yaml") {
            Some(text) => yaml(text?, "values.yaml")?,
            None => Json::Object(serde_json::Map::new()),
        };
        let schema = match files.text("values.schema.json") {
            Some(text) => {
                Some(serde_json::from_str(text?).map_err(|e| format!("values.schema.json: {e}"))?)
            }
            None => None,
        };
        // Dependency name → the key its values live under.
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        if let Some(deps) = chart.get("dependencies").and_then(Json::as_array) {
            for d in deps {
                let name = text_of(d.get("name"));
                let alias = text_of(d.get("alias"));
                if !name.is_empty() {
                    keys.insert(name.clone(), if alias.is_empty() { name } else { alias });
                }
            }
        }
        let mut subcharts = BTreeMap::new();
        let charts = files.below("charts");
        let mut dirs: Vec<String> = charts
            .files
            .keys()
            .filter_map(|k| k.split_once('/').map(|(d, _)| d.to_string()))
            .collect();
        dirs.dedup();
        for dir in dirs {
            let sub = Self::from_files(&charts.below(&dir))?;
            let key = keys
                .get(&sub.name)
                .cloned()
                .unwrap_or_else(|| sub.name.clone());
            subcharts.insert(key, sub);
        }
        for (name, bytes) in &charts.files {
            if name.contains('/') || !name.ends_with(".tgz") {
                continue;
            }
            let files =
                ChartFiles::from_archive(bytes).map_err(|e| format!("charts/{name}: {e}"))?;
            let sub = Self::from_files(&files).map_err(|e| format!("charts/{name}: {e}"))?;
            let key = keys
                .get(&sub.name)
                .cloned()
                .unwrap_or_else(|| sub.name.clone());
            subcharts.insert(key, sub);
        }
        Ok(Self {
            name: text_of(chart.get("name")),
            version: text_of(chart.get("version")),
            values,
            schema,
            subcharts,
        })
    }

    /// The chart's default for a dotted path (`proxy.nativeSidecar`), if it declares one.
    pub fn default_at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(&self.values, |v, k| v.get(*k))
    }
}

/// Reads a chart directory or a packaged chart (`.tgz`).
pub fn read_chart(path: &Path) -> Result<ChartInfo, String> {
    let files = if path.is_dir() {
        ChartFiles::from_dir(path).map_err(|e| e.to_string())?
    } else {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        ChartFiles::from_archive(&bytes).map_err(|e| e.to_string())?
    };
    ChartInfo::from_files(&files)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A gzipped tar archive of `files` (path, text), as `helm package` writes a chart.
    pub(crate) fn archive(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_packaged_chart_with_a_packaged_subchart_under_its_alias() {
        let sub = archive(&[
            (
                "redis/Chart.yaml",
                "apiVersion: v2\nname: redis\nversion: 1.0.0\n",
            ),
            ("redis/values.yaml", "port: 6379\nauth: {enabled: true}\n"),
        ]);
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let add = |b: &mut tar::Builder<_>, path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            b.append_data(&mut header, path, bytes).unwrap();
        };
        add(
            &mut builder,
            "app/Chart.yaml",
            b"apiVersion: v2\nname: app\nversion: 2.3.4\ndependencies:\n  - name: redis\n    alias: cache\n",
        );
        add(&mut builder, "app/values.yaml", b"replicas: 1\n");
        add(
            &mut builder,
            "app/values.schema.json",
            br#"{"type":"object","properties":{"replicas":{"type":"integer"}}}"#,
        );
        add(&mut builder, "app/templates/x.yaml", b"kind: ConfigMap\n");
        add(&mut builder, "app/charts/redis-1.0.0.tgz", &sub);
        let bytes = builder.into_inner().unwrap().finish().unwrap();

        let info = ChartInfo::from_files(&ChartFiles::from_archive(&bytes).unwrap()).unwrap();
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            ("app", "2.3.4")
        );
        assert_eq!(info.values["replicas"], 1);
        assert!(info.schema.is_some());
        let cache = &info.subcharts["cache"];
        assert_eq!(cache.name, "redis");
        assert_eq!(
            cache.default_at(&["auth", "enabled"]),
            Some(&Json::Bool(true))
        );
    }

    #[test]
    fn the_stand_in_control_plane_chart_reads_from_its_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/charts/linkerd-control-plane");
        let info = read_chart(&dir).unwrap();
        assert_eq!(info.name, "linkerd-control-plane");
        assert_eq!(info.version, "1.16.11");
        assert_eq!(
            info.default_at(&["identity", "issuer", "scheme"]),
            Some(&Json::String("linkerd.io/tls".into()))
        );
        assert!(info.default_at(&["proxy", "nativeSidecar"]).is_none());
    }

    #[test]
    fn a_chart_without_chart_yaml_is_refused() {
        let bytes = archive(&[("x/values.yaml", "a: 1\n")]);
        let err = ChartInfo::from_files(&ChartFiles::from_archive(&bytes).unwrap()).unwrap_err();
        assert_eq!(err, "no Chart.yaml");
    }
}
