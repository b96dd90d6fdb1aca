//! What the commands themselves refuse (the stages' errors pass through unchanged).

/// Why a command stopped before or instead of calling a stage.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CommandError {
    /// Ctrl-C before anything was written (or while a journaled step ran).
    #[error("{message}")]
    Interrupted { message: &'static str },

    #[error("--timeout {value}: not a duration")]
    #[diagnostic(help("e.g. 10m, 1h30m"))]
    Timeout { value: String },

    #[error("refusing to {what} without confirmation: stdin is not a terminal")]
    #[diagnostic(help("pass --auto-approve to run without confirmation"))]
    NoTerminal { what: &'static str },

    #[error("{0}")]
    Terminal(std::io::Error),

    #[error("the state holds an unfinished run (meshplan stopped before it ended)")]
    #[diagnostic(help(
        "run `meshplan apply --on-unfinished complete` (keep what it did) or `--on-unfinished rollback`, or `meshplan rollback`"
    ))]
    UnfinishedRun,

    #[error(
        "{} {} fields another field manager took (see the plan above): {}; nothing was applied",
        objects.len(),
        if objects.len() == 1 { "object has" } else { "objects have" },
        objects.join(", ")
    )]
    #[diagnostic(help(
        "pass --force-conflicts to take the fields back, or give them up for good with an ignore rule in the plan (docs/drift.md)"
    ))]
    ApplyConflicts {
        /// `node: object` of each object.
        objects: Vec<String>,
    },

    #[error(
        "{what} stopped before any write: lint found {errors} error-level finding{} (see above)",
        if *errors == 1 { "" } else { "s" }
    )]
    #[diagnostic(help(
        "fix the findings above, or suppress one that does not apply on its node with suppress = [{{ check = \"ID\", reason = \"...\" }}]"
    ))]
    LintFindings { what: &'static str, errors: usize },

    #[error("the plan does not load")]
    PlanDoesNotLoad,

    #[error("the copy of the state at {to} differs from the source at {from}")]
    #[diagnostic(help(
        "the source was kept; report this together with `meshplan state list` of both"
    ))]
    MigrationMismatch { from: String, to: String },

    #[error("no records of {address} in the state")]
    NoRecords { address: String },

    #[error("{0}")]
    WorkingDirectory(std::io::Error),

    #[error("{0}")]
    Json(serde_json::Error),

    /// `-o`, which kubectl and helm read as the output format.
    #[error("`-o{}` is not an option of meshplan", if value.is_empty() { String::new() } else { format!(" {value}") })]
    #[diagnostic(help(
        "use `--out FILE` to save the change set (plan), or `--output json` for the output format"
    ))]
    DashO { value: String },

    #[error("cannot write {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write the report to {}", path.display())]
    #[diagnostic(help("check that the directory exists and can be written"))]
    OutputFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
