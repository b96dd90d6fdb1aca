//! Authentication and transport: the bearer token, 401 Status bodies, and HTTPS with a CA
//! and client certificates the sandbox generates, for kubectl and kube-rs.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, PostParams};
use meshplan_sandbox::{AuthMode, BlockingSandbox, Sandbox, SandboxConfig, start};
use serde_json::json;

use crate::raw::Conn;
use meshplan_sandbox::kubectl::{CM1, Cluster};

const TOKEN: &str = "auth-test-token";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

fn unauthorized_body() -> serde_json::Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
           "message":"Unauthorized","reason":"Unauthorized","code":401})
}

#[test]
fn no_or_wrong_token_gets_401_in_strict_mode() {
    let sb = BlockingSandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        auth: AuthMode::Strict,
        ..SandboxConfig::api_only()
    })
    .unwrap();
    for token in [None, Some("wrong")] {
        let mut conn = Conn::open(sb.addr(), token);
        let a = conn.request("GET", CMS, JSON, b"");
        assert_eq!(a.code, 401, "{token:?}");
        assert_eq!(a.body, unauthorized_body());
        let a = conn.request("GET", "/api", JSON, b"");
        assert_eq!(a.code, 401);
        let a = conn.request("POST", CMS, JSON, br#"{"metadata":{"name":"x"}}"#);
        assert_eq!(a.code, 401);
    }
    assert!(sb.object("", "configmaps", "default", "x").is_none());
    let mut conn = Conn::open(sb.addr(), Some(TOKEN));
    assert_eq!(conn.request("GET", CMS, JSON, b"").code, 200);
    // Health and version stay public, as with anonymous auth on real clusters.
    let mut anon = Conn::open(sb.addr(), None);
    assert_eq!(anon.request("GET", "/version", JSON, b"").code, 200);
    // 401s are audited too.
    let unauthorized = sb.audit().into_iter().filter(|e| e.status == 401).count();
    assert_eq!(unauthorized, 6);
}

#[test]
fn default_mode_refuses_a_wrong_token_and_serves_plain_http_without_one() {
    let sb = BlockingSandbox::start(SandboxConfig {
        token: Some(TOKEN.into()),
        ..SandboxConfig::api_only()
    })
    .unwrap();
    let mut wrong = Conn::open(sb.addr(), Some("wrong"));
    let a = wrong.request("GET", CMS, JSON, b"");
    assert_eq!(a.code, 401);
    assert_eq!(a.body, unauthorized_body());
    // kubectl never sends credentials to an http:// server: a request without any is served.
    let mut none = Conn::open(sb.addr(), None);
    assert_eq!(none.request("GET", CMS, JSON, b"").code, 200);
    let mut right = Conn::open(sb.addr(), Some(TOKEN));
    assert_eq!(right.request("GET", CMS, JSON, b"").code, 200);
    let users: Vec<(u16, String)> = sb.audit().into_iter().map(|e| (e.status, e.user)).collect();
    assert_eq!(
        users,
        [
            (401, String::new()),
            (200, "system:anonymous".to_string()),
            (200, "meshplan-sandbox".to_string())
        ]
    );
    assert!(sb.kubeconfig_yaml().contains(&format!("token: {TOKEN}")));
}

fn tls_cluster() -> Cluster {
    Cluster::start_with(SandboxConfig {
        tls: true,
        ..SandboxConfig::api_only()
    })
}

