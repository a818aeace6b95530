//! isodhcp entry point: parse, validate, run. Exit status: 0 after a clean
//! shutdown, 1 for a runtime failure at start, 2 for a bad command line,
//! 3 when a diagnostics flag finds no daemon to talk to.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use isodhcp::cli::{self, Args};
use isodhcp::control;
use isodhcp::daemon::RunError;

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ISODHCP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => match cli::refusal(&e) {
            None => {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            Some(line) => {
                eprintln!("isodhcp: {line}");
                return ExitCode::from(2);
            }
        },
    };
    let cfg = match cli::config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("isodhcp: {e}");
            return ExitCode::from(2);
        }
    };
    match cli::control_request(&args) {
        Err(e) => {
            eprintln!("isodhcp: {e}");
            return ExitCode::from(2);
        }
        Ok(Some(req)) => {
            return ExitCode::from(control::client::run(&cfg.socket_path(), &req, args.json));
        }
        Ok(None) => {}
    }
    init_logging(args.verbose, args.quiet);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("isodhcp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(isodhcp::daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                RunError::Usage(bad) => eprintln!("isodhcp: {bad}"),
                RunError::Failed(why) => tracing::error!("{why:#}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}
