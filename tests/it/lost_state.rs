//! A lost state is not silently replaced: when the state has no records but the cluster holds
//! objects with the plan's ownership marks (the state database removed with the key file left,
//! an empty state, the Secrets of a state in the cluster deleted), plan and apply stop, count
//! the objects and say how to go on; `--adopt-lost-state` takes the objects over, keeping the
//! material the chart generated (webhook CA and certificate, a token) instead of generating it
//! anew, and a change set saved with it (`plan --out`) carries the adoption to `apply FILE`.
//! Objects with another plan's marks are not this plan's lost state.

use std::process::{Command, Stdio};

use crate::apply_cmd::Setup;
use crate::state_backend::{Env, KEY};
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

/// The records `state list` shows (one line per object, after the lineage line).
fn record_count(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| l.starts_with("manifest.") || l.starts_with("helm."))
        .count()
}

/// Applies the plan, then removes the state database (the key file stays); the generated
/// material and the number of objects recorded.
fn applied_then_lost() -> (Setup, (String, String, String), usize) {
    let s = Setup::with_plan(&material_plan());
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = material(&s);
    let (code, listing, err) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let recorded = record_count(&listing);
    assert!(recorded > 3, "{listing}");
    std::fs::remove_dir_all(s.state.join("db")).unwrap();
    assert!(s.state.join("state.key").is_file());
    (s, before, recorded)
}

