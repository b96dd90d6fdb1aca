//! Objects over the API server's size limits: a Secret of more than 1 MiB of data, and a body
//! over 3 MiB, fail the apply with the server's words, naming the object and the limit, and
//! the apply is rolled back; a Secret that exists meets the limit at the plan's dry run.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::apply_cmd::{SMALL, Setup, dump};

/// [`SMALL`] and a node whose manifest file holds a Secret `big` of `bytes` bytes of data, in
/// the namespace the plan creates (so the plan cannot dry-run it: apply meets the limit after
/// its first writes).
fn with_a_secret(bytes: usize) -> Setup {
    let s = Setup::with_plan(&format!(
        "{SMALL}\n[manifest.secret]\nnamespace = \"app\"\ndepends_on = [\"manifest.config\"]\nfile = \"big.yaml\"\n"
    ));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: big\ndata:\n  blob: {}\n",
        BASE64.encode(vec![b'x'; bytes])
    );
    std::fs::write(s.cluster.dir.path().join("big.yaml"), secret).unwrap();
    s
}

/// `text` without whitespace and the report's margin.
fn squashed(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

fn assert_refused_and_rolled_back(s: &Setup, needle: &str) {
    let before = dump(&s.cluster);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.len() < 8192, "{} bytes of errors", err.len());
    let text = squashed(&err);
    for needle in ["manifest.secret", "Secret app/big", needle] {
        assert!(text.contains(&squashed(needle)), "{needle}\n{err}");
    }
    assert!(err.contains("rolled back"), "{err}");
    // What the apply created before it met the limit is gone again.
    assert_eq!(dump(&s.cluster), before, "{err}");
}

#[test]
fn a_secret_over_one_mebibyte_fails_the_apply_naming_it_and_the_limit_and_rolls_back() {
    let s = with_a_secret(1_500_000);
    assert_refused_and_rolled_back(
        &s,
        "Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes",
    );
}

#[test]
fn a_body_over_three_mebibytes_fails_the_apply_naming_the_limit_and_rolls_back() {
    let s = with_a_secret(3_000_000);
    assert_refused_and_rolled_back(&s, "Request entity too large: limit is 3145728");
}

#[test]
fn plan_meets_the_secret_limit_at_the_dry_run_of_an_existing_secret() {
    let s = Setup::with_plan(
        "[plan]\nname = \"big\"\n\n[manifest.secret]\nnamespace = \"default\"\nfile = \"big.yaml\"\n",
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: big\ndata:\n  blob: {}\n",
        BASE64.encode(vec![b'x'; 1_500_000])
    );
    std::fs::write(s.cluster.dir.path().join("big.yaml"), secret).unwrap();
    // The Secret exists (small): the plan asks the server for a dry run of the new body. (A
    // Secret to create is planned without one; its apply meets the limit, as above.)
    s.cluster
        .apply(
            "small.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: big\n  namespace: default\ndata:\n  other: eHg=\n",
        )
        .ok();
    let writes = s.writes();
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = squashed(&err);
    for needle in [
        "manifest.secret",
        "Secret default/big",
        "Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes",
    ] {
        assert!(text.contains(&squashed(needle)), "{needle}\n{err}");
    }
    assert_eq!(s.writes(), writes, "{err}");
}
