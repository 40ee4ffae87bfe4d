//! `mesh`: the command-line front end. Parses arguments, does the IO (files,
//! terminal, clusters) and hands the pure work to the engine.

mod cli;
mod commands;
mod identity;
mod mesh_file;
mod output;
mod pipeline;
mod precheck;
mod preflight;
mod programs;
mod progress;
mod rotation;
mod sandbox;
mod store;
mod world;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let out = output::Output::new(cli.no_color);
    match commands::run(&cli, &out) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            out.error(&err);
            ExitCode::from(1)
        }
    }
}
