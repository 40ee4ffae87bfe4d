//! `mesh show` and `mesh state …`: read-only views of saved plans and state.

use crate::cli::{Cli, Format, ShowArgs, StateCommand};
use crate::output::{Output, render_plan};
use crate::store::backend;
use anyhow::{Result, bail};
use plans::SavedPlan;
use std::fmt::Write as _;

pub fn show(cli: &Cli, args: &ShowArgs, out: &Output) -> Result<u8> {
    if let Some(file) = &args.planfile {
        let saved = SavedPlan::read(file)?;
        crate::out!("{}", render_plan(&saved.plan, args.format, out));
        return Ok(0);
    }
    let backend = backend(cli, None)?;
    let path = backend.location();
    let Some(st) = backend.read_unlocked()? else {
        bail!(
            "there is no state at {}: nothing has been applied with it yet (pass --state to read another file)",
            path
        );
    };
    let text = match args.format {
        // JSON escapes control characters itself; the listings quote the
        // state file, which may have been edited: escaped as they print.
        Format::Json => serde_json::to_string_pretty(&st)? + "\n",
        Format::Text => {
            let mut s = format!(
                "State of mesh `{}` (serial {}, lineage {}), {} steps:\n",
                st.mesh_id,
                st.serial,
                st.lineage,
                st.steps.len()
            );
            for (id, r) in &st.steps {
                let _ = writeln!(s, "  {id:<45} {:<8} {}", r.status.as_str(), r.updated_at);
            }
            s
        }
        Format::Markdown => {
            let mut s = format!(
                "### State of mesh `{}`\n\n| step | kind | cluster | status |\n|---|---|---|---|\n",
                st.mesh_id
            );
            for (id, r) in &st.steps {
                let _ = writeln!(
                    s,
                    "| `{id}` | {} | {} | {} |",
                    r.kind,
                    r.cluster,
                    r.status.as_str()
                );
            }
            s
        }
    };
    if args.format == Format::Json {
        crate::out!("{text}");
    } else {
        crate::out!("{}", crate::output::printable(&text));
    }
    Ok(0)
}

pub fn state(cli: &Cli, cmd: &StateCommand) -> Result<u8> {
    let backend = backend(cli, None)?;
    let path = backend.location();
    if let StateCommand::Push { from, force } = cmd {
        return push(cli, backend.as_ref(), from, *force);
    }
    if let StateCommand::Rm {
        steps,
        dry_run,
        lock,
    } = cmd
    {
        return rm(cli, backend.as_ref(), steps, *dry_run, lock.lock_timeout);
    }
    let st = backend.read_unlocked()?;
    if st.is_none() {
        bail!(
            "there is no state at {}: nothing has been applied with it yet (pass --state to read another file)",
            path
        );
    }
    match cmd {
        StateCommand::Push { .. } | StateCommand::Rm { .. } => unreachable!("handled above"),
        StateCommand::Pull => {
            let st = st.as_ref().expect("checked above");
            crate::outln!("{}", serde_json::to_string_pretty(st)?);
        }
        StateCommand::List => {
            for id in st.iter().flat_map(|s| s.steps.keys()) {
                crate::outln!("{id}");
            }
        }
        StateCommand::Show { step } => {
            let Some(r) = st.as_ref().and_then(|s| s.steps.get(step)) else {
                bail!(
                    "step `{step}` is not in the state at {}: `mesh state list` shows the recorded steps",
                    path
                );
            };
            crate::outln!("step:        {step}");
            crate::outln!("kind:        {}", r.kind);
            crate::outln!("cluster:     {}", r.cluster);
            crate::outln!("context:     {}", r.context);
            crate::outln!("status:      {}", r.status.as_str());
            crate::outln!("updated:     {}", r.updated_at);
            crate::outln!("depends on:  {}", r.depends_on.join(", "));
            crate::outln!("fingerprint: sha256:{}", r.input_fingerprint);
            for (k, v) in &r.outputs {
                crate::outln!("output {k}: {v}");
            }
            crate::outln!("input:\n{}", r.input);
        }
    }
    Ok(0)
}

/// `mesh output [NAME]`: the recorded outputs of every step (the east-west
/// addresses, whether mesh created a namespace, the remote secrets'
/// fingerprints), or of the steps of one cluster or one step.
pub fn output(cli: &Cli, name: Option<&str>, json: bool) -> Result<u8> {
    let backend = backend(cli, None)?;
    let path = backend.location();
    let Some(st) = backend.read_unlocked()? else {
        bail!(
            "there is no state at {}: apply first, then `mesh output` shows what the steps produced",
            path
        );
    };
    let selected: Vec<(&String, &state::StepRecord)> = st
        .steps
        .iter()
        .filter(|(id, _)| match name {
            None => true,
            Some(n) => id.as_str() == n || id.split('/').next() == Some(n),
        })
        .filter(|(_, r)| !r.outputs.is_empty())
        .collect();
    if let Some(n) = name
        && !st
            .steps
            .keys()
            .any(|id| id == n || id.split('/').next() == Some(n))
    {
        bail!("no step or cluster `{n}` in the state: `mesh state list` shows the recorded steps");
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|(id, r)| {
                (
                    (*id).clone(),
                    serde_json::to_value(&r.outputs).unwrap_or_default(),
                )
            })
            .collect();
        crate::outln!("{}", serde_json::to_string_pretty(&map)?);
        return Ok(0);
    }
    for (id, r) in selected {
        for (k, v) in &r.outputs {
            // A list (the objects an install made) is counted, not spread
            // over one long line; the JSON form has it whole.
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => {
                    format!(
                        "({} entries: `mesh output --json {id}` lists them)",
                        a.len()
                    )
                }
                other => other.to_string(),
            };
            crate::outln!("{id} {k} = {v}");
        }
    }
    Ok(0)
}