#[test]
fn kubectl_over_tls_with_client_certificates() {
    let c = tls_cluster();
    let kubeconfig = std::fs::read_to_string(&c.kubeconfig).unwrap();
    assert!(kubeconfig.contains("server: https://127.0.0.1:"));
    assert!(kubeconfig.contains("certificate-authority-data: "));
    assert!(kubeconfig.contains("client-certificate-data: "));
    assert!(kubeconfig.contains("client-key-data: "));
    let version = c.kubectl(&["version", "-o", "json"]);
    assert!(version.ok().contains("v1.32.0"));
    let f = c.file("cm1.yaml", CM1);
    let out = c.kubectl(&["apply", "--server-side", "-f", &f]);
    assert!(out.ok().contains("configmap/cm1 serverside-applied"));
    let names = c.kubectl(&["get", "ns", "-o", "name"]);
    assert!(names.ok().contains("namespace/kube-system"));

    // The client certificate alone authenticates: a kubeconfig without the token works.
    let cert_only: String = kubeconfig
        .lines()
        .filter(|l| !l.trim_start().starts_with("token:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let cert_only_path = c.file("cert-only.kubeconfig", &cert_only);
    let run = c
        .command(&["get", "cm", "cm1", "-o", "name"])
        .env("KUBECONFIG", &cert_only_path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // A wrong token is refused, even with the client certificate.
    let wrong = kubeconfig
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("token:") {
                "    token: wrong\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>();
    let wrong_path = c.file("wrong.kubeconfig", &wrong);
    let run = c
        .command(&["get", "cm"])
        .env("KUBECONFIG", &wrong_path)
        .env("KUBECACHEDIR", c.dir.path().join("cache-wrong"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
}

async fn kube_client(sandbox: &Sandbox, dir: &std::path::Path) -> Client {
    let path = dir.join("kubeconfig");
    sandbox.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_over_tls_and_with_the_token_in_strict_mode() {
    for config in [
        SandboxConfig {
            tls: true,
            ..SandboxConfig::api_only()
        },
        SandboxConfig {
            auth: AuthMode::Strict,
            ..SandboxConfig::api_only()
        },
    ] {
        let tls = config.tls;
        let sb = start(config).await.unwrap();
        assert_eq!(sb.url().starts_with("https://"), tls);
        let dir = tempfile::tempdir().unwrap();
        let client = kube_client(&sb, dir.path()).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let names: Vec<String> = namespaces
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert!(names.contains(&"kube-system".to_string()));
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "k"}, "data": {"a": "1"}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        assert!(sb.object("", "configmaps", "default", "k").is_some());
        sb.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_a_token_or_certificate_gets_401() {
    let sb = start(SandboxConfig {
        tls: true,
        ..SandboxConfig::api_only()
    })
    .await
    .unwrap();
    let tls = sb.credentials().tls.clone().unwrap();
    let mut config = kube::Config::new(sb.url().parse().unwrap());
    config.root_cert = Some(vec![pem_der(&tls.ca_crt)]);
    let client = Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    match cms.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 401);
            assert_eq!(status.reason, "Unauthorized");
            assert_eq!(status.message, "Unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    sb.shutdown().await.unwrap();
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn a_data_directory_keeps_the_token_and_the_tls_material_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        data_dir: Some(dir.path().to_path_buf()),
        tls: true,
        auth: AuthMode::Strict,
        ..SandboxConfig::api_only()
    };
    let first = BlockingSandbox::start(config.clone()).unwrap();
    let token = first.token().unwrap().to_string();
    let ca = first.credentials().tls.as_ref().unwrap().ca_crt.clone();
    drop(first);
    let second = BlockingSandbox::start(config).unwrap();
    assert_eq!(second.token(), Some(token.as_str()));
    assert_eq!(second.credentials().tls.as_ref().unwrap().ca_crt, ca);
    // A plain-HTTP restart keeps the token too, and drops nothing from the file.
    drop(second);
    let plain = BlockingSandbox::start(SandboxConfig {
        data_dir: Some(dir.path().to_path_buf()),
        auth: AuthMode::Strict,
        ..SandboxConfig::api_only()
    })
    .unwrap();
    assert_eq!(plain.token(), Some(token.as_str()));
    assert!(plain.credentials().tls.is_none());
    let mut conn = Conn::open(plain.addr(), Some(&token));
    assert_eq!(conn.request("GET", CMS, JSON, b"").code, 200);
    drop(plain);
    let again = BlockingSandbox::start(SandboxConfig {
        data_dir: Some(dir.path().to_path_buf()),
        tls: true,
        ..SandboxConfig::api_only()
    })
    .unwrap();
    assert_eq!(again.credentials().tls.as_ref().unwrap().ca_crt, ca);
}
