//! Thin main: parse options, build a validated plan, run it, map the result to an exit code
//! (0 success, 1 an SLA failed, 2 could not run). All logic lives in the library.

use clap::Parser;
use mcpstorm::cli::{Cli, Command, ServeArgs};
use mcpstorm::server::{self, ServeOptions, ServerPlan};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let options = ServeOptions {
        listen: args.listen,
        path: args.path,
        shards: args.shards,
        response_mode: args.response,
        max_sessions: args.max_sessions,
        max_connections: args.max_connections,
        session_idle_timeout_s: args.session_idle_timeout.as_secs().min(u32::MAX as u64) as u32,
        ring_slots: args.ring_slots,
    };
    let plan = match ServerPlan::from_options(&options) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("mcpstorm serve: {e}");
            return ExitCode::from(2);
        }
    };
    server::install_stop_handler();
    let shards = plan.shards;
    let rings = plan.rings_per_shard;
    let slots = plan.slots_per_ring;
    let path = options.path.clone();
    let ready_file = args.ready_file;
    let result = server::run(plan, |bound| {
        for addr in bound {
            println!(
                "mcpstorm serve: listening on http://{addr}{path} ({shards} shards × {rings} rings × {slots} direct descriptors)"
            );
        }
        if let Some(file) = &ready_file {
            let text: String = bound.iter().map(|a| format!("{a}\n")).collect();
            if let Err(e) = std::fs::write(file, text) {
                eprintln!(
                    "mcpstorm serve: cannot write --ready-file {}: {e}",
                    file.display()
                );
            }
        }
    });
    match result {
        Ok(summary) => {
            println!("{}", summary.line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpstorm serve: {e}");
            ExitCode::from(2)
        }
    }
}