/// `mesh state rm STEP…`: forgets steps (or every step of a cluster) under
/// the lock, touching no cluster; the previous state becomes the backup.
fn rm(
    cli: &Cli,
    backend: &dyn state::Backend,
    names: &[String],
    dry_run: bool,
    lock_timeout: std::time::Duration,
) -> Result<u8> {
    let path = backend.location();
    let mut lock = backend.lock("state rm", lock_timeout)?;
    let Some(mut st) = lock.read()? else {
        bail!("there is no state at {path}: nothing to remove (pass --state to use another file)");
    };
    if let Ok(mesh) = engine::config::load(&cli.file) {
        st.check_mesh_id(&mesh.mesh.id)?;
    }
    let mut chosen = std::collections::BTreeSet::new();
    let mut unknown = Vec::new();
    for name in names {
        let matched: Vec<&String> = st
            .steps
            .iter()
            .filter(|(id, r)| *id == name || r.cluster == *name)
            .map(|(id, _)| id)
            .collect();
        if matched.is_empty() {
            unknown.push(name);
        }
        chosen.extend(matched.into_iter().cloned());
    }
    if !unknown.is_empty() {
        let candidates: Vec<&str> = st
            .steps
            .iter()
            .flat_map(|(id, r)| [id.as_str(), r.cluster.as_str()])
            .collect();
        let lines: Vec<String> = unknown
            .iter()
            .map(|name| {
                let close = engine::planner::close_matches(name, candidates.iter().copied());
                let hint = if close.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (did you mean {}?)",
                        close
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                format!("`{name}` is not a recorded step or cluster{hint}")
            })
            .collect();
        bail!(
            "{} in the state at {path}: nothing was removed. `mesh state list` shows the recorded steps",
            lines.join("; ")
        );
    }
    for id in &chosen {
        st.steps.remove(id);
    }
    // Steps that stay but ran after a removed one: the next plan creates
    // the removed one again, before them.
    let dependents: Vec<String> = st
        .steps
        .iter()
        .flat_map(|(id, r)| {
            r.depends_on
                .iter()
                .filter(|d| chosen.contains(*d))
                .map(move |d| format!("{id} depends on {d}"))
        })
        .collect();
    if dry_run {
        for id in &chosen {
            crate::outln!("Would remove {id}");
        }
        crate::errln!("\nNothing was removed (--dry-run).");
        return Ok(0);
    }
    lock.write(&mut st)?;
    for id in &chosen {
        crate::outln!("Removed {id}");
    }
    crate::errln!(
        "\nRemoved {} step{} from the state at {path}. Nothing in any cluster was changed: what \
         they made is still there, and mesh no longer manages it.",
        chosen.len(),
        if chosen.len() == 1 { "" } else { "s" }
    );
    if !dependents.is_empty() {
        crate::errln!(
            "Still recorded: {}; the next `mesh plan` creates the removed step again before them.",
            dependents.join(", ")
        );
    }
    let restore = match backend.backup_location() {
        Some(backup) => format!("`mesh state push --force {backup}`"),
        None => "push the backup the state backend keeps (docs/state.md)".to_string(),
    };
    crate::errln!(
        "To get them back: `mesh apply` runs them again (over what is already there), \
         `mesh import --force` records every step that is live, or put the previous state back \
         before anything else writes it: {restore}."
    );
    Ok(0)
}

/// `mesh state push FILE [--force]`.
fn push(
    cli: &Cli,
    backend: &dyn state::Backend,
    file: &std::path::Path,
    force: bool,
) -> Result<u8> {
    let incoming = match state::read_unlocked(file) {
        Ok(Some(s)) => s,
        Ok(None) => bail!("{} does not exist: nothing was pushed", file.display()),
        Err(e) => bail!(
            "{} is not a mesh state, so it was not pushed: {e}",
            file.display()
        ),
    };
    if let Ok(mesh) = engine::config::load(&cli.file) {
        incoming
            .check_mesh_id(&mesh.mesh.id)
            .map_err(|e| anyhow::anyhow!("{} was not pushed: {e}", file.display()))?;
    }
    let mut lock = backend.lock("state push", std::time::Duration::ZERO)?;
    let written = lock.push(incoming, force)?;
    crate::errln!(
        "Pushed {} to {}: {} steps, serial {}, lineage {}.",
        file.display(),
        backend.location(),
        written.steps.len(),
        written.serial,
        written.lineage
    );
    Ok(0)
}
