//! `meshplan apply` and `destroy` as a user at a terminal runs them: the confirmation prompt
//! on a real pseudo-terminal (util-linux `script`; `yes`, another answer, Ctrl-C), Ctrl-C
//! while planning (the writer lock is released), Ctrl-C while the apply waits between two
//! phases, and Ctrl-C twice (the second one, while a write is in flight or during the
//! rollback, stops at once and keeps the journal, which `meshplan rollback` finishes), and the
//! live progress view (one redrawn line per running node).
//!
//! Every child process is bounded by a generous deadline: past it the test kills that child
//! (by its own pid) and fails, so a prompt that never gets its answer cannot hang the suite.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshplan_sandbox::{FaultAction, FaultRule};

use crate::apply_cmd::{PHASED, SMALL, Setup, decode, dump};
use crate::support::root;

/// How long any one child may run before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(90);

/// Collects everything `pipe` yields, in the background.
fn collect(mut pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    text
}

/// Polls `done` until it holds; past the deadline kills `child` and fails with `what`.
fn wait_until(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            // One last look: the condition may have become true just before the exit.
            if done() {
                return;
            }
            panic!("the child exited ({status}) before: {what}");
        }
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            child.wait().ok();
            panic!("gave up waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit; past the deadline kills it and fails.
fn wait_exit(child: &mut Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            child.wait().ok();
            panic!("pid {} did not exit in time", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt(child: &Child) {
    signal(child, "INT");
}

/// Sends `name` (`INT`, `TERM`, `HUP`) to our child.
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Quotes `word` for `sh -c`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `exec meshplan ...` for `script -c`: meshplan is the terminal's only process (a shell
/// around it would also take a Ctrl-C typed on the terminal, and exit by it).
fn exec_line(inner: &Command) -> String {
    let mut line = format!(
        "exec {}",
        shell_quote(inner.get_program().to_str().unwrap())
    );
    for arg in inner.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(arg.to_str().unwrap()));
    }
    line
}

/// `script` running `inner` on a pseudo-terminal, its output collected.
fn spawn_on_terminal(inner: &Command) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &exec_line(inner), "/dev/null"])
        .current_dir(root())
        .env("SHELL", "/bin/sh")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let shown = collect(child.stdout.take().unwrap());
    let errors = collect(child.stderr.take().unwrap());
    (child, shown, errors)
}

/// What the prompt asks, for `apply` and `destroy`.
const PROMPT: &str = "Only 'yes' will be accepted: ";

/// Runs `meshplan SUB PLAN` (no `--auto-approve`) on a pseudo-terminal, waits for the
/// confirmation prompt, types `typed` (a line, or `\x03`: Ctrl-C). Returns the exit code and
/// everything the terminal showed (stdout and stderr together, carriage returns removed).
fn on_terminal(s: &Setup, sub: &str, typed: &str) -> (i32, String) {
    let since = s.cluster.sandbox.audit().len();
    let (mut child, shown, errors) = spawn_on_terminal(&s.command(sub, &s.plan, &[]));
    wait_until(&mut child, "the confirmation prompt", || {
        shown.lock().unwrap().contains(PROMPT)
    });
    // Nothing is written before the answer.
    assert_eq!(writes_since(s, since), Vec::<String>::new());
    // The terminal's input stays open until the child exits: the answer is all it gets.
    let mut input = child.stdin.take().unwrap();
    input.write_all(typed.as_bytes()).unwrap();
    input.flush().unwrap();
    let code = wait_exit(&mut child);
    drop(input);
    // The readers end with the pipes.
    std::thread::sleep(Duration::from_millis(50));
    let text = shown.lock().unwrap().replace('\r', "");
    let errors = errors.lock().unwrap().clone();
    assert!(errors.trim().is_empty(), "script wrote: {errors}");
    (code, text)
}

/// The part of the terminal's text before the prompt.
fn before_prompt(text: &str) -> &str {
    let at = text.find(PROMPT).expect("the prompt was shown");
    &text[..at]
}

