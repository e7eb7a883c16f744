//! The machine as the kernel reports it: /proc and /sys readers, rlimits, sysctls, and
//! `mcpstorm doctor`, which turns them into verdicts and fixes. The engine's pre-flight check
//! calls the same `doctor::diagnose`, so `doctor` and `run` never disagree about a limit.

pub mod cpustat;
pub mod doctor;
pub mod errno;
pub mod facts;
pub mod interfaces;
pub mod netstat;
pub mod signal;
pub mod sockaddr;
