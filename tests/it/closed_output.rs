//! A closed stdout or stderr (`meshplan state list PLAN | head -1`, `meshplan validate PLAN |
//! head -0`, a log collector that went away) is not an error and never a panic: the command
//! ends as it would have, quietly, as `cat` and `kubectl` do.
//!
//! Each test closes the read end of the child's pipe before the child writes to it, so every
//! write meets a reader that is gone (EPIPE).

use std::process::{Command, Stdio};

use crate::apply_cmd::{BIN, SMALL, Setup};
use crate::support::root;

/// Runs `command` with its stdout (or stderr) closed by the reader; returns the exit code and
/// what the other stream showed.
fn with_closed(mut command: Command, closed_stdout: bool) -> (i32, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let other: Option<Box<dyn std::io::Read>> = if closed_stdout {
        drop(child.stdout.take());
        child.stderr.take().map(|p| Box::new(p) as _)
    } else {
        drop(child.stderr.take());
        child.stdout.take().map(|p| Box::new(p) as _)
    };
    let mut text = String::new();
    if let Some(mut pipe) = other {
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
    }
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), text)
}

fn validate(plan: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root()).args(["validate", plan]);
    cmd
}

#[test]
fn validate_into_a_closed_stdout_exits_0_quietly() {
    let (code, err) = with_closed(validate("plans/linkerd.toml"), true);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err, "");
}

#[test]
fn an_error_into_a_closed_stderr_exits_1_without_a_panic() {
    let (code, out) = with_closed(validate("tests/fixtures/no-such-plan.toml"), false);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out, "");
}

#[test]
fn state_list_and_plan_into_a_closed_stdout_exit_0_quietly() {
    let s = Setup::with_plan(SMALL);
    let (code, out, err) = s.apply(&[]);
    assert_eq!(code, 0, "{out}\n{err}");

    let mut list = Command::new(BIN);
    list.current_dir(root())
        .args(["state", "list"])
        .arg(&s.plan)
        .arg("--state")
        .arg(&s.state);
    let (code, err) = with_closed(list, true);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");

    // The plan (stdout) is dropped; the command still ends with its own exit code.
    let (code, err) = with_closed(s.command("plan", &s.plan, &["--detailed-exitcode"]), true);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The state is not left locked behind: the next command works.
    let (code, listed, err) = s.state_cmd(&["list", s.plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("manifest.web"), "{listed}");
}
