//! The failure_recovery fault as one shard sees it: the stage the coordinator publishes
//! (`Command::fault_stage`), and how each request that was in flight while the fault was on
//! ended — answered during it, answered after it healed (late), timed out, lost with its
//! connection (reset, closed), or failed otherwise. Those counters are what tells a partition
//! (requests stall, then answer late or time out, nothing resets) from a crash (requests lost
//! at once). Part of `engine/`, a room of `shard.rs`.

use super::super::control::FaultStage;
use super::super::metrics::Counter;
use super::Shard;

/// How a request ended, as the fault's accounting sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Answered,
    TimedOut,
    ConnectionLost,
    FailedOther,
}

impl Outcome {
    pub(super) fn failed(cause: Counter, lost: bool) -> Outcome {
        match cause {
            Counter::error_request_timeout => Outcome::TimedOut,
            _ if lost => Outcome::ConnectionLost,
            _ => Outcome::FailedOther,
        }
    }
}

/// The counter of a request in flight while the fault was on, by its end and when it came.
pub(super) fn counter_for(outcome: Outcome, healed: bool) -> Counter {
    match outcome {
        Outcome::Answered if healed => Counter::fault_requests_answered_after_heal,
        Outcome::Answered => Counter::fault_requests_answered_during,
        Outcome::TimedOut => Counter::fault_requests_timed_out,
        Outcome::ConnectionLost => Counter::fault_requests_connection_lost,
        Outcome::FailedOther => Counter::fault_requests_failed_other,
    }
}

impl<'a> Shard<'a> {
    pub(super) fn apply_fault_stage(&mut self, stage: FaultStage) {
        self.fault_window = stage != FaultStage::Off;
        match stage {
            FaultStage::Off | FaultStage::On => self.heal_ns = 0,
            FaultStage::Healed if self.heal_ns == 0 => self.heal_ns = self.now_ns.max(1),
            FaultStage::Healed => {}
        }
    }

    /// Counts how the request on `slot` ended if it was in flight while the fault was on:
    /// sent before the heal (or the fault is still on) — every request that ends inside the
    /// window was in flight at some point after the fault's mark.
    pub(super) fn note_fault_outcome(&mut self, r: usize, slot: u32, outcome: Outcome) {
        if !self.fault_window {
            return;
        }
        let sent_ns = self.rings[r].conns[slot as usize].sent_ns;
        let healed = self.heal_ns != 0;
        if healed && sent_ns >= self.heal_ns {
            return;
        }
        self.metrics.incr(counter_for(outcome, healed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_sort_by_cause_and_by_the_heal() {
        assert_eq!(
            counter_for(Outcome::failed(Counter::error_request_timeout, true), true),
            Counter::fault_requests_timed_out
        );
        assert_eq!(
            counter_for(Outcome::failed(Counter::error_reset, true), false),
            Counter::fault_requests_connection_lost
        );
        assert_eq!(
            counter_for(Outcome::failed(Counter::error_http_5xx, false), false),
            Counter::fault_requests_failed_other
        );
        assert_eq!(
            counter_for(Outcome::Answered, false),
            Counter::fault_requests_answered_during
        );
        assert_eq!(
            counter_for(Outcome::Answered, true),
            Counter::fault_requests_answered_after_heal
        );
    }
}
