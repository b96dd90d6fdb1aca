//! The sample plan `plans/linkerd.toml`, loaded through the library: the stack is the one the
//! Linkerd docs describe, in the right order.

use meshplan::load::{LoadRequest, LoadedPlan, load};
use meshplan::model::{Address, EvalError, NodeSpec, Reference, Scope as _, Value};

use crate::support::root;

fn load_sample(vars: &[&str]) -> LoadedPlan {
    let request = LoadRequest {
        plan: root().join("plans/linkerd.toml"),
        vars: vars.iter().map(|v| v.to_string()).collect(),
        var_files: Vec::new(),
    };
    match load(&request) {
        Ok(loaded) => loaded,
        Err(diags) => panic!("{}", diags.render_short()),
    }
}

fn addr(text: &str) -> Address {
    Address::parse(text).unwrap()
}

/// The objects of a manifest node, evaluated with the plan's vars.
fn objects(loaded: &LoadedPlan, node: &str) -> Vec<serde_json::Value> {
    let scope = loaded.plan.static_scope();
    match &loaded.plan.nodes[&addr(node)].spec {
        NodeSpec::Manifest(m) => m
            .objects
            .iter()
            .map(|o| o.value.evaluate(&scope).unwrap())
            .collect(),
        other => panic!("{node} is not a manifest: {other:?}"),
    }
}

const ISSUER_CHAIN: [&str; 7] = [
    "helm.cert_manager",
    "manifest.selfsigned_issuer",
    "manifest.root_ca",
    "manifest.ca_issuer",
    "check.ca_issuer_ready",
    "manifest.identity_issuer",
    "read.trust_anchor",
];

#[test]
fn crds_chart_is_independent_of_the_issuer_chain() {
    let loaded = load_sample(&[]);
    let crds = addr("helm.linkerd_crds");
    for node in ISSUER_CHAIN {
        assert!(
            loaded.graph.are_independent(&crds, &addr(node)),
            "{node} and helm.linkerd_crds must be unordered"
        );
    }
    assert_eq!(
        loaded.graph.layers()[0].first(),
        Some(&addr("helm.cert_manager"))
    );
    assert!(loaded.graph.layers()[0].contains(&crds));
}

#[test]
fn issuer_chain_is_in_order_and_feeds_the_control_plane() {
    let loaded = load_sample(&[]);
    for pair in ISSUER_CHAIN.windows(2) {
        assert!(
            loaded.graph.has_path(&addr(pair[0]), &addr(pair[1])),
            "{} before {}",
            pair[0],
            pair[1]
        );
    }
    let cp = addr("helm.linkerd_control_plane");
    assert_eq!(
        loaded.graph.dependencies(&cp),
        [&addr("helm.linkerd_crds"), &addr("read.trust_anchor")]
    );
    // The trust anchor is only known during apply; the scheme is static.
    let NodeSpec::Helm(helm) = &loaded.plan.nodes[&cp].spec else {
        panic!("not helm")
    };
    let scope = loaded.plan.static_scope();
    match helm.values.evaluate(&scope) {
        Err(EvalError::Unknown { reference, .. }) => {
            assert_eq!(reference.to_string(), "read.trust_anchor.value")
        }
        other => panic!("expected unknown trust anchor, got {other:?}"),
    }
    let identity = helm
        .values
        .get("identity")
        .unwrap()
        .evaluate(&scope)
        .unwrap();
    assert_eq!(
        identity,
        serde_json::json!({"issuer": {"scheme": "kubernetes.io/tls"}})
    );
}

