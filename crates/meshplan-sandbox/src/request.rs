//! What the HTTP layer extracts from a request: the route, the query options and the body.

use std::collections::BTreeMap;

use serde_json::Value;

use super::status::ApiError;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApiV3Doc(String, String),
    Resource(ResourcePath),
    NotFound,
}

/// A resource URL: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !matches!(tail[0], "status" | "finalize") =>
        {
            (Some((*ns).to_string()), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Route::NotFound,
    };
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

/// Maps a path to its route.
pub(crate) fn route(path: &str) -> Route {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["api", v] => Route::GroupVersion(String::new(), (*v).to_string()),
        ["apis", g] => Route::Group((*g).to_string()),
        ["apis", g, v] => Route::GroupVersion((*g).to_string(), (*v).to_string()),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3,
        ["openapi", "v3", "api", v] => Route::OpenApiV3Doc(String::new(), (*v).to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3Doc((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

/// `%XX` and `+` decoding of URL components.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters (empty pairs tolerated; the last value of a key wins).
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: BTreeMap<String, String>,
}

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut pairs = BTreeMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.insert(percent_decode(k), percent_decode(v));
        }
        Self { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// Go's `strconv.ParseBool` truths.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| v == "All")
    }
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub(crate) fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// Parses a request body: JSON, or YAML when `yaml` (YAML also accepts JSON).
pub(crate) fn parse_body(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if !yaml {
                return Err(ApiError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {json_err}"
                )));
            }
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_namespaced_and_cluster_paths() {
        assert_eq!(
            route("/api/v1/namespaces/default/configmaps/cm1"),
            Route::Resource(ResourcePath {
                group: String::new(),
                version: "v1".into(),
                namespace: Some("default".into()),
                plural: "configmaps".into(),
                name: Some("cm1".into()),
                sub: None,
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/ns1/status"),
            Route::Resource(ResourcePath {
                group: String::new(),
                version: "v1".into(),
                namespace: None,
                plural: "namespaces".into(),
                name: Some("ns1".into()),
                sub: Some("status".into()),
            })
        );
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(route("/nope"), Route::NotFound);
    }

    #[test]
    fn query_tolerates_empty_pairs_and_go_bools() {
        let q = Query::parse(Some("&limit=500&watch=1&labelSelector=app%3Dweb"));
        assert_eq!(q.get("limit"), Some("500"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
    }

    #[test]
    fn yaml_bodies_keep_integers() {
        let v = parse_body(b"a: 1\nb: x\n", true).expect("yaml");
        assert_eq!(v["a"], serde_json::json!(1));
        assert!(parse_body(b"{", false).is_err());
    }
}
