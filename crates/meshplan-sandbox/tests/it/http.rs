//! The protocol below kubectl: status bodies, content types, patches, subresources, watch
//! semantics, discovery and OpenAPI details, checked over raw HTTP.

use meshplan_sandbox::{BlockingSandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::raw::{Answer, Conn};
use meshplan_sandbox::kubectl::{WIDGET_CRD, widget};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

struct Api {
    _sandbox: BlockingSandbox,
    conn: Conn,
    addr: std::net::SocketAddr,
}

const TOKEN: &str = "http-test-token";

impl Api {
    fn start() -> Self {
        let sandbox = BlockingSandbox::start(SandboxConfig {
            token: Some(TOKEN.into()),
            ..SandboxConfig::default()
        })
        .unwrap();
        let addr = sandbox.addr();
        Self {
            _sandbox: sandbox,
            conn: Conn::open(addr, Some(TOKEN)),
            addr,
        }
    }

    fn call(&mut self, method: &str, path: &str, content_type: &str, body: &Value) -> Answer {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.conn.request(method, path, content_type, &bytes)
    }

    fn get(&mut self, path: &str) -> Answer {
        self.call("GET", path, JSON, &Value::Null)
    }

    fn post(&mut self, path: &str, body: Value) -> Answer {
        self.call("POST", path, JSON, &body)
    }

    fn yaml(&mut self, method: &str, path: &str, content_type: &str, text: &str) -> Answer {
        self.conn
            .request(method, path, content_type, text.as_bytes())
    }

    fn cm(&mut self, name: &str, data: Value) -> Answer {
        self.post(
            CMS,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
        )
    }

    fn install_widgets(&mut self) {
        let a = self.yaml(
            "PATCH",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com?fieldManager=t",
            "application/apply-patch+yaml",
            WIDGET_CRD,
        );
        assert_eq!(a.code, 201, "{}", a.body);
    }
}

fn assert_status(a: &Answer, code: u16, reason: &str) {
    assert_eq!(a.code, code, "{}", a.body);
    assert_eq!(a.body["kind"], "Status", "{}", a.body);
    assert_eq!(a.body["status"], "Failure");
    assert_eq!(a.body["code"], code);
    assert_eq!(a.body["reason"], reason, "{}", a.body);
}

#[test]
fn malformed_and_unsupported_requests_get_status_bodies() {
    let mut api = Api::start();
    let bad = api.conn.request("POST", CMS, JSON, b"{not json");
    assert_status(&bad, 400, "BadRequest");
    let list = api.conn.request("POST", CMS, JSON, b"[1, 2]");
    assert_status(&list, 400, "BadRequest");
    let proto = api.conn.request(
        "POST",
        CMS,
        "application/vnd.kubernetes.protobuf",
        b"\x6b\x38",
    );
    assert_status(&proto, 415, "UnsupportedMediaType");
    let odd_patch = api
        .conn
        .request("PATCH", &format!("{CMS}/x"), "text/plain", b"x");
    assert_status(&odd_patch, 415, "UnsupportedMediaType");
    let nowhere = api.get("/no/such/path");
    assert_status(&nowhere, 404, "NotFound");
    assert_eq!(
        nowhere.body["message"],
        "the server could not find the requested resource"
    );
    let unknown = api.get("/apis/example.com/v1/widgets");
    assert_status(&unknown, 404, "NotFound");
    let labels = api.post(CMS, json!({"metadata": {"name": "l", "labels": "x"}}));
    assert_status(&labels, 400, "BadRequest");
    assert_eq!(
        labels.body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string"
    );
    let finalizers = api.post(CMS, json!({"metadata": {"name": "f", "finalizers": [1]}}));
    assert_status(&finalizers, 400, "BadRequest");
    let apply = api.yaml(
        "PATCH",
        &format!("{CMS}/a?fieldManager=m"),
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: [1]\n",
    );
    assert_status(&apply, 400, "BadRequest");
    // The server is still fine afterwards.
    assert_eq!(api.cm("ok", json!({})).code, 201);
}

#[test]
fn create_checks_names_namespaces_and_url_agreement() {
    let mut api = Api::start();
    let a = api.cm("Bad_Name", json!({}));
    assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "metadata.name");
    let a = api.post(
        "/api/v1/namespaces/missing/configmaps",
        json!({"metadata": {"name": "x"}}),
    );
    assert_status(&a, 404, "NotFound");
    assert_eq!(a.body["message"], "namespaces \"missing\" not found");
    let a = api.post(
        CMS,
        json!({"metadata": {"name": "x", "namespace": "other"}}),
    );
    assert_status(&a, 400, "BadRequest");
    let a = api.post(CMS, json!({"metadata": {"generateName": "gen-"}}));
    assert_eq!(a.code, 201, "{}", a.body);
    let name = a.body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let a = api.post(
        CMS,
        json!({"metadata": {"name": "l", "labels": {"app": "not valid"}}}),
    );
    assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "metadata.labels");
    let a = api.post(CMS, json!({"metadata": {"generateName": "Bad_"}}));
    assert_status(&a, 422, "Invalid");
    assert_eq!(
        a.body["details"]["causes"][0]["field"],
        "metadata.generateName"
    );
    assert_eq!(api.cm("dup", json!({})).code, 201);
    let again = api.cm("dup", json!({}));
    assert_status(&again, 409, "AlreadyExists");
    assert_eq!(again.body["message"], "configmaps \"dup\" already exists");
}

