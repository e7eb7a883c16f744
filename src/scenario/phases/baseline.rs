//! baseline: a few sessions, one request in flight at a time (closed loop), for `--baseline`:
//! the server's unloaded service time per method — at a rate the server carries whatever it
//! is, because the next request waits for the last answer. Also proves the target speaks MCP:
//! no session at all stops the run (exit 2) with what the target did instead.

use crate::engine::TimelineFeed;
use crate::engine::control::Shared;
use crate::report::PhaseStatus;
use crate::scenario::driver::{Driver, Halt, Segment, Step};
use crate::scenario::logic;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    let sessions = logic::baseline_sessions(d.connections());
    d.begin("baseline", Segment::Baseline);
    d.current().report.sessions.target = sessions;
    let open = crate::engine::control::Command {
        hold: sessions,
        ..d.command_for(Segment::Baseline, "baseline")
    };
    let seq = d.shared.publish(open.clone());
    d.hold = sessions;
    d.shared.go_connect.store(true, Ordering::SeqCst);
    let run = &d.options.run;
    let settle_limit = run.connect_timeout
        + run.request_timeout.min(Duration::from_secs(10))
        + Duration::from_secs(2);
    d.wait(feed, settle_limit, |d| {
        d.shared.all_acked(seq) && Shared::sum(&d.shared.settled) >= sessions
    })?;
    if d.held() == 0 {
        return Err(Halt::CouldNotRun(format!(
            "no MCP session could be opened in the baseline ({sessions} attempted)"
        )));
    }
    if d.skipped("baseline") {
        d.end(PhaseStatus::Skipped);
        return Ok(());
    }
    d.command(
        feed,
        crate::engine::control::Command {
            load: true,
            in_flight_max: 1,
            ..open
        },
    )?;
    d.pass(feed, d.options.baseline)?;
    d.drain(feed, Segment::Drain(0))?;
    let report = &mut d.current().report;
    report.in_flight_max = Some(1);
    report.offered_from = Some(
        "closed loop, one request in flight at a time over the baseline sessions: the server's unloaded service time"
            .into(),
    );
    d.end(PhaseStatus::Completed);
    Ok(())
}
