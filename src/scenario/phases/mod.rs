//! One room per phase of the run, each a function over the `Driver` that a newcomer can read
//! alone; `run_all` only sequences them. Part of `scenario/`. A room begins its phase, drives
//! the shards through commands, ends the phase, and returns `Err(Halt)` to stop the run.

mod baseline;
mod cool_down;
mod failover;
mod performance;
mod ramp;
mod recovery;
mod sustained;

use super::driver::{Driver, Halt, Step};
use crate::engine::TimelineFeed;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The six phases in order, after every shard has set up.
pub fn run_all(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    let shards = d.plan.shards.len();
    let shared = d.shared;
    let ready = d.wait(feed, Duration::from_secs(60), |_| {
        shared.shards_ready.load(Ordering::SeqCst) >= shards
    })?;
    if !ready {
        return Err(Halt::CouldNotRun(
            "the shards did not start within 60 s".into(),
        ));
    }
    d.rss_before_bytes = crate::engine::rss_bytes();
    d.server_rss_before_bytes = d.server_rss_bytes();
    d.slab_before_bytes = crate::engine::slab_bytes();
    d.leak_baseline_bytes = d.server_rss_before_bytes;
    // A segmented run begins each phase at its scheduled start (`segmented::Schedule`).
    d.await_phase(feed, "baseline")?;
    baseline::run(d, feed)?;
    d.await_phase(feed, "ramp_up")?;
    ramp::run(d, feed)?;
    d.await_phase(feed, "sustained")?;
    sustained::run(d, feed)?;
    d.await_phase(feed, "failure_recovery")?;
    recovery::run(d, feed)?;
    d.await_phase(feed, "performance")?;
    performance::run(d, feed)?;
    d.await_phase(feed, "cool_down")?;
    cool_down::run(d, feed)
}