#[test]
fn stale_resource_versions_conflict_on_put_and_patch() {
    let mut api = Api::start();
    let created = api.cm("k1", json!({"a": "1"}));
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut next = created.body.clone();
    next["data"]["a"] = json!("2");
    let put = api.call("PUT", &format!("{CMS}/k1"), JSON, &next);
    assert_eq!(put.code, 200, "{}", put.body);
    assert_ne!(put.body["metadata"]["resourceVersion"], rv.as_str());
    let stale = api.call("PUT", &format!("{CMS}/k1"), JSON, &next);
    assert_status(&stale, 409, "Conflict");
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on configmaps \"k1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let patch = api.call(
        "PATCH",
        &format!("{CMS}/k1"),
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": rv}, "data": {"a": "3"}}),
    );
    assert_status(&patch, 409, "Conflict");
}

#[test]
fn json_patch_operations_and_failed_test() {
    let mut api = Api::start();
    api.cm("k1", json!({"a": "1", "b": "2"}));
    let ops = json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "copy", "from": "/data/c", "path": "/data/d"},
        {"op": "move", "from": "/data/d", "path": "/data/e"},
    ]);
    let a = api.call(
        "PATCH",
        &format!("{CMS}/k1"),
        "application/json-patch+json",
        &ops,
    );
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.body["data"], json!({"a": "10", "c": "3", "e": "3"}));
    let failed = api.call(
        "PATCH",
        &format!("{CMS}/k1"),
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/data/a", "value": "nope"}]),
    );
    assert_status(&failed, 422, "Invalid");
    let strategic = api.call(
        "PATCH",
        &format!("{CMS}/k1"),
        "application/strategic-merge-patch+json",
        &json!({"data": {"c": null, "f": "6"}}),
    );
    assert_eq!(strategic.code, 200, "{}", strategic.body);
    assert_eq!(
        strategic.body["data"],
        json!({"a": "10", "e": "3", "f": "6"})
    );
    let missing = api.call(
        "PATCH",
        &format!("{CMS}/nope"),
        "application/merge-patch+json",
        &json!({}),
    );
    assert_status(&missing, 404, "NotFound");
}

const APPLY: &str = "application/apply-patch+yaml";

