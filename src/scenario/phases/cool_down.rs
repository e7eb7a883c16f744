//! cool_down: load off, requests in flight answered, then every idle session ended the way a
//! client should (`DELETE`), and the connections closed; the server's memory after vs its
//! baseline is the leak check (taken by `run` once the shards have closed everything).

use crate::engine::TimelineFeed;
use crate::engine::control::{Command, Shared};
use crate::scenario::driver::{DRAIN_MAX, Driver, Segment, Step};
use std::time::Duration;

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    d.begin("cool_down", Segment::CoolDown);
    let off = d.command_for(Segment::CoolDown, "cool_down");
    d.command(feed, off.clone())?;
    let shared = d.shared;
    d.wait(feed, DRAIN_MAX, |_| Shared::sum(&shared.in_flight) == 0)?;
    d.command(
        feed,
        Command {
            delete_sessions: true,
            ..off
        },
    )?;
    let shards = d.plan.shards.len() as u64;
    let deletes_limit = d.options.run.request_timeout.min(Duration::from_secs(30));
    d.wait(feed, deletes_limit, |_| {
        Shared::sum(&shared.deletes_done) == shards
    })?;
    // The shards close what is left when `drive` sets stop; the phase's duration is taken
    // after they have (see `figures::finish_phases`).
    Ok(())
}
