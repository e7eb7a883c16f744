//! The phased run: baseline → ramp_up → sustained → failure_recovery → performance →
//! cool_down over one set of held sessions. `run.rs` is the entry and assembles the report;
//! `driver.rs` sequences the phases (one room each in `phases/`) through the shards'
//! commands; `figures.rs` turns a phase's merged metrics into its report; `logic.rs` holds
//! the I/O-free decisions (phase sizes, abort and step rules, capacity search, recovery
//! curve, stall bound, memory slope, fault parsing); `progress.rs` the live line on stderr;
//! `config.rs` the scenario file of `run --config`; `segmented.rs` a run as one segment of
//! many (`--segment I/N`, `--start-at`).

pub mod clock;
pub mod config;
pub mod driver;
pub mod figures;
pub mod logic;
mod phases;
mod progress;
pub mod run;
pub mod segmented;