#[test]
fn apply_checks_manager_and_api_version_and_creates_with_201() {
    let mut api = Api::start();
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k1\ndata:\n  a: \"1\"\n";
    let path = format!("{CMS}/k1?fieldManager=m");
    let no_manager = api.yaml("PATCH", &format!("{CMS}/k1"), APPLY, body);
    assert_status(&no_manager, 422, "Invalid");
    let wrong = api.yaml(
        "PATCH",
        &path,
        APPLY,
        &body.replace("apiVersion: v1", "apiVersion: v2"),
    );
    assert_status(&wrong, 400, "BadRequest");
    let managed = api.yaml(
        "PATCH",
        &path,
        APPLY,
        &body.replace(
            "metadata:\n",
            "metadata:\n  managedFields: [{manager: x}]\n",
        ),
    );
    assert_status(&managed, 400, "BadRequest");
    let created = api.yaml("PATCH", &path, APPLY, body);
    assert_eq!(created.code, 201, "{}", created.body);
    let again = api.yaml("PATCH", &path, APPLY, body);
    assert_eq!(again.code, 200);
    assert_eq!(
        again.body, created.body,
        "a no-op apply returns the stored object"
    );
}

#[test]
fn dry_run_stores_nothing_and_emits_no_event() {
    let mut api = Api::start();
    api.cm("k1", json!({"a": "1"}));
    let start = api.get(CMS).body["metadata"]["resourceVersion"].clone();
    let created = api.post(
        &format!("{CMS}?dryRun=All"),
        json!({"metadata": {"name": "dry"}, "data": {"x": "y"}}),
    );
    assert_eq!(created.code, 201, "{}", created.body);
    assert_status(&api.get(&format!("{CMS}/dry")), 404, "NotFound");
    let patched = api.call(
        "PATCH",
        &format!("{CMS}/k1?dryRun=All"),
        "application/merge-patch+json",
        &json!({"data": {"a": "2"}}),
    );
    assert_eq!(patched.body["data"]["a"], "2");
    let deleted = api.call(
        "DELETE",
        &format!("{CMS}/k1"),
        JSON,
        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}),
    );
    assert_eq!(deleted.code, 200);
    let live = api.get(&format!("{CMS}/k1"));
    assert_eq!(live.body["data"]["a"], "1");
    assert_eq!(api.get(CMS).body["metadata"]["resourceVersion"], start);
}

#[test]
fn status_subresource_and_generation_rules() {
    let mut api = Api::start();
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        "status": {"replicas": 5}
    });
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let created = api.post(path, dep);
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["metadata"]["generation"], 1);
    assert!(
        created.body.get("status").is_none(),
        "status is ignored on create"
    );
    let status = api.call(
        "PATCH",
        &format!("{path}/web/status"),
        "application/merge-patch+json",
        &json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 9}}),
    );
    assert_eq!(status.code, 200, "{}", status.body);
    assert_eq!(status.body["status"]["readyReplicas"], 1);
    assert_eq!(
        status.body["spec"]["replicas"], 1,
        "status writes change status only"
    );
    assert_eq!(status.body["metadata"]["generation"], 1);
    let spec = api.call(
        "PATCH",
        &format!("{path}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 7}}),
    );
    assert_eq!(spec.body["metadata"]["generation"], 2);
    assert_eq!(
        spec.body["status"]["readyReplicas"], 1,
        "main endpoint ignores status"
    );
    let cm = api.cm("k1", json!({"a": "1"}));
    assert!(cm.body["metadata"].get("generation").is_none());
}

#[test]
fn custom_resource_field_validation_modes() {
    let mut api = Api::start();
    api.install_widgets();
    let path = "/apis/example.com/v1/namespaces/default/widgets";
    let w = |name: &str| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
               "spec": {"size": 1, "foo": "bar"}})
    };
    let strict = api.post(&format!("{path}?fieldValidation=Strict"), w("a"));
    assert_status(&strict, 400, "BadRequest");
    assert_eq!(
        strict.body["message"],
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.foo\""
    );
    let warn = api.post(path, w("b"));
    assert_eq!(warn.code, 201, "{}", warn.body);
    assert_eq!(
        warn.headers["warning"],
        vec![r#"299 - "unknown field \"spec.foo\"""#.to_string()]
    );
    assert!(warn.body["spec"].get("foo").is_none());
    let ignore = api.post(&format!("{path}?fieldValidation=Ignore"), w("c"));
    assert_eq!(ignore.code, 201);
    assert!(!ignore.headers.contains_key("warning"));
    let apply = api.yaml(
        "PATCH",
        &format!("{path}/d?fieldManager=m"),
        APPLY,
        &widget("d", "  foo: 1\n"),
    );
    assert_eq!(apply.code, 500, "{}", apply.body);
    assert!(apply.body.get("reason").is_none());
    assert_eq!(
        apply.body["message"],
        "failed to create typed patch object (default/d; example.com/v1, Kind=Widget): .spec.foo: field not declared in schema"
    );
    let invalid = api.post(
        path,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "e"},
               "spec": {"size": -1}}),
    );
    assert_status(&invalid, 422, "Invalid");
    assert_eq!(invalid.body["details"]["kind"], "Widget");
    assert_eq!(invalid.body["details"]["causes"][0]["field"], "spec.size");
    let message = invalid.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Widget.example.com \"e\" is invalid: spec.size: Invalid value"),
        "{message}"
    );
}

