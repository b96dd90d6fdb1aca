//! Valid plans under `tests/fixtures/valid/`: the model dump is snapshotted, and evaluation
//! follows the interpolation rules (a lone reference keeps its type, `$${` is literal).

use meshplan::load::{LoadRequest, LoadedPlan, load};
use meshplan::model::{Address, EvalError, NodeSpec, dump_plan};

use crate::support::{redact, root};

fn load_fixture(path: &str, vars: &[&str]) -> LoadedPlan {
    let request = LoadRequest {
        plan: root().join(path),
        vars: vars.iter().map(|v| v.to_string()).collect(),
        var_files: Vec::new(),
    };
    match load(&request) {
        Ok(loaded) => loaded,
        Err(diags) => panic!("{}", diags.render_short()),
    }
}

#[test]
fn all_forms_dump() {
    let loaded = load_fixture("tests/fixtures/valid/all_forms/plan.toml", &[]);
    insta::assert_snapshot!(redact(&dump_plan(&loaded.plan)));
}

#[test]
fn ignore_rules_dump() {
    let loaded = load_fixture("tests/fixtures/valid/ignore_rules/plan.toml", &[]);
    insta::assert_snapshot!(redact(&dump_plan(&loaded.plan)));
}

#[test]
fn sample_plan_dump() {
    let loaded = load_fixture("plans/linkerd.toml", &["viz_dashboard_ingress=true"]);
    insta::assert_snapshot!(redact(&dump_plan(&loaded.plan)));
}

#[test]
fn interpolation_rules() {
    let loaded = load_fixture("tests/fixtures/valid/all_forms/plan.toml", &["replicas=5"]);
    let scope = loaded.plan.static_scope();
    let node = |a: &str| &loaded.plan.nodes[&Address::parse(a).unwrap()];

    let NodeSpec::Manifest(tables) = &node("manifest.tables").spec else {
        panic!()
    };
    let ns = tables.objects[0].value.evaluate(&scope).unwrap();
    assert_eq!(
        ns["metadata"]["labels"],
        serde_json::json!({"team": "mesh", "tier": "infra"})
    );
    let deploy = tables.objects[1].value.evaluate(&scope).unwrap();
    assert_eq!(
        deploy["spec"]["replicas"], 5,
        "a lone reference keeps the number type"
    );
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"]["team"],
        "mesh"
    );

    let NodeSpec::Manifest(inline) = &node("manifest.inline").spec else {
        panic!()
    };
    let cm = inline.objects[0].value.evaluate(&scope).unwrap();
    assert_eq!(cm["data"]["literal"], "${not.a.reference}");
    assert_eq!(cm["data"]["mixed"], "v1.2.3-r5");
    let secret = inline.objects[1].value.evaluate(&scope).unwrap();
    assert_eq!(secret["stringData"]["release"], "web-release");

    let NodeSpec::Helm(helm) = &node("helm.repo_chart").spec else {
        panic!()
    };
    let image = helm.values.get("image").unwrap().evaluate(&scope).unwrap();
    assert_eq!(image, serde_json::json!({"tag": "v1.2.3"}));
    assert_eq!(
        helm.values.get("hosts").unwrap().evaluate(&scope).unwrap()[1],
        "b.example.org"
    );
    assert_eq!(
        helm.values.get("ratio").unwrap().evaluate(&scope).unwrap(),
        0.5
    );
    assert!(matches!(
        helm.values.get("token").unwrap().evaluate(&scope),
        Err(EvalError::Unknown { .. })
    ));
    let base = helm.values_files[0].values.evaluate(&scope).unwrap();
    assert_eq!(base["service"]["annotations"]["team"], "mesh");

    let NodeSpec::Manifest(file) = &node("manifest.from_file").spec else {
        panic!()
    };
    let role = file.objects[1].value.evaluate(&scope).unwrap();
    assert_eq!(role["metadata"]["name"], "runner-1.2.3");
}

