//! The command line (the README's command list), declared with clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "mesh",
    version,
    about = "Install and maintain Istio multicluster meshes declaratively: plan, apply, destroy.",
    long_about = "mesh reads a mesh file (mesh.toml) describing clusters, their roles and networks, \
compiles it into a graph of install steps, and plans, applies or destroys them against your \
clusters, recording what it did in a state file.",
    after_help = "Examples:
  mesh init --context kind-cluster1 --context kind-cluster2   write a mesh.toml for two clusters
  mesh validate                                    check mesh.toml
  mesh plan                                        what apply would change
  mesh plan --out mesh.plan && mesh apply mesh.plan   apply exactly a reviewed plan
  mesh apply                                       make the clusters match mesh.toml
  mesh --sandbox sandbox apply --auto-approve      the same on simulated clusters
  mesh output                                      the east-west addresses and other outputs
  mesh destroy                                     remove everything mesh applied

Docs: docs/mesh-toml.md (the mesh file), docs/state.md, docs/pull-requests.md."
)]
pub struct Cli {
    /// The mesh file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "mesh.toml",
        value_name = "FILE",
        env = "MESH_FILE"
    )]
    pub file: PathBuf,

    /// The state file [default: with --sandbox DIR, DIR/mesh.state.json; else `[state] path`,
    /// else mesh.state.json beside the mesh file].
    #[arg(long, global = true, value_name = "PATH", env = "MESH_STATE")]
    pub state: Option<PathBuf>,

    /// A kubeconfig to use for every cluster without its own `kubeconfig` key
    /// [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Run against simulated clusters kept in DIR instead of real ones
    /// (the state then defaults to DIR/mesh.state.json).
    #[arg(long, global = true, value_name = "DIR", env = "MESH_SANDBOX")]
    pub sandbox: Option<PathBuf>,

    /// Never colour the output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// More output: -v shows every step's log.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the mesh file; print nothing but errors.
    Validate,
    /// Prove, live and read-only, that the mesh works, cluster by cluster:
    /// each check PASS, WARN or FAIL with what to do (docs/check.md).
    #[command(
        after_help = "Examples:\n  mesh check\n  mesh check --cluster cluster2\n  mesh check --format json\n\n\
        Exit 0 when nothing fails (warnings allowed), 2 when a check fails, 1 when it cannot run. \
        Takes no lock and changes nothing in any cluster."
    )]
    Check(CheckArgs),
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Make the clusters match the mesh file (or run a saved plan).
    Apply(ApplyArgs),
    /// Remove everything mesh applied, in reverse order.
    Destroy(DestroyArgs),
    /// Compare the steps of another version of the mesh file with this one
    /// (no state, no cluster): what a pull request changes.
    Diff(DiffArgs),
    /// Print the step graph in Graphviz DOT.
    Graph,
    /// Show a saved plan, or the state.
    Show(ShowArgs),
    /// Inspect the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Record as applied the steps already live in the clusters (a mesh
    /// installed by hand, e.g. with Istio's guide); changes nothing there.
    #[command(
        after_help = "Example:\n  mesh import        then `mesh plan` shows only what differs\n\n\
        Refuses a state that already records steps, unless --force (which replaces them)."
    )]
    Import {
        /// Replace the steps a state already records.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Print what applied steps produced: the east-west addresses, the remote
    /// secrets' fingerprints, whether mesh created a namespace.
    #[command(
        after_help = "Examples:\n  mesh output                    every output\n  \
        mesh output cluster1           the outputs of cluster1's steps\n  \
        mesh output cluster1/eastwest-address --json"
    )]
    Output {
        /// A cluster name or a step ID; all steps when left out.
        name: Option<String>,
        /// As JSON (step ID → outputs).
        #[arg(long)]
        json: bool,
    },
    /// Write a commented mesh.toml for your kubeconfig contexts.
    #[command(
        after_help = "Examples:\n  mesh init --context kind-cluster1 --context kind-cluster2\n  \
        mesh init              (every context of the kubeconfig)\n\n\
        The first context becomes the primary, the others its remotes; edit the file, then `mesh validate`."
    )]
    Init {
        /// A kubeconfig context to include (repeat it); default: every context.
        #[arg(long = "context", value_name = "CONTEXT")]
        contexts: Vec<String>,
        /// Overwrite an existing mesh file.
        #[arg(long)]
        force: bool,
        /// Write the file for the --context names as given, without reading a
        /// kubeconfig (clusters you will add later, or a file written in CI).
        #[arg(long, requires = "contexts")]
        offline: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  mesh completion bash > /etc/bash_completion.d/mesh\n  \
        mesh completion zsh > \"${fpath[1]}/_mesh\"\n  mesh completion fish > ~/.config/fish/completions/mesh.fish"
    )]
    Completion { shell: clap_complete::Shell },
    /// The simulated clusters of --sandbox DIR.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// A root of trust for [trust] (several primaries need a common root).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Clear a state lock whose holder cannot release it.
    ForceUnlock {
        /// The lock ID, as printed by the command that was refused.
        lock_id: String,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long)]
        force: bool,
    },
    /// The simulated istioctl used by --sandbox (internal).
    #[command(hide = true, name = "__sandbox-istioctl", trailing_var_arg = true)]
    SandboxIstioctl {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Markdown,
    Json,
}