#[test]
fn watch_replays_selects_and_times_out() {
    let mut api = Api::start();
    let first = api.cm("k1", json!({"a": "1"}));
    let rv1 = first.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.call(
        "PATCH",
        &format!("{CMS}/k1"),
        "application/merge-patch+json",
        &json!({"data": {"a": "2"}}),
    );
    api.call("DELETE", &format!("{CMS}/k1"), JSON, &Value::Null);

    let mut watch = Conn::open(api.addr, Some(TOKEN));
    watch.send(
        "GET",
        &format!("{CMS}?watch=true&resourceVersion={rv1}&timeoutSeconds=1"),
        JSON,
        b"",
    );
    assert_eq!(watch.head().0, 200);
    let events = watch.events(usize::MAX);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec!["MODIFIED", "DELETED"],
        "replay after {rv1}, then the end"
    );

    api.cm("k2", json!({}));
    let mut initial = Conn::open(api.addr, Some(TOKEN));
    initial.send(
        "GET",
        &format!(
            "{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
        ),
        JSON,
        b"",
    );
    initial.head();
    let events = initial.events(2);
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "k2");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(events[1]["object"]["kind"], "ConfigMap");
    assert_eq!(events[1]["object"]["apiVersion"], "v1");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(events[1]["object"]["metadata"]["resourceVersion"].is_string());

    let mut selected = Conn::open(api.addr, Some(TOKEN));
    selected.send(
        "GET",
        &format!(
            "{CMS}?watch=1&resourceVersion={}&labelSelector=app%3Dweb&timeoutSeconds=1",
            api.get(CMS).body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
        ),
        JSON,
        b"",
    );
    selected.head();
    api.post(CMS, json!({"metadata": {"name": "other"}}));
    api.post(
        CMS,
        json!({"metadata": {"name": "web", "labels": {"app": "web"}}}),
    );
    let events = selected.events(usize::MAX);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["web"]);
}

#[test]
fn watch_from_a_compacted_version_gets_an_in_stream_410() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        data_dir: Some(dir.path().to_path_buf()),
        token: Some(TOKEN.into()),
        ..SandboxConfig::default()
    };
    {
        let sandbox = BlockingSandbox::start(config.clone()).unwrap();
        let mut conn = Conn::open(sandbox.addr(), Some(TOKEN));
        let body = json!({"metadata": {"name": "k1"}});
        let a = conn.request("POST", CMS, JSON, body.to_string().as_bytes());
        assert_eq!(a.code, 201);
    }
    // After a restart the history is gone: older versions are expired.
    let sandbox = BlockingSandbox::start(config).unwrap();
    let mut watch = Conn::open(sandbox.addr(), Some(TOKEN));
    watch.send(
        "GET",
        &format!("{CMS}?watch=true&resourceVersion=1"),
        JSON,
        b"",
    );
    assert_eq!(watch.head().0, 200);
    let events = watch.events(usize::MAX);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[test]