#[test]
fn references_in_yaml_files_point_into_the_yaml_file() {
    let loaded = load_fixture("tests/fixtures/valid/all_forms/plan.toml", &[]);
    let node = &loaded.plan.nodes[&Address::parse("manifest.from_file").unwrap()];
    let refs = node.references();
    assert_eq!(refs.len(), 1);
    let span = &refs[0].span;
    assert!(
        loaded
            .sources
            .name(span.file)
            .ends_with("manifests/multi.yaml")
    );
    assert_eq!(loaded.sources.slice(span), "${var.version}");
    assert_eq!(
        loaded.sources.line_col(span.file, span.range.start),
        (10, 16)
    );
}

#[test]
fn references_in_inline_yaml_point_into_the_plan() {
    let loaded = load_fixture("tests/fixtures/valid/all_forms/plan.toml", &[]);
    let node = &loaded.plan.nodes[&Address::parse("manifest.inline").unwrap()];
    let shown: Vec<(String, (usize, usize))> = node
        .references()
        .iter()
        .map(|r| {
            (
                loaded.sources.slice(&r.span).to_string(),
                loaded.sources.line_col(r.span.file, r.span.range.start),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("${var.version}".to_string(), (31, 12)),
            ("${var.replicas}".to_string(), (31, 28)),
            ("${helm.repo_chart.release}".to_string(), (39, 13)),
        ]
    );
}

#[test]
fn helm_values_merge_files_then_values() {
    let loaded = load_fixture("tests/fixtures/valid/all_forms/plan.toml", &[]);
    let NodeSpec::Helm(helm) = &loaded.plan.nodes[&Address::parse("helm.repo_chart").unwrap()].spec
    else {
        panic!()
    };
    // The read value is unknown until apply; everything else merges.
    let scope = loaded.plan.static_scope();
    assert!(matches!(
        helm.merged_values(&scope),
        Err(EvalError::Unknown { .. })
    ));
    struct WithToken<'a>(meshplan::model::StaticScope<'a>);
    impl meshplan::model::Scope for WithToken<'_> {
        fn lookup(&self, r: &meshplan::model::Reference) -> meshplan::model::Lookup {
            match r.to_string().as_str() {
                "read.token.value" => meshplan::model::Lookup::Known("s3cret".into()),
                _ => self.0.lookup(r),
            }
        }
    }
    let merged = helm.merged_values(&WithToken(scope)).unwrap();
    assert_eq!(
        merged,
        serde_json::json!({
            "image": {"repository": "registry.example.com/web", "tag": "v1.2.3"},
            "service": {"port": 8080, "annotations": {"team": "mesh"}},
            "replicaCount": 2,
            "ratio": 0.5,
            "hosts": ["a.example.org", "b.example.org"],
            "token": "s3cret"
        })
    );
}

#[test]
fn object_refs_of_the_sample_plan() {
    let loaded = load_fixture("plans/linkerd.toml", &[]);
    let scope = loaded.plan.static_scope();
    let mut refs = Vec::new();
    for node in loaded.plan.nodes.values() {
        match &node.spec {
            NodeSpec::Manifest(m) => {
                for o in &m.objects {
                    refs.push(
                        o.object_ref(node.namespace.as_ref(), &scope)
                            .unwrap()
                            .short()
                            .to_string(),
                    );
                }
            }
            NodeSpec::Read(r) => refs.push(format!(
                "read {}",
                r.object_ref(node, &scope).unwrap().short()
            )),
            NodeSpec::Check(c) => refs.push(format!(
                "check {}",
                c.object_ref(node, &scope).unwrap().short()
            )),
            NodeSpec::Helm(_) => {}
        }
    }
    assert_eq!(
        refs,
        [
            "check ClusterIssuer/ca-issuer",
            "ClusterIssuer/ca-issuer",
            "Certificate/linkerd/linkerd-identity-issuer",
            "Namespace/linkerd",
            "PodMonitor/monitoring/linkerd-controller",
            "PodMonitor/monitoring/linkerd-service-mirror",
            "PodMonitor/monitoring/linkerd-proxy",
            "Certificate/cert-manager/root-ca",
            "ClusterIssuer/selfsigned",
            "Namespace/linkerd-viz",
            "read Secret/linkerd/linkerd-identity-issuer",
        ]
    );
}
