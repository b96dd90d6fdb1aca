//! A lost state is not silently replaced: when the state has no records but the cluster holds
//! objects with the plan's ownership marks (the state database removed, the key file left),
//! plan and apply stop and say how to go on; `--adopt-lost-state` takes the objects over,
//! keeping the material the chart generated (webhook CA and certificate, a token) instead of
//! generating it anew.

use crate::apply_cmd::Setup;
use crate::support::root;

/// A namespace and the chart that generates material on every render.
fn material_plan() -> String {
    let chart = root().join("tests/fixtures/charts/random-material");
    format!(
        r#"
[plan]
name = "material"

[manifest.ns]
yaml = '''
apiVersion: v1
kind: Namespace
metadata:
  name: demo
'''

[helm.material]
chart = "{}"
namespace = "demo"
depends_on = ["manifest.ns"]

[helm.material.values]
hooks = false
"#,
        chart.display()
    )
}

/// The live values of the generated material.
fn material(s: &Setup) -> (String, String, String) {
    let tls = s.cluster.get_json(&["secret", "-n", "demo", "webhook-tls"]);
    let token = s.cluster.get_json(&["secret", "-n", "demo", "token"]);
    let hook = s
        .cluster
        .get_json(&["mutatingwebhookconfiguration", "random-material-webhook"]);
    (
        tls["data"]["tls.crt"].as_str().unwrap().to_owned(),
        token["data"]["token"].as_str().unwrap().to_owned(),
        hook["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// `text` without whitespace and the report's margin (reports wrap to the terminal).
fn squashed(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

/// Applies the plan, then removes the state database (the key file stays).
fn applied_then_lost() -> (Setup, (String, String, String)) {
    let s = Setup::with_plan(&material_plan());
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = material(&s);
    std::fs::remove_dir_all(s.state.join("db")).unwrap();
    assert!(s.state.join("state.key").is_file());
    (s, before)
}

#[test]
fn plan_and_apply_refuse_a_lost_state_and_say_how_to_go_on() {
    let (s, before) = applied_then_lost();
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = squashed(&err);
    for needle in [
        "has no records of plan material, but the cluster holds objects with its ownership marks",
        "the state database is missing beside an existing state.key",
        "restore the state directory from a backup",
        "--adopt-lost-state",
        "taken from the cluster instead of being generated anew",
    ] {
        assert!(text.contains(&squashed(needle)), "{needle}\n{err}");
    }
    assert!(!out.contains("to adopt"), "no change set is shown: {out}");

    // The refused plan created an empty database: remove it again for apply.
    std::fs::remove_dir_all(s.state.join("db")).unwrap();
    let writes = s.writes();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        squashed(&err).contains(&squashed("has no records of plan material")),
        "{err}"
    );
    assert_eq!(s.writes(), writes, "nothing was written: {err}");
    assert_eq!(material(&s), before);
}

#[test]
fn adopting_a_lost_state_keeps_the_generated_material_and_converges() {
    let (s, before) = applied_then_lost();
    let (code, out, err) = s.run("plan", &["--adopt-lost-state", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("adopting them"), "{err}");
    // Everything is adopted as it is: nothing is sent to the cluster.
    for line in out.lines() {
        assert!(
            !line.contains("will be updated") && !line.contains("will be created"),
            "{line}\n{out}"
        );
    }
    assert!(out.contains("will be adopted"), "{out}");

    // The plan created an empty database: remove it again for apply.
    std::fs::remove_dir_all(s.state.join("db")).unwrap();
    let writes = s.object_writes();
    let (code, out, err) = s.apply(&["--adopt-lost-state"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // It writes records to the state under the apply's Lease, and nothing to the objects.
    assert_eq!(
        s.object_writes(),
        writes,
        "an adoption writes nothing: {err}"
    );
    assert_eq!(material(&s), before, "the generated material is kept");

    // The state is whole again: records, and a plan with nothing to do.
    let (code, out, err) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("webhook-tls"), "{out}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}