fn namespaces_terminate_protect_and_refuse_new_content() {
    let mut api = Api::start();
    let ns = api.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}));
    assert_eq!(ns.code, 201);
    assert_eq!(ns.body["status"]["phase"], "Active");
    assert_eq!(
        ns.body["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    let held = api.post(
        "/api/v1/namespaces/team/configmaps",
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    );
    assert_eq!(held.code, 201);
    let deleting = api.call("DELETE", "/api/v1/namespaces/team", JSON, &Value::Null);
    assert_eq!(deleting.body["status"]["phase"], "Terminating");
    let refused = api.post(
        "/api/v1/namespaces/team/configmaps",
        json!({"metadata": {"name": "new"}}),
    );
    assert_status(&refused, 403, "Forbidden");
    // The held object is marked for deletion; the namespace waits for it.
    while !api.get("/api/v1/namespaces/team/configmaps/held").body["metadata"]["deletionTimestamp"]
        .is_string()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(api.get("/api/v1/namespaces/team").code, 200);
    api.call(
        "PATCH",
        "/api/v1/namespaces/team/configmaps/held",
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    while api.get("/api/v1/namespaces/team").code == 200 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_status(&api.get("/api/v1/namespaces/team"), 404, "NotFound");
    for protected in ["default", "kube-system", "kube-public"] {
        let a = api.call(
            "DELETE",
            &format!("/api/v1/namespaces/{protected}"),
            JSON,
            &Value::Null,
        );
        assert_status(&a, 403, "Forbidden");
    }
}

#[test]
fn deletecollection_and_selectors() {
    let mut api = Api::start();
    api.post(
        CMS,
        json!({"metadata": {"name": "a", "labels": {"tier": "x"}}}),
    );
    api.post(
        CMS,
        json!({"metadata": {"name": "b", "labels": {"tier": "y"}}}),
    );
    api.post(CMS, json!({"metadata": {"name": "c"}}));
    let a = api.call(
        "DELETE",
        &format!("{CMS}?labelSelector=tier%20in%20(x)"),
        JSON,
        &Value::Null,
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let left = api.get(CMS);
    let names: Vec<&str> = left.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b", "c"]);
    let exists = api.get(&format!("{CMS}?labelSelector=tier"));
    assert_eq!(exists.body["items"].as_array().unwrap().len(), 1);
    let by_name = api.get(&format!("{CMS}?fieldSelector=metadata.name%3Dc"));
    assert_eq!(by_name.body["items"][0]["metadata"]["name"], "c");
    let bad = api.get(&format!("{CMS}?labelSelector=a%20in%20"));
    assert_status(&bad, 400, "BadRequest");
}

#[test]
fn tables_discovery_and_openapi_details() {
    let mut api = Api::start();
    api.cm("k1", json!({"a": "1", "b": "2"}));
    let t = api.conn.request_accept(
        "GET",
        CMS,
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    );
    assert_eq!(t.body["kind"], "Table", "{}", t.body);
    let cols: Vec<&str> = t.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["Name", "Data", "Age"]);
    assert_eq!(t.body["rows"][0]["cells"][0], "k1");
    assert_eq!(t.body["rows"][0]["cells"][1], 2);
    assert_eq!(t.body["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let agg = api.conn.request_accept(
        "GET",
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    );
    assert_eq!(
        agg.headers["content-type"],
        vec!["application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".to_string()]
    );
    assert_eq!(agg.body["kind"], "APIGroupDiscoveryList");
    assert_eq!(api.get("/api/v1").body["groupVersion"], "v1");
    let version = api.get("/version?timeout=5s");
    assert_eq!(version.body["gitVersion"], "v1.32.0");
    assert_eq!(version.body.as_object().unwrap().len(), 9);

    let v2 = api.get("/openapi/v2");
    assert_eq!(v2.code, 200);
    assert!(v2.body.is_null(), "empty body");
    assert_eq!(
        v2.headers["content-type"],
        vec!["application/com.github.proto-openapi.spec.v2.v1.0+protobuf".to_string()]
    );
    let before = api.get("/openapi/v3");
    assert!(before.body["paths"].get("apis/example.com/v1").is_none());
    api.install_widgets();
    let after = api.get("/openapi/v3");
    let url = after.body["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.starts_with("/openapi/v3/apis/example.com/v1?hash="),
        "{url}"
    );
    let doc = api.get(&url);
    let op =
        &doc.body["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Widget");
    let resources = api.get("/apis/example.com/v1");
    let names: Vec<&str> = resources.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["widgets", "widgets/status"]);
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

fn gadget_crd(name: &str, versions: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": versions,
        }
    })
}