#[test]
fn plan_and_apply_refuse_a_lost_state_and_say_how_to_go_on() {
    let (s, before, recorded) = applied_then_lost();
    let (code, out, err) = s.run("plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = squashed(&err);
    for needle in [
        format!(
            "has no records of plan material, but the cluster holds {recorded} objects with its ownership marks (label app.kubernetes.io/managed-by=meshplan, annotation meshplan.io/plan=material), e.g."
        ),
        "v1 Namespace demo".to_owned(),
        "the state database is missing beside an existing state.key".to_owned(),
        format!(
            "restore the state directory {} from a backup",
            s.state.display()
        ),
        "--adopt-lost-state".to_owned(),
        "plan --out FILE --adopt-lost-state saves the adoption for apply FILE".to_owned(),
        "taken from the cluster instead of being generated anew".to_owned(),
    ] {
        assert!(text.contains(&squashed(&needle)), "{needle}\n{err}");
    }
    assert!(!out.contains("to adopt"), "no change set is shown: {out}");

    // The refused plan left an empty database: an empty state over the plan's objects is
    // refused all the same.
    assert!(s.state.join("db").exists());
    let writes = s.writes();
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = squashed(&err);
    assert!(
        text.contains(&squashed(&format!(
            "has no records of plan material, but the cluster holds {recorded} objects"
        ))),
        "{err}"
    );
    assert!(!text.contains(&squashed("database is missing")), "{err}");
    assert_eq!(s.writes(), writes, "nothing was written: {err}");
    assert_eq!(material(&s), before);
}

#[test]
fn adopting_a_lost_state_keeps_the_generated_material_and_converges() {
    let (s, before, recorded) = applied_then_lost();
    let (code, out, err) = s.run("plan", &["--adopt-lost-state", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        squashed(&err).contains(&squashed(&format!(
            "the cluster holds {recorded} objects of this plan"
        ))) && err.contains("adopting them"),
        "{err}"
    );
    // Everything is adopted as it is: nothing is sent to the cluster.
    for line in out.lines() {
        assert!(
            !line.contains("will be updated") && !line.contains("will be created"),
            "{line}\n{out}"
        );
    }
    assert!(out.contains("will be adopted"), "{out}");

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
    assert_eq!(record_count(&out), recorded, "{out}");
    assert!(out.contains("webhook-tls"), "{out}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_change_set_saved_with_the_adoption_applies_without_the_flag() {
    let (s, before, recorded) = applied_then_lost();
    let saved = s.cluster.dir.path().join("adopt.json");
    let saved_arg = saved.to_str().unwrap();

    // Saved without the flag: refused, nothing saved.
    let (code, out, err) = s.run("plan", &["--out", saved_arg]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(!saved.exists());

    let (code, out, err) = s.run("plan", &["--adopt-lost-state", "--out", saved_arg]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("will be adopted"), "{out}");
    let loaded = meshplan::diff::saved::load(&saved).unwrap();
    assert!(loaded.adopt_lost_state);

    // The database the plan created is still there: apply FILE adopts as the plan did.
    let writes = s.object_writes();
    let out = s.command("apply", &saved, &[]).output().unwrap();
    let (code, out, err) = crate::apply_cmd::decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("adopting them"), "{err}");
    assert_eq!(
        s.object_writes(),
        writes,
        "an adoption writes nothing: {err}"
    );
    assert_eq!(material(&s), before, "the generated material is kept");
    let (code, out, err) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(record_count(&out), recorded, "{out}");
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// The material plan with its state in the cluster.
fn material_plan_in_the_cluster() -> String {
    material_plan().replace(
        "[manifest.ns]",
        "[state]\nbackend = \"kubernetes\"\nlease_duration = \"3s\"\n\n[manifest.ns]",
    )
}

/// The live values of the generated material (a state in the cluster).
fn material_in(env: &Env) -> (String, String) {
    let tls = env
        .cluster
        .get_json(&["secret", "-n", "demo", "webhook-tls"]);
    let hook = env
        .cluster
        .get_json(&["mutatingwebhookconfiguration", "random-material-webhook"]);
    (
        tls["data"]["tls.crt"].as_str().unwrap().to_owned(),
        hook["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[test]
fn an_empty_state_in_the_cluster_over_the_plans_objects_is_refused_then_adopted_from_a_saved_change_set()
 {
    let env = Env::new(&material_plan_in_the_cluster());
    let cwd = env.workdir("a");
    let (code, out, err) = env.apply(&cwd, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = material_in(&env);
    let (code, listing, err) = env.state(&cwd, "list", &[]);
    assert_eq!(code, 0, "{err}");
    let recorded = record_count(&listing);
    assert!(recorded > 3, "{listing}");

    // The state's Secrets are deleted: the state is empty, the objects stay.
    let deleted = env.cluster.kubectl(&[
        "delete",
        "secrets",
        "-n",
        "meshplan-system",
        "-l",
        "meshplan.io/state=material",
    ]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(env.state_secrets("material").0.len(), 0);

    let (code, out, err) = env.run(&cwd, "plan", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = squashed(&err);
    for needle in [
        format!(
            "the state at kubernetes:meshplan-system/material has no records of plan material, but the cluster holds {recorded} objects with its ownership marks"
        ),
        "restore the state's Secrets in namespace meshplan-system (meshplan-state-material and its chunks, label meshplan.io/state=material) from a backup of the cluster".to_owned(),
        "--adopt-lost-state".to_owned(),
    ] {
        assert!(text.contains(&squashed(&needle)), "{needle}\n{err}");
    }
    let writes = env.writes().len();
    let (code, out, err) = env.apply(&cwd, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        squashed(&err).contains(&squashed("has no records of plan material")),
        "{err}"
    );
    assert_eq!(env.writes().len(), writes, "nothing was written: {err}");

    // Adopted through a saved change set: the plan writes nothing (a state in the cluster is
    // read only while planning), and apply FILE adopts without the flag.
    let saved = cwd.join("adopt.json");
    let saved_arg = saved.to_str().unwrap();
    let (code, out, err) = env.run(&cwd, "plan", &["--adopt-lost-state", "--out", saved_arg]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.writes().len(), writes, "the plan wrote: {err}");
    let out = Command::new(crate::apply_cmd::BIN)
        .current_dir(&cwd)
        .arg("apply")
        .arg(&saved)
        .arg("--kubeconfig")
        .arg(&env.cluster.kubeconfig)
        .env("MESHPLAN_STATE_KEY", KEY)
        .env("NO_COLOR", "1")
        .env_remove("MESHPLAN_STATE_BACKEND")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, out, err) = crate::apply_cmd::decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    let objects: Vec<String> = env.writes()[writes..]
        .iter()
        .filter(|w| !w.contains(" leases ") && !w.contains(" secrets meshplan-system/"))
        .filter(|w| !w.contains(" namespaces /meshplan-system"))
        .cloned()
        .collect();
    assert_eq!(
        objects,
        Vec::<String>::new(),
        "an adoption writes no object: {err}"
    );
    assert_eq!(material_in(&env), before, "the generated material is kept");
    let (code, listing, err) = env.state(&cwd, "list", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(record_count(&listing), recorded, "{listing}");
    let (code, out, err) = env.run(&cwd, "plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn objects_of_another_plan_are_not_this_plans_lost_state() {
    let s = Setup::with_plan(&material_plan());
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The same objects under another plan name, with a state of its own (empty).
    let other = s.cluster.dir.path().join("other.toml");
    std::fs::write(
        &other,
        material_plan().replace("name = \"material\"", "name = \"other\""),
    )
    .unwrap();
    let out = Command::new(crate::apply_cmd::BIN)
        .current_dir(root())
        .arg("plan")
        .arg(&other)
        .arg("--kubeconfig")
        .arg(&s.cluster.kubeconfig)
        .arg("--state")
        .arg(s.cluster.dir.path().join("other-state"))
        .arg("--detailed-exitcode")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, out, err) = crate::apply_cmd::decode(out);
    assert_eq!(
        code, 2,
        "planned, with changes (the marks of plan other):\n{out}\n{err}"
    );
    assert!(!err.contains("no records of plan"), "{err}");
    assert!(!err.contains("adopting"), "{err}");
    assert!(out.contains("will be updated"), "{out}");
}