/// The writes (POST/PUT/PATCH/DELETE, not dry-run) the sandbox has seen since `since`.
fn writes_since(s: &Setup, since: usize) -> Vec<String> {
    s.cluster
        .sandbox
        .audit()
        .iter()
        .skip(since)
        .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .filter(|e| !e.query.contains("dryRun"))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

#[test]
fn the_apply_prompt_shows_the_plan_and_only_yes_applies() {
    let s = Setup::with_plan(SMALL);
    let before = dump(&s.cluster);

    let (code, text) = on_terminal(&s, "apply", "no\n");
    assert_eq!(code, 1, "{text}");
    let shown = before_prompt(&text);
    assert!(
        shown.contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "the plan summary comes before the question: {text}"
    );
    assert!(shown.contains("apps/v1 Deployment app/web"), "{text}");
    assert!(
        shown.contains("Do you want to apply these changes?"),
        "{text}"
    );
    assert!(text.contains("Apply cancelled."), "{text}");
    assert!(!text.contains("Apply complete."), "{text}");
    assert_eq!(writes_since(&s, 0), Vec::<String>::new());
    assert_eq!(dump(&s.cluster), before);
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");

    // Anything but exactly `yes` cancels too.
    let (code, text) = on_terminal(&s, "apply", "y\n");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Apply cancelled."), "{text}");
    assert_eq!(writes_since(&s, 0), Vec::<String>::new());

    // Ctrl-C at the prompt is a no; the writer lock is released (the `yes` below takes it).
    let (code, text) = on_terminal(&s, "apply", "\x03");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Apply cancelled."), "{text}");
    assert_eq!(writes_since(&s, 0), Vec::<String>::new());
    assert!(!s.state.join("lock").exists(), "{text}");

    let (code, text) = on_terminal(&s, "apply", "yes\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        before_prompt(&text).contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{text}"
    );
    assert!(text.contains("Apply complete."), "{text}");
    let settings = s.cluster.get_json(&["configmap", "-n", "app", "settings"]);
    assert_eq!(settings["data"]["mode"], "blue");
    let web = s.cluster.get_json(&["deployment", "-n", "app", "web"]);
    assert_eq!(web["metadata"]["name"], "web");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(
        listed.contains("manifest.web  apps/v1 Deployment app/web"),
        "{listed}"
    );
}

#[test]
fn the_destroy_prompt_lists_the_objects_and_only_yes_deletes() {
    let s = Setup::with_plan(SMALL);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let applied = dump(&s.cluster);
    let since = s.cluster.sandbox.audit().len();

    let (code, text) = on_terminal(&s, "destroy", "no\n");
    assert_eq!(code, 1, "{text}");
    let shown = before_prompt(&text);
    assert!(shown.contains("Destroy: 4 to destroy."), "{text}");
    assert!(
        shown.contains("manifest.web  apps/v1 Deployment app/web"),
        "{text}"
    );
    assert!(
        shown.contains("Do you want to destroy these objects?"),
        "{text}"
    );
    assert!(text.contains("Destroy cancelled."), "{text}");
    assert_eq!(writes_since(&s, since), Vec::<String>::new());
    assert_eq!(dump(&s.cluster), applied);
    let web = s
        .cluster
        .kubectl(&["get", "deployment", "-n", "app", "web", "-o", "name"]);
    assert_eq!(web.code, 0, "nothing was deleted");

    // Ctrl-C at the prompt is a no; the writer lock is released.
    let (code, text) = on_terminal(&s, "destroy", "\x03");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Destroy cancelled."), "{text}");
    assert_eq!(writes_since(&s, since), Vec::<String>::new());
    assert_eq!(dump(&s.cluster), applied);
    assert!(!s.state.join("lock").exists(), "{text}");

    let (code, text) = on_terminal(&s, "destroy", "yes\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        before_prompt(&text).contains("Destroy: 4 to destroy."),
        "{text}"
    );
    assert!(text.contains("Destroy complete."), "{text}");
    // The plan's objects (not the Lease destroy held while it wrote, removed at its end).
    let deletes: Vec<String> = writes_since(&s, since)
        .into_iter()
        .filter(|w| w.starts_with("DELETE") && !w.contains("/leases/"))
        .collect();
    assert_eq!(deletes.len(), 4, "{deletes:#?}");
    for name in ["settings", "more"] {
        let cm = s.cluster.kubectl(&["get", "configmap", "-n", "app", name]);
        assert_ne!(cm.code, 0, "{name} is still there: {}", cm.stdout);
    }
    let web = s
        .cluster
        .kubectl(&["get", "deployment", "-n", "app", "web"]);
    assert_ne!(web.code, 0, "{}", web.stdout);
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");
}

/// [`PHASED`] with a `read` of a key `source` never holds and a long timeout: after the first
/// phase the apply waits for it (until interrupted).
fn waiting_plan() -> String {
    let plan = PHASED
        .replace("key = \"mode\"", "key = \"missing\"")
        .replace(
            "depends_on = [\"manifest.source\"]\n\n[manifest.consumer]",
            "depends_on = [\"manifest.source\"]\ntimeout = \"10m\"\n\n[manifest.consumer]",
        );
    assert!(plan.contains("timeout = \"10m\""));
    plan
}

/// Waits until the first phase wrote `source` and the apply watches it for the read.
fn wait_for_the_read(s: &Setup, child: &mut Child) {
    wait_until(child, "the first phase, then the read's watch", || {
        let audit = s.cluster.sandbox.audit();
        let Some(written) = audit
            .iter()
            .position(|e| e.name == "source" && e.method == "PATCH" && !e.query.contains("dryRun"))
        else {
            return false;
        };
        audit[written..]
            .iter()
            .any(|e| e.resource == "configmaps" && e.verb == "watch" && e.query.contains("source"))
    });
}

/// Spawns `apply --auto-approve` with its output collected.
fn spawn_apply(s: &Setup) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    spawn_apply_with(s, &[])
}

