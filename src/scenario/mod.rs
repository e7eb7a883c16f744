//! The phased run: baseline → ramp_up → sustained → failure_recovery → performance →
//! cool_down over one set of held sessions. `logic.rs` holds the I/O-free decisions (phase
//! sizes, abort and step rules, capacity, recovery time, memory slope, fault parsing).

pub mod logic;
pub mod run;
