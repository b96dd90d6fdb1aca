//! Requests to a cluster that misbehaves: a server that accepts connections and never
//! answers ends the command within `--request-timeout`, with exit 1 naming the server; a
//! write the server holds past the timeout fails its step (then the apply rolls back); reads
//! answered 503 while planning are retried, the plan goes through.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshplan_sandbox::{FaultAction, FaultRule};

use crate::apply_cmd::{BIN, SMALL, Setup, decode, dump};
use crate::support::root;

/// How long a child may run before the test gives up on it (far above the timeouts tested).
const DEADLINE: Duration = Duration::from_secs(90);

/// A TCP server on 127.0.0.1 that accepts every connection, reads what comes and never
/// answers, until dropped.
struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(true).ok();
                        open.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                let mut buf = [0u8; 4096];
                for s in &mut open {
                    let _ = s.read(&mut buf);
                }
            }
        });
        Self { port, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `command` to its end, killing it (our child, by pid) past [`DEADLINE`].
fn run_bounded(mut command: Command) -> (i32, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return decode(child.wait_with_output().unwrap());
        }
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            let (_, out, err) = decode(out);
            panic!("the command did not end:\n{out}\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_that_never_answers_ends_plan_within_the_request_timeout() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        meshplan_sandbox::kubeconfig_yaml(&server.url(), None, None),
    )
    .unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, SMALL).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root())
        .arg("plan")
        .arg(&plan)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--request-timeout", "2s"]);
    let (code, out, err) = run_bounded(cmd);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "the cluster at {} did not answer within 2s",
            server.url()
        )),
        "{err}"
    );
    assert!(err.contains("--request-timeout"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_bad_request_timeout_is_refused_by_the_command_line() {
    let (code, _, err) =
        crate::support::run(&["plan", "plans/linkerd.toml", "--request-timeout", "soon"]);
    // A usage error is bad input: exit 1 (2 means "there are changes").
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a duration: \"soon\""), "{err}");
}

#[test]
fn a_write_the_server_holds_fails_its_step_within_the_timeout_and_is_rolled_back() {
    let s = Setup::with_plan(SMALL);
    let before = dump(&s.cluster);
    // Every write of `settings` is held for ten minutes.
    s.cluster.sandbox.add_fault(FaultRule {
        times: u64::MAX,
        ..FaultRule::new(
            meshplan_sandbox::WRITE_VERB,
            "configmaps",
            1,
            FaultAction::Latency { ms: 600_000 },
        )
        .named("settings")
    });
    let (code, out, err) = run_bounded(s.command(
        "apply",
        &s.plan,
        &["--auto-approve", "--request-timeout", "2s"],
    ));
    assert_eq!(code, 1, "{out}\n{err}");
    let url = s.cluster.sandbox.url();
    assert!(
        err.contains("did not answer within 2s") && err.contains(url.trim_end_matches('/')),
        "{err}"
    );
    assert!(err.contains("failed and was rolled back"), "{err}");
    // The held write was sent once: a request that got no answer is not sent again.
    let held = s
        .cluster
        .sandbox
        .audit()
        .iter()
        .filter(|e| e.name == "settings" && e.method == "PATCH" && !e.query.contains("dryRun"))
        .count();
    assert!(held <= 1, "{held}");
    s.cluster.sandbox.clear_faults();
    assert_eq!(dump(&s.cluster), before, "{err}");
}

#[test]
fn reads_answered_503_while_planning_are_retried_and_the_plan_goes_through() {
    let s = Setup::with_plan(SMALL);
    // The first two reads of the namespace `app` are answered 503.
    s.cluster.sandbox.add_fault(FaultRule {
        times: 2,
        ..FaultRule::new("get", "namespaces", 1, FaultAction::Error { code: 503 }).named("app")
    });
    let (code, out, err) = s.run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("Plan: 4 to add"), "{out}");
    assert!(
        err.contains("note: GET namespaces app: HTTP 503 Service Unavailable (Retry-After: 1s); retrying in 1.0s (attempt 2 of 6)"),
        "{err}"
    );
    assert!(err.contains("(attempt 3 of 6)"), "{err}");
}

#[test]
fn a_retried_write_is_a_retrying_event_in_json_progress() {
    let s = Setup::with_plan(SMALL);
    s.cluster.sandbox.add_fault(
        FaultRule::new(
            meshplan_sandbox::WRITE_VERB,
            "configmaps",
            1,
            FaultAction::Error { code: 500 },
        )
        .named("settings"),
    );
    let (code, out, err) = s.apply(&["--output", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let retrying: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "retrying").collect();
    assert_eq!(retrying.len(), 1, "{out}");
    let e = retrying[0];
    assert_eq!(e["node"], "manifest.config");
    assert_eq!(e["object"]["name"], "settings");
    assert_eq!(e["request"], "PATCH configmaps app/settings");
    assert_eq!(
        e["reason"],
        "HTTP 500 Internal Server Error: Internal error occurred: injected fault"
    );
    assert_eq!(
        (e["attempt"].as_u64(), e["attempts"].as_u64()),
        (Some(2), Some(6))
    );
    assert!(
        e["delay_ms"]
            .as_u64()
            .is_some_and(|d| (100..=200).contains(&d)),
        "{e}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["summary"]["outcome"], "succeeded");
}
