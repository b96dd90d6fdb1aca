//! Command-line surface: clap definitions, the colour choice and the fixed exit codes.
//!
//! Exit codes are a closed set ([`ExitStatus`]): 0 success (or "no changes" with
//! `--detailed-exitcode`), 1 error (a command line clap refuses too), 2 changes present.
//!
//! Flags follow kubectl, helm and Terraform: `--kubeconfig`, `--context`, `--output json`
//! for the output format, `--out FILE` for a saved change set (`-o` is refused with a
//! pointer to both, since it means the format in kubectl and helm), `--color` and
//! `NO_COLOR`. Every command's `--help` ends with examples.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::StateBackend;

const EXAMPLES: &str = "\
Examples:
  meshplan validate plans/linkerd.toml
  meshplan plan plans/linkerd.toml --out linkerd.plan
  meshplan apply linkerd.plan
  meshplan show plans/linkerd.toml --target helm.linkerd_crds
  meshplan completions bash > /etc/bash_completion.d/meshplan

Docs: docs/tutorial.md (a whole install step by step), docs/plan-language.md.";

/// meshplan: plan, apply and roll back a Kubernetes service-mesh stack from one TOML plan.
#[derive(Debug, Parser)]
#[command(
    name = "meshplan",
    version,
    about,
    propagate_version = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). MESHPLAN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When to use colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// `-o` is not an option: kubectl and helm read it as the output format, meshplan once
    /// read it as the saved change set. Refused with a pointer to `--out` and `--output`.
    #[arg(
        short = 'o',
        global = true,
        hide = true,
        value_name = "VALUE",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub dash_o: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (to anything but the empty string).
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether a stream takes colour: `always`, `never`, or (`auto`) when it is a terminal
    /// and `no_color` (the `NO_COLOR` variable) is unset or empty.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a plan, resolve its references, build its graph; no cluster needed.
    #[command(after_help = "\
Examples:
  meshplan validate plans/linkerd.toml
  meshplan validate plans/linkerd.toml --var linkerd_control_plane_version=1.16.10
  meshplan validate plans/linkerd.toml --output json   # for editors and CI")]
    Validate(ValidateArgs),
    /// Print the dependency graph of a plan as text, DOT or Mermaid.
    #[command(after_help = "\
Examples:
  meshplan graph plans/linkerd.toml
  meshplan graph plans/linkerd.toml --format dot | dot -Tsvg > graph.svg
  meshplan graph plans/linkerd.toml --format mermaid
  meshplan graph plans/linkerd.toml --output json")]
    Graph(GraphArgs),
    /// Print the objects each node renders to (`helm template` for the whole plan); no
    /// cluster needed.
    #[command(after_help = "\
Examples:
  meshplan show plans/linkerd.toml --repo-dir linkerd=plans/charts --repo-dir jetstack=plans/charts
  meshplan show plans/linkerd.toml --target helm.linkerd_crds --format json
  meshplan show plans/linkerd.toml --show-sensitive   # Secret data in clear")]
    Show(ShowArgs),
    /// Linkerd-aware checks of what would be applied (meshed Jobs, unknown chart values, CRs
    /// against their CRDs, the identity issuer, ...); exit 1 on error-level findings.
    Lint(LintArgs),
    /// Health of the applied mesh: trust anchor, issuer certificate, workloads, webhooks,
    /// stuck Jobs; exit 1 when a check fails.
    Check(CheckArgs),
    /// Render, refresh and diff: show what apply would change (writes only caches to state).
    #[command(after_help = "\
Examples:
  meshplan plan plans/linkerd.toml
  meshplan plan plans/linkerd.toml --out linkerd.plan          # save it for `meshplan apply linkerd.plan`
  meshplan plan plans/linkerd.toml --detailed-exitcode          # 0 nothing to do, 2 changes, 1 error
  meshplan plan plans/linkerd.toml --output json | jq .summary
  meshplan plan plans/linkerd.toml --target helm.linkerd_crds --context k3s")]
    Plan(PlanArgs),
    /// Plan, confirm and apply: in dependency order, waited for, rolled back on failure.
    #[command(after_help = "\
Examples:
  meshplan apply plans/linkerd.toml                 # shows the plan, asks for 'yes'
  meshplan apply linkerd.plan                       # a change set saved by `plan --out`
  meshplan apply plans/linkerd.toml --auto-approve --timeout 15m
  meshplan apply plans/linkerd.toml --output json   # JSON lines on stdout")]
    Apply(ApplyArgs),
    /// Delete every object the plan owns, in reverse dependency order.
    #[command(after_help = "\
