//! The rollback acceptance of `meshplan apply`, exhaustively, on a small plan
//! (`tests/fixtures/sweep/plan.toml`): a 500 at every write, a wait that times out in every
//! node, both from an empty cluster and over a previous apply; every run must leave the
//! cluster and the state as they were. The same sweeps run over the sample Linkerd plan with
//! `examples/rollback_sweep` (the longer run; see docs/apply.md). Also kill -9 at 20 points
//! of applies, each followed by an apply that must converge.

#[path = "../../examples/rollback_sweep/sweep.rs"]
mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use meshplan_sandbox::{FaultAction, FaultRule, SandboxConfig};

use crate::support::root;

fn target() -> sweep::Target {
    let mut config = SandboxConfig::default();
    config.controllers.rollout_delay = Duration::from_millis(30);
    config.controllers.webhook_delay = Duration::from_millis(50);
    sweep::Target {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_meshplan")),
        kubectl: meshplan_sandbox::kubectl::kubectl_binary(),
        workdir: root().to_path_buf(),
        plan: root().join("tests/fixtures/sweep/plan.toml"),
        common: Vec::new(),
        cluster: vec![root().join("tests/fixtures/crds/cert-manager.yaml")],
        sandbox: config,
        run_limit: Duration::from_secs(120),
    }
}

fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn from_empty() -> sweep::Sweep {
    sweep::Sweep {
        start: sweep::Start::Empty,
        args: args("--var mode=green"),
        limit: None,
        first: 1,
        step: 1,
    }
}

fn over_previous() -> sweep::Sweep {
    sweep::Sweep {
        start: sweep::Start::Previous(args("--var mode=blue --var extra=true")),
        args: args("--var mode=green --var extra=false"),
        limit: None,
        first: 1,
        step: 1,
    }
}

#[test]
fn a_500_at_every_write_of_an_apply_from_empty_is_rolled_back_exactly() {
    let outcome = sweep::writes(&target(), &from_empty(), &mut |_| {});
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    eprintln!("{}", outcome.summary());
    // CRD, Namespace, Issuer, Certificate, ConfigMap, Secret, Deployment, Service, Widget,
    // two extra ConfigMaps, consumer: one run per write.
    let writes = outcome
        .writes
        .expect("the sweep ends with a successful apply");
    assert!(writes >= 12, "{outcome:#?}");
    assert_eq!(outcome.tried, writes, "{outcome:#?}");
    assert_eq!(outcome.passed, outcome.tried, "{outcome:#?}");
    // Once the Certificate was written, cert-manager issued its Secret, which the rollback
    // lists rather than deletes.
    assert!(outcome.left_in_place >= 1, "{outcome:#?}");
}

#[test]
fn a_500_at_every_write_over_a_previous_apply_restores_what_it_changed() {
    let outcome = sweep::writes(&target(), &over_previous(), &mut |_| {});
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    // Updates of settings, token, web, gadget and consumer; deletes of extra-a and extra-b.
    let writes = outcome
        .writes
        .expect("the sweep ends with a successful apply");
    assert!(writes >= 7, "{outcome:#?}");
    assert_eq!(outcome.tried, writes, "{outcome:#?}");
    assert_eq!(outcome.passed, outcome.tried, "{outcome:#?}");
}

/// Runs the wait sweep and checks which nodes timed out: those with an object that has a
/// status wait for the condition and time out; the rest (ConfigMaps, Secrets; CRDs and
/// Namespaces keep their own rule) have nothing to wait for.
fn wait_sweep(sweep: sweep::Sweep, timed_out: &[&str]) {
    let outcome = sweep::waits(&target(), &sweep, &mut |_| {});
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    assert_eq!(outcome.passed, outcome.tried, "{outcome:#?}");
    assert_eq!(outcome.tried, timed_out.len() as u64, "{outcome:#?}");
    for node in timed_out {
        assert!(
            !outcome.not_applicable.iter().any(|n| n == node),
            "{node}: {outcome:#?}"
        );
    }
}

#[test]
fn a_wait_timing_out_in_each_node_from_empty_is_rolled_back_exactly() {
    wait_sweep(
        from_empty(),
        &[
            "manifest.issuer",
            "manifest.cert",
            "manifest.web",
            "manifest.widget",
        ],
    );
}

#[test]
fn a_wait_timing_out_in_each_changed_node_over_a_previous_apply_is_rolled_back_exactly() {
    // The issuer and the Certificate are unchanged: nothing to do, nothing to wait for.
    wait_sweep(over_previous(), &["manifest.web", "manifest.widget"]);
}

/// The sweep's check is not blind: an apply left half done (`--no-rollback`) is caught, with
/// the objects it created named.
#[test]
fn the_sweep_check_catches_a_cluster_that_was_not_restored() {
    let target = target();
    let env = sweep::Env::new(&target, &sweep::Start::Empty).unwrap();
    env.sandbox.add_fault(
        FaultRule::new(
            meshplan_sandbox::WRITE_VERB,
            "",
            6,
            FaultAction::Error { code: 500 },
        )
        .all_resources()
        .except("leases")
        .persistent(sweep::FAILING_ATTEMPTS),
    );
    let run = env
        .apply(&target.plan, &args("--var mode=green --no-rollback"))
        .unwrap();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let problems = env.check(&run.stderr).unwrap_err();
    assert!(
        problems.contains("core/namespaces app is new"),
        "{problems}"
    );
    assert!(problems.contains("unfinished run"), "{problems}");
}