fn version(name: &str, storage: bool) -> Value {
    json!({
        "name": name, "served": true, "storage": storage,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}
    })
}

#[test]
fn crd_definitions_are_checked() {
    let mut api = Api::start();
    let wrong_name = api.post(
        CRDS,
        gadget_crd("gadget.example.com", json!([version("v1", true)])),
    );
    assert_status(&wrong_name, 422, "Invalid");
    assert_eq!(
        wrong_name.body["details"]["causes"][0]["field"],
        "metadata.name"
    );
    let two_storage = api.post(
        CRDS,
        gadget_crd(
            "gadgets.example.com",
            json!([version("v1", true), version("v2", true)]),
        ),
    );
    assert_status(&two_storage, 422, "Invalid");
    let mut bad_schema = version("v1", true);
    bad_schema["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {"spec": {}}});
    let not_structural = api.post(CRDS, gadget_crd("gadgets.example.com", json!([bad_schema])));
    assert_status(&not_structural, 422, "Invalid");
    // Nothing was installed by the refused requests.
    assert_status(&api.get("/apis/example.com/v1/gadgets"), 404, "NotFound");
}

#[test]
fn multi_version_crd_serves_every_version_and_records_status() {
    let mut api = Api::start();
    let created = api.post(
        CRDS,
        gadget_crd(
            "gadgets.example.com",
            json!([version("v1beta1", false), version("v1", true)]),
        ),
    );
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["spec"]["names"]["singular"], "gadget");
    assert_eq!(created.body["spec"]["names"]["listKind"], "GadgetList");
    assert_eq!(created.body["status"]["storedVersions"], json!(["v1"]));
    let conditions: Vec<(&str, &str)> = created.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        vec![("NamesAccepted", "True"), ("Established", "True")]
    );
    assert_eq!(
        created.body["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    let group = api.get("/apis/example.com");
    assert_eq!(group.body["preferredVersion"]["version"], "v1");
    let g = api.post(
        "/apis/example.com/v1beta1/gadgets",
        json!({"apiVersion": "example.com/v1beta1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"any": {"thing": 1}}}),
    );
    assert_eq!(g.code, 201, "{}", g.body);
    let v1 = api.get("/apis/example.com/v1/gadgets/g1");
    assert_eq!(v1.body["apiVersion"], "example.com/v1");
    assert_eq!(
        v1.body["spec"]["any"]["thing"], 1,
        "preserve-unknown-fields keeps it"
    );
    let list = api.get("/apis/example.com/v1beta1/gadgets");
    assert_eq!(list.body["kind"], "GadgetList");
    assert_eq!(list.body["items"][0]["apiVersion"], "example.com/v1beta1");
}

#[test]
fn crd_delete_waits_for_custom_resource_finalizers() {
    let mut api = Api::start();
    api.post(
        CRDS,
        gadget_crd("gadgets.example.com", json!([version("v1", true)])),
    );
    let g = api.post(
        "/apis/example.com/v1/gadgets",
        json!({"apiVersion": "example.com/v1", "kind": "Gadget",
               "metadata": {"name": "g1", "finalizers": ["example.com/hold"]}}),
    );
    assert_eq!(g.code, 201, "{}", g.body);
    let deleting = api.call(
        "DELETE",
        &format!("{CRDS}/gadgets.example.com"),
        JSON,
        &Value::Null,
    );
    assert!(deleting.body["metadata"]["deletionTimestamp"].is_string());
    while !api.get("/apis/example.com/v1/gadgets/g1").body["metadata"]["deletionTimestamp"]
        .is_string()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The kind stays served while its objects are finalized.
    assert_eq!(api.get(&format!("{CRDS}/gadgets.example.com")).code, 200);
    api.call(
        "PATCH",
        "/apis/example.com/v1/gadgets/g1",
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    while api.get(&format!("{CRDS}/gadgets.example.com")).code == 200 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_status(&api.get("/apis/example.com/v1/gadgets"), 404, "NotFound");
    assert_status(&api.get("/apis/example.com/v1"), 404, "NotFound");
}

#[test]
fn dependents_are_collected_or_orphaned() {
    let mut api = Api::start();
    let owner = api.cm("owner", json!({}));
    let uid = owner.body["metadata"]["uid"].as_str().unwrap().to_string();
    let dependent = |name: &str| {
        json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
        ]}})
    };
    api.post(CMS, dependent("child"));
    api.call("DELETE", &format!("{CMS}/owner"), JSON, &Value::Null);
    while api.get(&format!("{CMS}/child")).code == 200 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let owner = api.cm("owner2", json!({}));
    let uid = owner.body["metadata"]["uid"].as_str().unwrap().to_string();
    api.post(
        CMS,
        json!({"metadata": {"name": "kept", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": uid}
        ]}}),
    );
    let deleted = api.call(
        "DELETE",
        &format!("{CMS}/owner2"),
        JSON,
        &json!({"propagationPolicy": "Orphan"}),
    );
    assert_eq!(deleted.code, 200);
    let kept = api.get(&format!("{CMS}/kept"));
    assert_eq!(kept.code, 200);
    assert!(
        kept.body["metadata"].get("ownerReferences").is_none(),
        "{}",
        kept.body
    );
}