#[test]
fn podmonitors_come_after_viz_and_follow_the_linkerd_docs() {
    let loaded = load_sample(&[]);
    let monitors = addr("manifest.linkerd_podmonitors");
    assert!(loaded.graph.has_path(&addr("helm.linkerd_viz"), &monitors));
    assert!(
        loaded
            .graph
            .has_path(&addr("helm.linkerd_control_plane"), &monitors)
    );
    let objects = objects(&loaded, "manifest.linkerd_podmonitors");
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "linkerd-controller",
            "linkerd-service-mirror",
            "linkerd-proxy"
        ]
    );
    for o in &objects {
        let name = o["metadata"]["name"].as_str().unwrap();
        assert_eq!(o["kind"], "PodMonitor");
        assert_eq!(o["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(o["metadata"]["namespace"], "monitoring");
        assert_eq!(o["metadata"]["labels"]["release"], "kube-prometheus-stack");
        assert_eq!(
            o["spec"]["selector"],
            serde_json::json!({"matchLabels": {}})
        );
        let endpoints = o["spec"]["podMetricsEndpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0]["interval"], "10s");
        assert_eq!(endpoints[0]["scrapeTimeout"], "10s");
        let relabelings = endpoints[0]["relabelings"].as_array().unwrap();
        let keep = &relabelings[0];
        assert_eq!(keep["action"], "keep");
        let job = relabelings.last().unwrap();
        assert_eq!(job["targetLabel"], "job");
        assert_eq!(job["replacement"], name, "job of {name}");
    }
    assert_eq!(
        objects[0]["spec"]["namespaceSelector"],
        serde_json::json!({"matchNames": ["linkerd", "linkerd-viz"]})
    );
    assert_eq!(
        objects[0]["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["regex"],
        "admin-http"
    );
    assert_eq!(
        objects[1]["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["regex"],
        "linkerd-service-mirror;admin-http$"
    );
    assert_eq!(
        objects[2]["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["regex"],
        "^linkerd-proxy;linkerd-admin;linkerd$"
    );
    for o in &objects[1..] {
        assert_eq!(
            o["spec"]["namespaceSelector"],
            serde_json::json!({"any": true})
        );
    }
}

#[test]
fn identity_issuer_certificate_is_exactly_as_specified() {
    let loaded = load_sample(&[]);
    let objects = objects(&loaded, "manifest.identity_issuer");
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0],
        serde_json::json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "linkerd-identity-issuer", "namespace": "linkerd"},
            "spec": {
                "secretName": "linkerd-identity-issuer",
                "duration": "48h",
                "renewBefore": "25h",
                "issuerRef": {"name": "ca-issuer", "kind": "ClusterIssuer"},
                "commonName": "identity.linkerd.cluster.local",
                "dnsNames": ["identity.linkerd.cluster.local"],
                "isCA": true,
                "privateKey": {"algorithm": "ECDSA"},
                "usages": ["cert sign", "crl sign", "server auth", "client auth"]
            }
        })
    );
    let read = &loaded.plan.nodes[&addr("read.trust_anchor")];
    let NodeSpec::Read(r) = &read.spec else {
        panic!("not a read")
    };
    assert!(r.sensitive, "Secret reads are sensitive by default");
}

#[test]
fn namespaces_carry_the_linkerd_annotations_and_labels() {
    let loaded = load_sample(&[]);
    let linkerd = &objects(&loaded, "manifest.linkerd_namespace")[0];
    assert_eq!(
        linkerd["metadata"],
        serde_json::json!({
            "name": "linkerd",
            "annotations": {"linkerd.io/inject": "disabled"},
            "labels": {
                "linkerd.io/is-control-plane": "true",
                "config.linkerd.io/admission-webhooks": "disabled",
                "linkerd.io/control-plane-ns": "linkerd"
            }
        })
    );
    let viz = &objects(&loaded, "manifest.viz_namespace")[0];
    assert_eq!(
        viz["metadata"],
        serde_json::json!({
            "name": "linkerd-viz",
            "annotations": {"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-await": "enabled"},
            "labels": {"linkerd.io/extension": "viz"}
        })
    );
}

#[test]
fn viz_uses_the_existing_prometheus() {
    let loaded = load_sample(&[]);
    let NodeSpec::Helm(viz) = &loaded.plan.nodes[&addr("helm.linkerd_viz")].spec else {
        panic!("not helm")
    };
    let values = viz.values.evaluate(&loaded.plan.static_scope()).unwrap();
    assert_eq!(
        values["prometheusUrl"],
        "http://prometheus-operated.monitoring.svc.cluster.local:9090"
    );
    assert_eq!(values["prometheus"]["enabled"], false);
}

#[test]
fn dashboard_ingress_is_optional_and_overridable() {
    let off = load_sample(&[]);
    let dashboard = addr("manifest.viz_dashboard");
    assert!(off.plan.disabled.contains_key(&dashboard));
    assert!(!off.graph.contains(&dashboard));

    let on = load_sample(&[
        "viz_dashboard_ingress=true",
        "viz_dashboard_host=mesh.example.org",
    ]);
    assert!(on.graph.has_path(&addr("helm.linkerd_viz"), &dashboard));
    let objects = objects(&on, "manifest.viz_dashboard");
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Middleware", "Ingress"]);
    assert_eq!(
        objects[0]["spec"]["headers"]["customRequestHeaders"]["l5d-dst-override"],
        "web.linkerd-viz.svc.cluster.local:8084"
    );
    assert_eq!(objects[1]["spec"]["rules"][0]["host"], "mesh.example.org");
}

#[test]
fn version_pins_are_vars_and_override_from_the_command_line() {
    let loaded = load_sample(&["linkerd_control_plane_version=1.16.12"]);
    let cp = &loaded.plan.nodes[&addr("helm.linkerd_control_plane")];
    let NodeSpec::Helm(helm) = &cp.spec else {
        panic!("not helm")
    };
    let version = helm.version.as_ref().unwrap();
    assert_eq!(
        version.evaluate(&loaded.plan.static_scope()).unwrap(),
        "1.16.12"
    );
    let refs: Vec<String> = version
        .references()
        .map(|r| r.reference.to_string())
        .collect();
    assert_eq!(refs, ["var.linkerd_control_plane_version"]);
    let scope = loaded.plan.static_scope();
    let release = scope.lookup(&Reference::Node {
        address: addr("helm.linkerd_control_plane"),
        attribute: "release".into(),
    });
    assert_eq!(
        release,
        meshplan::model::Lookup::Known("linkerd-control-plane".into())
    );
    assert!(matches!(helm.values.get("identity"), Some(Value::Table(_))));
}