/// `spawn_apply` with more arguments (`-v`: progress names every step and wait).
fn spawn_apply_with(s: &Setup, extra: &[&str]) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    let args: Vec<&str> = ["--auto-approve"].iter().chain(extra).copied().collect();
    let mut child = s
        .command("apply", &s.plan, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    (child, out, err)
}

/// The state's records (the header line, whose serial counts journal writes, left out).
fn records(listed: &str) -> String {
    listed.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn ctrl_c_while_waiting_between_phases_rolls_back_the_first_phase() {
    let s = Setup::with_plan(&waiting_plan());
    let before = dump(&s.cluster);
    let (_, records_before, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    let (mut child, out, err) = spawn_apply(&s);
    wait_for_the_read(&s, &mut child);
    // The first phase wrote: the namespace, `source` and `early` exist now.
    let during = dump(&s.cluster);
    assert!(during.contains_key("configmaps/app/source"), "{during:#?}");
    assert!(during.contains_key("secrets/app/early"), "{during:#?}");

    interrupt(&child);
    let code = wait_exit(&mut child);
    std::thread::sleep(Duration::from_millis(50));
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("interrupted between phases"), "{err}");
    assert!(err.contains("failed and was rolled back"), "{err}");
    // Nothing of the second phase was started.
    assert!(
        !s.cluster
            .sandbox
            .audit()
            .iter()
            .any(|e| e.name == "consumer" || e.name == "later"),
        "{err}"
    );
    assert_eq!(dump(&s.cluster), before, "{err}");
    let (code, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(records(&listed), records(&records_before));
    assert!(!listed.contains("unfinished run"), "{listed}");
}

#[test]
fn a_second_ctrl_c_during_the_rollback_stops_at_once_and_keeps_the_journal() {
    let s = Setup::with_plan(&waiting_plan());
    let before = dump(&s.cluster);
    let (_, records_before, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    let (mut child, out, err) = spawn_apply(&s);
    wait_for_the_read(&s, &mut child);
    // From now on the only read of `source` by name is the rollback's, before it deletes
    // it (the read's wait is a watch): hold it, so the rollback cannot end by itself.
    s.cluster.sandbox.add_fault(
        FaultRule::new("get", "configmaps", 1, FaultAction::Latency { ms: 600_000 })
            .named("source"),
    );

    interrupt(&child);
    wait_until(&mut child, "the rollback to start", || {
        err.lock().unwrap().contains("rolling back:")
    });
    interrupt(&child);
    let code = wait_exit(&mut child);
    std::thread::sleep(Duration::from_millis(50));
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    assert_ne!(code, 0, "{out}\n{err}");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("was stopped at once"), "{err}");
    assert!(
        err.contains("stopped at once by a second interrupt"),
        "{err}"
    );
    assert!(err.contains("meshplan rollback"), "{err}");
    // The rollback did not get to `source`: it is still there, and the run is unfinished.
    let stopped = dump(&s.cluster);
    assert!(
        stopped.contains_key("configmaps/app/source"),
        "{stopped:#?}"
    );
    let (code, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(listed.contains("unfinished run"), "{listed}");
    // A plain apply refuses to start over it.
    s.cluster.sandbox.clear_faults();
    let (code, _, err) = s.apply(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unfinished run"), "{err}");

    // Ctrl-C stops `meshplan rollback` too (its read of `source` held again), keeping the
    // journal and releasing the writer lock.
    s.cluster.sandbox.add_fault(
        FaultRule::new("get", "configmaps", 1, FaultAction::Latency { ms: 600_000 })
            .named("source"),
    );
    let mut rollback = s
        .command("rollback", &s.plan, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rollback_err = collect(rollback.stderr.take().unwrap());
    wait_until(&mut rollback, "the rollback to start", || {
        rollback_err.lock().unwrap().contains("rolling back:")
    });
    interrupt(&rollback);
    let code = wait_exit(&mut rollback);
    std::thread::sleep(Duration::from_millis(50));
    let rollback_err = rollback_err.lock().unwrap().clone();
    assert_eq!(code, 1, "{rollback_err}");
    assert!(
        rollback_err.contains("interrupted: the rollback stopped"),
        "{rollback_err}"
    );
    assert!(!s.state.join("lock").exists(), "{rollback_err}");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(listed.contains("unfinished run"), "{listed}");
    s.cluster.sandbox.clear_faults();

    // `meshplan rollback` finishes it: the cluster and the state are as before the apply.
    let out = s.command("rollback", &s.plan, &[]).output().unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(dump(&s.cluster), before, "{err}");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(records(&listed), records(&records_before));
    assert!(!listed.contains("unfinished run"), "{listed}");
}

/// SIGTERM is taken like a first Ctrl-C (the apply stops and rolls back), SIGHUP during that
/// rollback like a second one: it stops at once and keeps the journal. The writer lock is
/// released either way: `meshplan rollback` runs next without `meshplan state unlock`.
#[test]
fn sigterm_then_sighup_during_the_rollback_stops_at_once_and_keeps_the_journal() {
    let s = Setup::with_plan(&waiting_plan());
    let before = dump(&s.cluster);
    let (mut child, out, err) = spawn_apply(&s);
    wait_for_the_read(&s, &mut child);
    // The rollback's read of `source` is held: it cannot end by itself.
    s.cluster.sandbox.add_fault(
        FaultRule::new("get", "configmaps", 1, FaultAction::Latency { ms: 600_000 })
            .named("source"),
    );
    signal(&child, "TERM");
    wait_until(&mut child, "the rollback to start", || {
        err.lock().unwrap().contains("rolling back:")
    });
    signal(&child, "HUP");
    let code = wait_exit(&mut child);
    std::thread::sleep(Duration::from_millis(50));
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("interrupted between phases"), "{err}");
    assert!(err.contains("was stopped at once"), "{err}");
    assert!(err.contains("meshplan rollback"), "{err}");
    let (code, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(listed.contains("unfinished run"), "{listed}");

    s.cluster.sandbox.clear_faults();
    let out = s.command("rollback", &s.plan, &[]).output().unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rollback succeeded"), "{err}");
    assert!(!err.contains("failed"), "{err}");
    assert_eq!(dump(&s.cluster), before, "{err}");
}

/// [`SMALL`] and a node `slow` beside `config` whose Deployment waits for its rollout.
fn with_a_slow_node() -> String {
    format!(
        "{SMALL}{}",
        r#"
[manifest.slow]
namespace = "app"
depends_on = ["manifest.ns"]
yaml = '''
apiVersion: apps/v1
kind: Deployment
metadata:
  name: slow
spec:
  replicas: 1
  selector:
    matchLabels: {app: slow}
  template:
    metadata:
      labels: {app: slow}
    spec:
      containers:
      - name: slow
        image: nginx:1.27
'''
"#
    )
}

#[test]
fn a_second_ctrl_c_while_a_write_is_in_flight_abandons_it_and_keeps_the_journal() {
    let s = Setup::with_plan(&with_a_slow_node());
    let before = dump(&s.cluster);
    // `slow` never becomes ready: the end of its wait shows that the first Ctrl-C was taken.
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    // Hold every write of `web` after the plan's dry runs (as many as `meshplan plan` sends):
    // the apply's step on it stays in flight.
    let dry_runs = |s: &Setup| {
        s.cluster
            .sandbox
            .audit()
            .iter()
            .filter(|e| e.name == "web" && e.method == "PATCH" && e.query.contains("dryRun"))
            .count()
    };
    let (code, _, plan_err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{plan_err}");
    let planned = dry_runs(&s);
    s.cluster.sandbox.add_fault(FaultRule {
        times: u64::MAX,
        ..FaultRule::new(
            "patch",
            "deployments",
            planned as u64 + 1,
            FaultAction::Latency { ms: 600_000 },
        )
        .named("web")
    });
    // -v: the steps and waits this test watches for are shown one by one.
    let (mut child, out, err) = spawn_apply_with(&s, &["-v"]);
    wait_until(&mut child, "web's write and slow's wait", || {
        let err = err.lock().unwrap();
        err.contains("manifest.web: create apps/v1 Deployment app/web")
            && err.contains("manifest.slow: apps/v1 Deployment app/slow: waiting for")
    });
    // The first Ctrl-C ends the wait, then waits for the write in flight, which does not end.
    interrupt(&child);
    wait_until(&mut child, "the first interrupt to end slow's wait", || {
        err.lock()
            .unwrap()
            .contains("manifest.slow: apps/v1 Deployment app/slow: create FAILED")
    });
    // The second one abandons the write.
    interrupt(&child);
    let code = wait_exit(&mut child);
    std::thread::sleep(Duration::from_millis(50));
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("apply was stopped at once"), "{err}");
    assert!(err.contains("meshplan rollback"), "{err}");
    assert!(
        !err.contains("rolling back:"),
        "no rollback was started: {err}"
    );
    // The report names the write it abandoned.
    assert!(
        err.contains("in flight when it stopped")
            && err.contains("manifest.web apps/v1 Deployment app/web"),
        "{err}"
    );
    // The write held was the apply's own, not one of its plan's dry runs.
    assert_eq!(dry_runs(&s), 2 * planned, "{err}");
    // What was written stays, with the journal.
    let stopped = dump(&s.cluster);
    assert!(
        stopped.contains_key("configmaps/app/settings"),
        "{stopped:#?}"
    );
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(listed.contains("unfinished run"), "{listed}");

    s.cluster.sandbox.clear_faults();
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let out = s.command("rollback", &s.plan, &[]).output().unwrap();
    let (code, out, err) = decode(out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(dump(&s.cluster), before, "{err}");
    let deployments = s.cluster.get_json(&["deployments", "-A"]);
    assert_eq!(deployments["items"], serde_json::json!([]), "{err}");
    let (_, listed, _) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert!(!listed.contains("manifest."), "{listed}");
    assert!(!listed.contains("unfinished run"), "{listed}");
}

/// Runs `meshplan SUB PLAN EXTRA` with its output collected, until Ctrl-C while it plans
/// (its read of the namespace `app` held); returns the exit code and stderr.
fn interrupt_while_planning(s: &Setup, sub: &str, extra: &[&str]) -> (i32, String) {
    // Planning reads the namespace `app`: hold that read, the plan does not end by itself.
    s.cluster.sandbox.add_fault(
        FaultRule::new("get", "namespaces", 1, FaultAction::Latency { ms: 600_000 }).named("app"),
    );
    let mut child = s
        .command(sub, &s.plan, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let lock = s.state.join("lock");
    // apply takes the writer lock; plan takes none (a reader), it opens the database.
    let opened = if sub == "plan" {
        s.state.join("db")
    } else {
        lock.clone()
    };
    wait_until(&mut child, "the command to open the state", || {
        opened.exists()
    });
    interrupt(&child);
    let code = wait_exit(&mut child);
    s.cluster.sandbox.clear_faults();
    std::thread::sleep(Duration::from_millis(50));
    let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    assert!(
        !lock.exists(),
        "{sub} left the writer lock behind: {out}\n{err}"
    );
    (code, err)
}

#[test]
fn ctrl_c_while_planning_ends_plan_and_apply_and_releases_the_lock() {
    let s = Setup::with_plan(SMALL);
    let (code, err) = interrupt_while_planning(&s, "plan", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("interrupted while planning"), "{err}");

    let (code, err) = interrupt_while_planning(&s, "apply", &["--auto-approve"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("interrupted before the apply started: nothing was applied"),
        "{err}"
    );
    assert_eq!(writes_since(&s, 0), Vec::<String>::new());
    // The next apply starts at once (no stale lock to break).
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn on_a_terminal_apply_shows_a_live_line_per_running_node() {
    let s = Setup::with_plan(SMALL);
    // The Deployment's rollout does not progress until the controller resumes.
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, true);
    let (mut child, shown, errors) =
        spawn_on_terminal(&s.command("apply", &s.plan, &["--auto-approve"]));
    // While it waits, the node's line says for what: `<spinner> manifest.web: <object>: ...`.
    let live = "manifest.web: apps/v1 Deployment app/web: ";
    wait_until(&mut child, "the live line of manifest.web", || {
        shown.lock().unwrap().contains(live)
    });
    // The line is redrawn in place (cursor movement), with a spinner in front of it.
    std::thread::sleep(Duration::from_millis(400));
    let so_far = shown.lock().unwrap().clone();
    assert!(so_far.contains("\x1b["), "no redraw escapes: {so_far:?}");
    let spinner = ["⠁", "⠂", "⠄", "⡀", "⢀", "⠠", "⠐", "⠈"];
    assert!(
        spinner
            .iter()
            .any(|c| so_far.contains(&format!("{c} {live}"))),
        "no spinner before the line: {so_far:?}"
    );
    // Finished nodes are printed as lines above the live ones.
    assert!(so_far.contains("manifest.ns"), "{so_far:?}");
    s.cluster
        .sandbox
        .set_paused(meshplan_sandbox::Controller::Workloads, false);
    let code = wait_exit(&mut child);
    std::thread::sleep(Duration::from_millis(50));
    let text = shown.lock().unwrap().replace('\r', "");
    assert_eq!(code, 0, "{text}");
    assert!(errors.lock().unwrap().trim().is_empty());
    assert!(text.contains("Apply complete."), "{text}");
    // No plain, timestamped lines: those are for output that is not a terminal.
    let stamped = text
        .lines()
        .filter(|l| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T')
        .count();
    assert_eq!(stamped, 0, "{text}");
}
