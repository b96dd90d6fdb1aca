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

    #[error("objects conflict with another field manager (see the plan above)")]
    #[diagnostic(help("change the plan, or pass --force-conflicts to take the fields"))]
    ApplyConflicts,

    #[error(
        "objects conflict with another field manager (see the plan above): {} ({})",
        objects.len(),
        objects.join(", ")
    )]
    #[diagnostic(help(
        "change the plan to agree with the other manager, or let that manager give the fields up; meshplan never forces"
    ))]
    PlanConflicts {
        /// `node: object` of each conflicting object.
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

    #[error("no records of {address} in the state")]
    NoRecords { address: String },

    #[error("{0}")]
    WorkingDirectory(std::io::Error),

    #[error("{0}")]
    Json(serde_json::Error),
}