Examples:
  meshplan destroy plans/linkerd.toml
  meshplan destroy plans/linkerd.toml --target helm.linkerd_crds --target manifest.linkerd_namespace")]
    Destroy(DestroyArgs),
    /// Finish the rollback of an unfinished run (after a crash or a failed rollback).
    #[command(after_help = "\
Examples:
  meshplan rollback plans/linkerd.toml")]
    Rollback(RollbackArgs),
    /// Compare the live cluster with what was last applied, by the fields meshplan owns
    /// (read-only, no lock; for CI): exit 0 no drift, 2 drift, 1 error.
    Drift(DriftArgs),
    /// Look at and repair the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the versions of meshplan, helm and (when reachable) the cluster's server.
    #[command(after_help = "\
Examples:
  meshplan version
  meshplan version --context k3s --output json")]
    Version(VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(after_help = "\
Examples:
  meshplan completions bash > ~/.local/share/bash-completion/completions/meshplan
  meshplan completions zsh > \"${fpath[1]}/_meshplan\"
  meshplan completions fish > ~/.config/fish/completions/meshplan.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    #[command(after_help = "\
Examples:
  meshplan man | man -l -
  meshplan man --dir /usr/local/share/man/man1")]
    Man(ManArgs),
    /// Print the JSON Schema of the plan file on stdout (for editors: taplo, Even Better TOML).
    #[command(after_help = "\
Examples:
  meshplan schema > plan.schema.json
  # then, first line of a plan file:  #:schema ./plan.schema.json
  # or in .taplo.toml: [[rule]] include = [\"plans/*.toml\"] schema.path = \"plan.schema.json\"")]
    Schema,
    /// A local Kubernetes API sandbox for trying plans without a cluster.
    #[cfg(feature = "sandbox")]
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// Where the state is, and how long to wait for its lock.
#[derive(Debug, Clone, Args)]
pub struct StateLocationArgs {
    /// The local state directory (default: the plan's [state] dir, else state/<plan name>
    /// beside the plan file).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The state backend, over the plan's [state] backend.
    #[arg(
        long,
        value_enum,
        value_name = "BACKEND",
        env = "MESHPLAN_STATE_BACKEND"
    )]
    pub state_backend: Option<BackendArg>,
    /// How long to wait for a lock another run holds, e.g. 60s (default: fail at once,
    /// naming the holder).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_wait)]
    pub lock_timeout: Duration,
}

/// A state backend on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Local,
    Kubernetes,
}

impl From<BackendArg> for StateBackend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Local => Self::Local,
            BackendArg::Kubernetes => Self::Kubernetes,
        }
    }
}

/// A wait such as `60s` or `5m`; `0` or `0s` for none.
fn parse_wait(text: &str) -> Result<Duration, String> {
    if matches!(text.trim(), "0" | "0s" | "0m") {
        return Ok(Duration::ZERO);
    }
    crate::model::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (e.g. 30s, 5m, 1h)"))
}

