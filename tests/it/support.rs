//! Helpers shared by the integration tests: running the real binary with stable output.

use std::path::Path;

/// The `meshplan` binary, run from the repository root with no colour and a fixed width.
pub fn meshplan() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_meshplan"));
    cmd.current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("MESHPLAN_LOG")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// The repository root (where `plans/` and `tests/fixtures/` live).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces the absolute repository path with `[ROOT]`.
pub fn redact(text: &str) -> String {
    text.replace(env!("CARGO_MANIFEST_DIR"), "[ROOT]")
}

/// Runs the binary and returns (exit code, stdout, stderr), redacted.
pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = meshplan().args(args).output().unwrap();
    (
        output.status.code(),
        redact(&String::from_utf8_lossy(&output.stdout)),
        redact(&String::from_utf8_lossy(&output.stderr)),
    )
}
