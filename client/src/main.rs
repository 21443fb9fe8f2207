//! `trecho`: the command line of the trecho booking cluster. See `trecho
//! --help` and the `cli` module.

#![forbid(unsafe_code)]

mod bench;
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
