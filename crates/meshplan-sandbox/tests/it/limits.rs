//! The API server's size limits, as the real kubectl meets them: a request body over 3 MiB is
//! refused with 413, a Secret or ConfigMap holding more than 1 MiB of data with 422 Invalid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use meshplan_sandbox::kubectl::Cluster;

/// A Secret `name` whose one `data` key holds `bytes` bytes (base64-encoded in the manifest).
fn secret(name: &str, bytes: usize) -> String {
    let value = BASE64.encode(vec![b'x'; bytes]);
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ndata:\n  blob: {value}\n")
}

#[test]
fn a_secret_over_one_mebibyte_is_invalid() {
    let c = Cluster::start();
    let out = c.apply("big.yaml", &secret("big", 1_500_000));
    let err = out.failed();
    assert!(
        err.contains(
            "The Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes"
        ),
        "{err}"
    );
    // Nothing was stored.
    let get = c.kubectl(&["get", "secret", "big"]);
    assert!(get.failed().contains("NotFound"), "{}", get.stderr);
    // Exactly the limit is accepted.
    let out = c.apply("edge.yaml", &secret("edge", 1_048_576));
    assert_eq!(out.ok(), "secret/edge serverside-applied\n");
}

#[test]
fn string_data_counts_towards_the_secret_limit() {
    let c = Cluster::start();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: strings\ndata:\n  a: {}\nstringData:\n  b: {}\n",
        BASE64.encode(vec![b'a'; 600_000]),
        "b".repeat(600_000)
    );
    let out = c.apply("strings.yaml", &manifest);
    assert!(
        out.failed().contains(
            "Secret \"strings\" is invalid: data: Too long: must have at most 1048576 bytes"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_configmap_over_one_mebibyte_is_invalid_as_a_whole() {
    let c = Cluster::start();
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: {}\nbinaryData:\n  b: {}\n",
        "a".repeat(700_000),
        BASE64.encode(vec![b'b'; 400_000])
    );
    let out = c.apply("cm.yaml", &manifest);
    assert!(
        out.failed().contains(
            "The ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_body_over_three_mebibytes_is_too_large() {
    let c = Cluster::start();
    // 3 MB of data is 4 MB of base64: the body is refused before the object is looked at.
    let out = c.apply("huge.yaml", &secret("huge", 3_000_000));
    let err = out.failed();
    assert!(
        err.contains(
            "Error from server (RequestEntityTooLarge): Request entity too large: limit is 3145728"
        ),
        "{err}"
    );
    let get = c.kubectl(&["get", "secret", "huge"]);
    assert!(get.failed().contains("NotFound"), "{}", get.stderr);
    // The server is still serving after refusing it.
    c.apply_cm1();
}