#[test]
fn kill_9_at_twenty_points_then_apply_converges() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, crate::apply_cmd::many_writes()).unwrap();
    let target = sweep::Target {
        plan,
        cluster: Vec::new(),
        ..target()
    };
    let out = sweep::kills(
        &target,
        sweep::KillFrom::Alternating,
        &args("--var mode=green"),
        &args("--var mode=blue"),
        20,
        12,
        0x5eed,
        &mut |_| {},
    );
    assert!(out.failures.is_empty(), "{:#?}", out.failures);
    assert_eq!((out.points, out.converged), (20, 20), "{out:#?}");
    // Some kills must have hit a run between its journal's start and end.
    assert!(
        out.mid_run >= 3,
        "only {} of 20 kills hit a running apply",
        out.mid_run
    );
}

/// SIGTERM (what CI cancellation, `timeout` and Kubernetes send) at ten drawn points of an
/// apply: each stopped run is rolled back exactly (as Ctrl-C does), and the writer lock is
/// released, so the next command needs no `meshplan state unlock`.
#[test]
fn sigterm_at_ten_drawn_points_of_an_apply_rolls_back_and_leaves_no_lock() {
    let out = sweep::signals(
        &target(),
        &from_empty(),
        "TERM",
        10,
        11,
        0x7e57,
        &mut |line| eprintln!("{line}"),
    );
    assert!(out.failures.is_empty(), "{:#?}", out.failures);
    assert_eq!(out.points, 10, "{out:#?}");
    assert_eq!(out.rolled_back + out.finished, 10, "{out:#?}");
    assert!(out.rolled_back >= 1, "{out:#?}");
}

/// SIGHUP (a closed terminal) is handled the same way.
#[test]
fn sighup_at_drawn_points_of_an_apply_rolls_back_and_leaves_no_lock() {
    let out = sweep::signals(&target(), &from_empty(), "HUP", 3, 11, 0x4a9, &mut |_| {});
    assert!(out.failures.is_empty(), "{:#?}", out.failures);
    assert_eq!(out.rolled_back + out.finished, 3, "{out:#?}");
    assert!(out.rolled_back >= 1, "{out:#?}");
}

/// Runs the retry sweep for `action` and checks that every write was failed once, retried,
/// and the apply succeeded each time.
fn retry_sweep(sweep: sweep::Sweep, action: FaultAction) -> sweep::Retries {
    let outcome = sweep::retries(&target(), &sweep, &action, &mut |_| {});
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    let writes = outcome
        .writes
        .expect("the sweep ends with an apply that had no write left to fail");
    assert_eq!(outcome.tried, writes, "{outcome:#?}");
    assert_eq!(outcome.passed, outcome.tried, "{outcome:#?}");
    assert!(outcome.retries >= outcome.passed, "{outcome:#?}");
    eprintln!("{}", outcome.summary());
    outcome
}

#[test]
fn a_500_at_every_write_is_retried_and_the_apply_succeeds_without_rollback() {
    let outcome = retry_sweep(from_empty(), FaultAction::Error { code: 500 });
    assert!(outcome.tried >= 12, "{outcome:#?}");
}

#[test]
fn a_500_at_every_write_over_a_previous_apply_is_retried_deletes_too() {
    let outcome = retry_sweep(over_previous(), FaultAction::Error { code: 500 });
    assert!(outcome.tried >= 7, "{outcome:#?}");
}

#[test]
fn a_503_with_retry_after_at_every_write_is_retried_after_the_wait_it_asks_for() {
    let outcome = retry_sweep(from_empty(), FaultAction::Error { code: 503 });
    for line in &outcome.retry_lines {
        assert!(
            line.contains(
                "HTTP 503 Service Unavailable (Retry-After: 1s); retrying in 1.0s (attempt 2 of 6)"
            ),
            "{line}"
        );
    }
}

#[test]
fn a_dropped_connection_at_every_write_is_retried_and_the_apply_succeeds() {
    let outcome = retry_sweep(from_empty(), FaultAction::Drop);
    for line in &outcome.retry_lines {
        assert!(line.contains("the connection"), "{line}");
    }
}

/// A 500 that persists through every attempt of a request still fails the step, and the
/// apply is rolled back exactly, the attempts reported on the way.
#[test]
fn a_persistent_500_is_retried_then_rolled_back() {
    let target = target();
    let env = sweep::Env::new(&target, &sweep::Start::Empty).unwrap();
    env.sandbox.add_fault(FaultRule {
        times: u64::MAX,
        ..FaultRule::new("patch", "deployments", 1, FaultAction::Error { code: 500 }).named("web")
    });
    let run = env.apply(&target.plan, &args("--var mode=green")).unwrap();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("failed and was rolled back"),
        "{}",
        run.stderr
    );
    let retried = "manifest.web: apps/v1 Deployment app/web: PATCH deployments.apps app/web: HTTP 500 Internal Server Error: Internal error occurred: injected fault; retrying in";
    for attempt in 2..=6 {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(retried) && l.contains(&format!("(attempt {attempt} of 6)"))),
            "{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("(attempt 7 of"), "{}", run.stderr);
    let patches = env
        .sandbox
        .audit()
        .iter()
        .filter(|e| e.resource == "deployments" && e.name == "web")
        .filter(|e| e.method == "PATCH" && !e.query.contains("dryRun"))
        .count();
    assert_eq!(patches, 6, "one request, six attempts");
    env.sandbox.clear_faults();
    let left = env.check(&run.stderr).unwrap();
    assert!(left.iter().all(|l| l.kind == "Secret"), "{left:#?}");
}