#[test]
fn lists_page_with_limit_and_continue() {
    let mut api = Api::start();
    for name in ["a", "b", "c", "d", "e"] {
        api.cm(name, json!({}));
    }
    let mut names = Vec::new();
    let mut path = format!("{CMS}?limit=2");
    let mut pages = 0;
    loop {
        let page = api.get(&path);
        assert_eq!(page.code, 200, "{}", page.body);
        pages += 1;
        names.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page.body["metadata"]["continue"].as_str() {
            Some(token) => {
                assert!(
                    page.body["metadata"]["remainingItemCount"]
                        .as_u64()
                        .unwrap()
                        > 0
                );
                path = format!("{CMS}?limit=2&continue={token}");
            }
            None => break,
        }
    }
    assert_eq!(names, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
    let bad = api.get(&format!("{CMS}?limit=2&continue=garbage"));
    assert_status(&bad, 400, "BadRequest");
}

/// The answer to a DELETE says whether the object is gone: a success `Status` naming it when
/// it was removed at once, the object with `deletionTimestamp` while finalizers hold it, as
/// the API server answers (registry `finalizeDelete`); a ServiceAccount (`ReturnDeletedObject`)
/// answers with the deleted object.
#[test]
fn delete_answers_with_a_status_when_gone_and_the_object_when_pending() {
    let mut api = Api::start();
    let created = api.cm("gone", json!({"a": "1"}));
    let uid = created.body["metadata"]["uid"].clone();
    let deleted = api.call("DELETE", &format!("{CMS}/gone"), JSON, &Value::Null);
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    assert_eq!(
        deleted.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "gone", "kind": "configmaps", "uid": uid}})
    );

    api.post(
        CMS,
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    );
    let pending = api.call("DELETE", &format!("{CMS}/held"), JSON, &Value::Null);
    assert_eq!(pending.code, 200, "{}", pending.body);
    assert_eq!(pending.body["kind"], "ConfigMap", "{}", pending.body);
    assert!(
        pending.body["metadata"]["deletionTimestamp"].is_string(),
        "{}",
        pending.body
    );
    // Deleted again while pending: the object, still pending.
    let again = api.call("DELETE", &format!("{CMS}/held"), JSON, &Value::Null);
    assert!(again.body["metadata"]["deletionTimestamp"].is_string());

    let sas = "/api/v1/namespaces/default/serviceaccounts";
    api.post(sas, json!({"metadata": {"name": "robot"}}));
    let sa = api.call("DELETE", &format!("{sas}/robot"), JSON, &Value::Null);
    assert_eq!(sa.code, 200, "{}", sa.body);
    assert_eq!(sa.body["kind"], "ServiceAccount", "{}", sa.body);
    assert!(sa.body["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(api.get(&format!("{sas}/robot")).code, 404);
}
