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
    let st = backend.read_unlocked()?;
    if st.is_none() {
        bail!(
            "there is no state at {}: nothing has been applied with it yet (pass --state to read another file)",
            path
        );
    }
    match cmd {
        StateCommand::Push { .. } => unreachable!("handled above"),
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