/// The state and render settings every cluster command takes.
#[derive(Debug, Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub at: StateLocationArgs,
    /// Take the charts of a repository alias from a local directory: --repo-dir NAME=DIR
    /// (repeatable; DIR holds one folder per chart).
    #[arg(long = "repo-dir", value_name = "NAME=DIR")]
    pub repo_dirs: Vec<String>,
    /// Only this node and what it depends on (repeatable), e.g. --target helm.linkerd_crds.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub input: PlanInput,
    /// Take the charts of a repository alias from a local directory: --repo-dir NAME=DIR
    /// (repeatable; DIR holds one folder per chart).
    #[arg(long = "repo-dir", value_name = "NAME=DIR")]
    pub repo_dirs: Vec<String>,
    /// Only this node and what it depends on (repeatable), e.g. --target helm.linkerd_crds.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// Output format: YAML documents (with a comment naming each node) or one JSON document.
    #[arg(long, value_enum, default_value_t = ShowFormat::Yaml)]
    pub format: ShowFormat,
    /// Print sensitive values (Secret data, values of sensitive reads) in clear.
    #[arg(long)]
    pub show_sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write meshplan.1 and one page per command (meshplan-plan.1, ...) into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file (TOML), or a change set saved by `meshplan plan --out FILE`.
    pub plan: PathBuf,
    /// Set a variable the plan declares: --var name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file of variable values; --var wins over it.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Apply without asking for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// On failure leave everything in place (the journal is kept for a later rollback).
    #[arg(long)]
    pub no_rollback: bool,
    /// Take fields other field managers own.
    #[arg(long)]
    pub force_conflicts: bool,
    /// When the state has no records but the cluster holds objects with this plan's marks
    /// (a lost or removed state), take them over as they are: their records are written on
    /// apply, and material the charts generate (webhook certificates) is taken from the
    /// cluster instead of being generated anew. Without it such a plan stops.
    #[arg(long)]
    pub adopt_lost_state: bool,
    /// At most this many steps (and cluster requests while planning) at a time.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Upper bound for the whole apply, e.g. 15m (rollback not included).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Progress and report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// What to do with an unfinished run found in the state (after a crash): complete it
    /// (keep what it did) or roll it back. Without this flag such a run stops the apply.
    #[arg(long, value_enum, value_name = "CHOICE")]
    pub on_unfinished: Option<OnUnfinished>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnUnfinished {
    Complete,
    Rollback,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Destroy without asking for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Also delete namespaces that hold objects the plan does not own (with those objects).
    #[arg(long)]
    pub with_foreign_objects: bool,
    /// At most this many deletions at a time.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Progress and report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Progress and report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the objects the state records, by node.
    #[command(after_help = "\
Examples:
  meshplan state list plans/linkerd.toml
  meshplan state list plans/linkerd.toml --output json")]
    List(StateListArgs),
    /// Show the records of one node (or one object: NODE/KIND/NAMESPACE/NAME).
    #[command(after_help = "\
Examples:
  meshplan state show plans/linkerd.toml manifest.root_ca
  meshplan state show plans/linkerd.toml helm.linkerd_control_plane --output json")]
    Show(StateShowArgs),
    /// Forget the records of a node (the objects stay in the cluster).
    Rm(StateAddressArgs),
    /// Break the writer lock of the state (the local lock is released by the operating
    /// system when its holder ends; a Lease in the cluster is broken after confirmation).
    Unlock(StateUnlockArgs),
    /// Move the state to the other backend: copy it under both locks, verify the copy, then
    /// remove the source.
    Migrate(StateMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The plan file (its [state] table says where the state is).
    pub plan: PathBuf,
    #[command(flatten)]
    pub location: StateLocationArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct StateListArgs {
    #[command(flatten)]
    pub at: StateArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct StateShowArgs {
    #[command(flatten)]
    pub at: StateArgs,
    /// A node address, e.g. manifest.root_ca.
    pub address: String,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct StateAddressArgs {
    #[command(flatten)]
    pub at: StateArgs,
    /// A node address, e.g. manifest.root_ca.
    pub address: String,
}

#[derive(Debug, Args)]
pub struct StateUnlockArgs {
    #[command(flatten)]
    pub at: StateArgs,
    /// Break the lock even when its holder may still run (a Lease not expired, held on
    /// another host).
    #[arg(long)]
    pub force: bool,
    /// Break a Lease without asking for confirmation (required when stdin is not a
    /// terminal).
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct StateMigrateArgs {
    #[command(flatten)]
    pub at: StateArgs,
    /// The backend to move the state to (the source is the other one).
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub to: BackendArg,
}

/// Where the plan comes from and how its variables are set.
#[derive(Debug, Args)]
pub struct PlanInput {
    /// The plan file (TOML).
    pub plan: PathBuf,
    /// Set a variable the plan declares (in its vars table): --var name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file of variable values (NAME = value lines); --var wins over it.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: PlanInput,
    /// Output format on stdout (json: the summary, or every problem with its place).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub input: PlanInput,
    /// The drawing: text, DOT (Graphviz) or Mermaid.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
    /// Output format on stdout: json prints the nodes, edges and layers as data (instead of a
    /// drawing).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human, conflicts_with = "format")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub at: StateLocationArgs,
    /// Take the charts of a repository alias from a local directory: --repo-dir NAME=DIR
    /// (repeatable; DIR holds one folder per chart).
    #[arg(long = "repo-dir", value_name = "NAME=DIR")]
    pub repo_dirs: Vec<String>,
    /// Plan only this node and what it depends on (repeatable), e.g. --target helm.linkerd_crds.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// At most this many requests to the cluster (and helm renders) at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Save the change set to FILE, for `meshplan apply FILE` (like `terraform plan -out`).
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing changes, 2 when something does (1 stays an error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// When the state has no records but the cluster holds objects with this plan's marks
    /// (a lost or removed state), take them over as they are: their records are written on
    /// apply, and material the charts generate (webhook certificates) is taken from the
    /// cluster instead of being generated anew. Without it such a plan stops. With --out,
    /// the saved change set carries the adoption to `apply FILE`.
    #[arg(long)]
    pub adopt_lost_state: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Take the charts of a repository alias from a local directory: --repo-dir NAME=DIR
    /// (repeatable; DIR holds one folder per chart).
    #[arg(long = "repo-dir", value_name = "NAME=DIR")]
    pub repo_dirs: Vec<String>,
    /// Do not read the cluster: check the plan alone (see docs/checks.md for what the
    /// cluster adds).
    #[arg(long)]
    pub offline: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = LintFormat::Human)]
    pub format: LintFormat,
    /// Fail (exit 1) on warnings too: --deny warnings.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub deny: Vec<DenyLevel>,
    /// At most this many helm renders at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    Human,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DenyLevel {
    Warnings,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
    /// Warn when a certificate (issuer or trust anchor) expires within this duration.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub warn_expiry: String,
    /// Fail when a certificate expires within this duration.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub fail_expiry: String,
    /// Fail (exit 1) on warnings too: --deny warnings.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub deny: Vec<DenyLevel>,
}

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The kubeconfig file (default: KUBECONFIG, a list of files merged as kubectl does,
    /// else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// How long one request to the cluster may wait for its answer, e.g. 30s, 2m (default
    /// 60s). Transient failures are retried; a server that does not answer in time is not.
    #[arg(long, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<std::time::Duration>,
}

/// `--request-timeout`: a duration such as `30s` or `2m`.
fn parse_request_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::model::parse_duration(text)
        .ok_or_else(|| format!("not a duration: {text:?} (e.g. 30s, 2m, 1m30s)"))
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub input: PlanInput,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The local state directory (default: the plan's [state] dir, else state/<plan name>
    /// beside the plan file).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The state backend, over the plan's [state] backend. Either is read without a lock.
    #[arg(
        long,
        value_enum,
        value_name = "BACKEND",
        env = "MESHPLAN_STATE_BACKEND"
    )]
    pub state_backend: Option<BackendArg>,
    /// Only the objects of this node (repeatable), e.g. --target helm.linkerd_viz.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// At most this many requests to the cluster at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Report format.
    #[arg(long, value_enum, default_value_t = DriftFormat::Human)]
    pub format: DriftFormat,
    /// Write the report in --format to FILE; stdout then gets the human report.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// The formats of `meshplan drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftFormat {
    /// For people, grouped by node.
    Human,
    /// The report's versioned JSON (docs/drift-report.schema.json).
    Json,
    /// A table, for pull-request comments and CI step summaries.
    Markdown,
    /// JUnit XML: a test case per owned object, a failure per drifted one.
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

#[cfg(feature = "sandbox")]
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Serve a Kubernetes API sandbox on 127.0.0.1 and write a kubeconfig for it.
    Serve(SandboxServeArgs),
}

#[cfg(feature = "sandbox")]
#[derive(Debug, Args)]
pub struct SandboxServeArgs {
    /// Port to listen on (127.0.0.1); 0 lets the OS choose.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig that kubectl and meshplan use.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// Directory that keeps the cluster's objects across restarts (and `audit.log`).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Also write the audit log (JSON lines) to FILE.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Serve HTTPS with a generated CA; the kubeconfig carries the CA and a client certificate.
    #[arg(long)]
    pub tls: bool,
    /// Authentication: `token` (credentials required over TLS; over plain HTTP, where kubectl
    /// sends none, requests without any are anonymous), `strict` (required everywhere),
    /// `anonymous` (no checks).
    #[arg(long, value_name = "MODE", default_value = "token", value_parser = ["token", "strict", "anonymous"])]
    pub auth: String,
    /// Turn every simulated controller off (a plain API server).
    #[arg(long)]
    pub no_controllers: bool,
    /// Turn one simulated controller off: workloads, cert-manager, webhooks, linkerd
    /// (repeatable).
    #[arg(long = "disable-controller", value_name = "NAME", value_parser = ["workloads", "cert-manager", "webhooks", "linkerd"])]
    pub disable_controller: Vec<String>,
    /// Milliseconds from a workload's new spec to its completed rollout (and a Job's end).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub rollout_delay_ms: u64,
    /// Milliseconds a webhook's Deployment must have been available before writes it
    /// guards are admitted.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub webhook_delay_ms: u64,
    /// How many times faster than real time cert-manager's clock runs (renewals).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub time_scale: f64,
}

/// The process exit status: a fixed enum, never an ad-hoc number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success, or no changes with `--detailed-exitcode`.
    Success,
    /// 1: an error was reported.
    Error,
    /// 2: changes are present (`--detailed-exitcode`), or drift (`meshplan drift`).
    Changes,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => Self::from(0),
            ExitStatus::Error => Self::from(1),
            ExitStatus::Changes => Self::from(2),
        }
    }
}
