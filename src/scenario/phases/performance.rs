//! performance: search the capacity. Each step offers a rate for `--step`, then the load goes
//! off until the step's requests are answered (its figures are its own requests, not a
//! backlog), and the step is judged on the server's figures (p95 and errors against the SLA,
//! requests that found no idle session, achieved vs offered) and the generator's own check.
//! `logic::CapacitySearch` picks the next rate: up from the sustained rate until a step fails,
//! then bisection. The capacity is the highest passing rate below every failure.

use crate::engine::TimelineFeed;
use crate::engine::metrics::Counter;
use crate::report::{Capacity, CapacityStep, Percentiles, PhaseStatus};
use crate::scenario::driver::{Driver, Segment, Step};
use crate::scenario::figures;
use crate::scenario::logic::{self, CapacitySearch};
use std::time::Instant;

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    if d.skipped("performance") {
        d.push_skipped("performance");
        return Ok(());
    }
    d.begin("performance", Segment::Step(0));
    d.current().segments.clear();
    let start_rps = start_rate(d);
    // The segments of a run climb one fixed ladder (see `CapacitySearch::ladder`).
    let mut search = if d.options.run.segment.is_whole() {
        CapacitySearch::new(start_rps, d.options.step_factor, d.options.steps_max)
    } else {
        CapacitySearch::ladder(start_rps, d.options.step_factor, d.options.steps_max)
    };
    let mut steps = Vec::new();
    let mut passed_segments = Vec::new();
    let mut k = 0u32;
    let mut loaded_s = 0.0;
    let result = loop {
        let Some(offered) = search.next_rate() else {
            break Ok(());
        };
        match run_step(d, feed, k, offered, &mut loaded_s) {
            Ok((step, generator_valid)) => {
                if step.pass {
                    passed_segments.push(Segment::Step(k).id());
                }
                if generator_valid {
                    search.record(&step);
                } else {
                    search.record_unjudged(offered);
                }
                steps.push(step);
            }
            Err(halt) => break Err(halt),
        }
        k += 1;
    };
    let offered_from = if d.options.run.segment.is_whole() {
        format!(
            "search from {start_rps:.0} req/s: ×{} per passing step until one fails, then bisection to within {:.0}%",
            d.options.step_factor,
            logic::CAPACITY_PRECISION * 100.0
        )
    } else {
        format!(
            "segment {}: a fixed ladder from {start_rps:.0} req/s, ×{} per step, {} steps (the merge judges the summed steps)",
            d.options.run.segment.label(),
            d.options.step_factor,
            d.options.steps_max
        )
    };
    if let Some(limit) = search.generator_limit_rps {
        d.add_note(format!(
            "the generator could not drive {limit:.0} req/s validly (twice): the capacity found is a lower bound — use more load hosts or CPUs"
        ));
    }
    let report = &mut d.current().report;
    report.capacity = Some(Capacity {
        steps,
        capacity_rps: search.capacity(),
    });
    report.offered_from = Some(offered_from);
    d.current().load_s = Some(loaded_s);
    result?;
    if !passed_segments.is_empty() {
        // The generator is judged over the steps the capacity rests on; a failing step is
        // over the limit by design and says why in its own row.
        d.current().generator_segments = Some(passed_segments);
    }
    d.end(PhaseStatus::Completed);
    Ok(())
}

/// From the sustained rate, or (closed loop) from what the sustained phase achieved over its
/// measured duration.
fn start_rate(d: &Driver<'_>) -> f64 {
    if d.rate_per_s > 0 {
        return d.rate_per_s as f64;
    }
    let sustained = d
        .phases
        .iter()
        .find(|p| p.report.name == "sustained" && p.report.duration_s > 0.0);
    match sustained {
        Some(phase) => {
            let ok = figures::merge_segments(&d.merged, &phase.segments).get(Counter::requests_ok);
            (ok as f64 / phase.report.duration_s).max(logic::CAPACITY_RATE_MIN)
        }
        None => 1000.0,
    }
}

/// One step: the rate for `--step`, then load off until its answers are in; judged.
fn run_step(
    d: &mut Driver<'_>,
    feed: &mut TimelineFeed,
    k: u32,
    offered: f64,
    loaded_s: &mut f64,
) -> Result<(CapacityStep, bool), crate::scenario::driver::Halt> {
    d.current().segments.push(Segment::Step(k).id());
    d.command(
        feed,
        crate::engine::control::Command {
            load: true,
            rate_per_s: offered as u64,
            ..d.command_for(Segment::Step(k), "performance")
        },
    )?;
    let step_start = Instant::now();
    d.pass(feed, d.options.step)?;
    d.drain(feed, Segment::Pause(k))?;
    // From the step's publish to the pause's: the shards' segment boundaries. Reset, so the
    // next step's publish starts its own measure.
    let phase = d.current();
    let step_s = phase
        .load_s
        .take()
        .unwrap_or_else(|| step_start.elapsed().as_secs_f64());
    phase.load_started = None;
    *loaded_s += step_s;
    let m = figures::merge_segments(&d.merged, &[Segment::Step(k).id()]);
    let ok = m.get(Counter::requests_ok);
    let errors = m.get(Counter::requests_failed);
    let done = ok + errors;
    let offered_count = m.get(Counter::requests_offered);
    let dropped_pct = if offered_count == 0 {
        0.0
    } else {
        m.get(Counter::dropped_no_idle_session) as f64 * 100.0 / offered_count as f64
    };
    let mut step = logic::judge_step(
        offered,
        ok as f64 / step_s.max(1e-3),
        Percentiles::of(&m.all.corrected).p95,
        if done > 0 {
            errors as f64 * 100.0 / done as f64
        } else {
            0.0
        },
        dropped_pct,
        &d.options.sla,
    );
    let generator = figures::generator_check(&m, false);
    let generator_valid = generator.valid;
    if !generator.valid {
        // A step the generator could not drive proves nothing about the target: it cannot
        // count towards the capacity.
        let reason = format!(
            "generator fell behind ({})",
            generator.invalid_reason.unwrap_or_default()
        );
        step.broke = Some(match step.broke {
            Some(broke) => format!("{broke}; {reason}"),
            None => reason,
        });
        step.pass = false;
    }
    Ok((step, generator_valid))
}