/// `mesh check --format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// text for a terminal, json for scripts (one object per check).
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
    /// Only this cluster's checks (its links into other clusters included).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// How long to wait for the state lock (e.g. 30s, 5m); 0s fails at once.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan to FILE, for `mesh apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// text for a terminal, markdown for a pull-request comment, json for scripts.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan from the state alone, without reading the clusters (no credentials needed).
    #[arg(long)]
    pub no_refresh: bool,
    /// Plan removing everything.
    #[arg(long)]
    pub destroy: bool,
    /// Override a [policy] rule for this plan (repeat it; the plan records it).
    #[arg(long = "allow", value_name = "RULE", value_parser = policy_rules())]
    pub allow: Vec<String>,
    /// Run STEP again even if nothing changed (repeatable): e.g. after
    /// fixing by hand what it made. `mesh graph` shows the step IDs.
    #[arg(long = "replace", value_name = "STEP", conflicts_with = "destroy")]
    pub replace: Vec<String>,
    /// Plan only these clusters' or steps' changes and the steps they
    /// depend on (repeatable). Not for routine use: the plan may not be complete.
    #[arg(long = "target", value_name = "CLUSTER_OR_STEP")]
    pub target: Vec<String>,
    /// Plan recording what the clusters are now (drift, new addresses) in
    /// the state, changing nothing in any cluster (docs/state.md).
    #[arg(long, conflicts_with_all = ["replace", "destroy", "no_refresh"])]
    pub refresh_only: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Make preflight warnings errors (an API server that remote secrets
    /// would point at a loopback address; permissions that could not be
    /// checked).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `mesh plan --out`; applied only if still fresh.
    pub planfile: Option<PathBuf>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// How many steps may run at once, in total (docs/benchmarks.md: 64 keeps
    /// a 1 + 50 cluster mesh within 1.1x of its critical path).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// How many steps of one cluster may run at once (a step that writes to
    /// another cluster counts against both): keeps each API server (and
    /// istioctl's load on it) safe however large the mesh.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub cluster_parallelism: u16,
    /// Plan from the state alone, without reading the clusters first.
    #[arg(long)]
    pub no_refresh: bool,
    /// Override a [policy] rule for this apply (repeat it). With PLANFILE,
    /// only rules the saved plan recorded: it is applied with its own.
    #[arg(long = "allow", value_name = "RULE", value_parser = policy_rules())]
    pub allow: Vec<String>,
    /// Run STEP again even if nothing changed (repeatable).
    #[arg(long = "replace", value_name = "STEP", conflicts_with = "planfile")]
    pub replace: Vec<String>,
    /// Apply only these clusters' or steps' changes and the steps they
    /// depend on (repeatable). Not for routine use.
    #[arg(
        long = "target",
        value_name = "CLUSTER_OR_STEP",
        conflicts_with = "planfile"
    )]
    pub target: Vec<String>,
    /// Record what the clusters are now in the state; change nothing in any
    /// cluster (docs/state.md).
    #[arg(long, conflicts_with_all = ["replace", "no_refresh", "planfile"])]
    pub refresh_only: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Make preflight warnings errors (an API server that remote secrets
    /// would point at a loopback address; permissions that could not be
    /// checked).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// How many steps may run at once, in total (docs/benchmarks.md: 64 keeps
    /// a 1 + 50 cluster mesh within 1.1x of its critical path).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// How many steps of one cluster may run at once (a step that writes to
    /// another cluster counts against both): keeps each API server (and
    /// istioctl's load on it) safe however large the mesh.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub cluster_parallelism: u16,
    /// Override a [policy] rule for this plan (repeat it; the plan records it).
    #[arg(long = "allow", value_name = "RULE", value_parser = policy_rules())]
    pub allow: Vec<String>,
    /// Destroy only these clusters' or steps' records and the steps that
    /// depend on them (repeatable). Not for routine use.
    #[arg(long = "target", value_name = "CLUSTER_OR_STEP")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The other version of the mesh file (e.g. the base branch's).
    pub base_file: PathBuf,
    /// text for a terminal, markdown for a pull-request comment, json for scripts.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Exit 0 when the files have the same steps, 2 when they differ, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved with `mesh plan --out`; without it, the state.
    pub planfile: Option<PathBuf>,
    /// text for a terminal, markdown for a pull-request comment, json for scripts.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write a new root CA: DIR/root-cert.pem and DIR/root-key.pem (mode
    /// 0600). Never overwrites.
    #[command(
        after_help = "Example:\n  mesh ca init            (./certs beside the mesh file)\n\n\
        Then add to the mesh file:\n  [trust]\n  root_cert = \"certs/root-cert.pem\"\n  root_key = \"certs/root-key.pem\"\n\n\
        Keep root-key.pem out of version control and off shared disks."
    )]
    Init {
        /// Where to write them [default: `certs` beside the mesh file].
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Serve the mesh file's simulated clusters until Ctrl-C, so kubectl can
    /// look at them (KUBECONFIG=DIR/kubeconfig) while other mesh commands
    /// use them.
    #[command(
        after_help = "Example:\n  mesh -f examples/primary-remote.toml --sandbox sandbox sandbox serve\n  \
        KUBECONFIG=sandbox/kubeconfig kubectl --context kind-cluster1 get svc -A"
    )]
    Serve,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// The recorded step IDs, one a line.
    List,
    /// One recorded step in full (secrets only as fingerprints).
    Show {
        /// A step ID such as cluster2/attach.
        step: String,
    },
    /// Print the state as JSON (to keep, to move it elsewhere).
    Pull,
    /// Replace the state with FILE (a state printed by `state pull`):
    /// refused for another mesh, or, unless --force, another lineage or a
    /// lower serial.
    #[command(
        after_help = "Example (moving a state):\n  mesh state pull > state.json\n  \
        mesh --state new/mesh.state.json state push state.json"
    )]
    Push {
        /// The state file to push (not `file`: that is the global -f).
        #[arg(value_name = "FILE")]
        from: PathBuf,
        /// Replace a state of another lineage or a newer serial.
        #[arg(long)]
        force: bool,
    },
    /// Forget steps without touching any cluster: what they made stays
    /// there, and mesh no longer manages it. The previous state is kept as
    /// the backup.
    #[command(after_help = "Examples:\n  mesh state rm cluster2/attach\n  \
        mesh state rm cluster3          (every step of a cluster that is gone for good)\n\n\
        To get them back: `mesh apply` runs them again, `mesh import --force` records what is live,\n\
        or push the backup the command names.")]
    Rm {
        /// Step IDs (cluster2/attach), or cluster names for all their steps.
        #[arg(required = true, value_name = "STEP")]
        steps: Vec<String>,
        /// Print what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
}

/// `--allow RULE`: the keys of `[policy]`.
fn policy_rules() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(engine::policy::RULES.iter().copied())
}

/// `30s`, `5m`, `1h`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    engine::config::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_duration("").is_err());
    }
}
