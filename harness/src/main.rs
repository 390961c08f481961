//! The `bootproof` command line: argument parsing, signal handling and output. The work is
//! done by the `bootproof` library and the rig crates; this binary is the only place that uses
//! `anyhow`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    // A twin runs on virtual time: one thread, tokio's paused clock, microsecond time scale
    // (bootproof_rig::time). Everything else runs in real time.
    let runtime = if cli::virtual_time(&args) {
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bootproof: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(cli::run_with_signals(args));
    // Background tasks (relay auto-release timers, twin firmware) must not outlive the rig.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}
