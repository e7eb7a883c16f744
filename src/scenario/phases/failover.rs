//! Replica failover as failure_recovery measures it (`--failover`, `--replicas N`): the
//! per-replica counts the shards publish (`Shared::replica_*`) read at the fault, while the
//! way back is sampled, and at the phase's end — which replicas lost their sessions, how fast
//! those sessions answered on another replica, and each replica's load before and after.
//! Part of `scenario/phases/`, a room of `recovery.rs`; every figure is a counter difference.

use crate::engine::control::Shared;
use crate::report::{FailoverReport, ReplicaLoad};
use crate::scenario::driver::Driver;
use crate::scenario::logic;
use std::time::Instant;

/// Share of the failed replicas' sessions that must answer elsewhere (as for recovery).
const FAILED_OVER_FRACTION: f64 = 0.99;

/// The shards' per-replica counters at one instant.
struct Snapshot {
    at: Instant,
    held: Vec<u64>,
    answered: Vec<u64>,
    moved_away: Vec<u64>,
    moved_answering: u64,
}

impl Snapshot {
    fn take(shared: &Shared) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            held: shared.per_replica(&shared.replica_held),
            answered: shared.per_replica(&shared.replica_answered),
            moved_away: shared.per_replica(&shared.replica_moved_away),
            moved_answering: Shared::sum(&shared.moved_answering),
        }
    }
}

pub struct FailoverWatch {
    load_start: Snapshot,
    fault: Option<Snapshot>,
    /// `--fault kill-replica:K`: its index (0-based).
    killed: Option<usize>,
    /// (seconds since the fault, failed-over sessions answering elsewhere).
    samples: Vec<(f64, u64)>,
    recovered: Option<Snapshot>,
}

impl FailoverWatch {
    /// At the start of the phase's load; `None` without replicas.
    pub fn start(d: &Driver<'_>) -> Option<FailoverWatch> {
        (d.shared.replicas > 0).then(|| FailoverWatch {
            load_start: Snapshot::take(d.shared),
            fault: None,
            killed: None,
            samples: vec![(0.0, 0)],
            recovered: None,
        })
    }

    /// Just before the fault is injected.
    pub fn at_fault(&mut self, d: &Driver<'_>, killed: Option<usize>) {
        self.fault = Some(Snapshot::take(d.shared));
        self.killed = killed;
    }

    /// Replicas whose sessions moved away since the fault (and the killed one).
    fn failed_replicas(&self, now: &Snapshot) -> Vec<usize> {
        let Some(fault) = &self.fault else {
            return Vec::new();
        };
        (0..now.moved_away.len())
            .filter(|&k| now.moved_away[k] > fault.moved_away[k] || self.killed == Some(k))
            .collect()
    }

    fn sessions_on(&self, replicas: &[usize]) -> u64 {
        self.fault
            .as_ref()
            .map_or(0, |f| replicas.iter().map(|&k| f.held[k]).sum())
    }

    /// Samples the way back; `true` once 99 % of the failed replicas' sessions answer
    /// elsewhere (vacuously when none has failed).
    pub fn sample(&mut self, d: &Driver<'_>, t_s: f64) -> bool {
        let now = Snapshot::take(d.shared);
        let Some(fault) = &self.fault else {
            return true;
        };
        let answering = now.moved_answering.saturating_sub(fault.moved_answering);
        self.samples.push((t_s, answering));
        let needed = self.sessions_on(&self.failed_replicas(&now)) as f64 * FAILED_OVER_FRACTION;
        answering as f64 >= needed.ceil()
    }

    /// Recovery is over; the phase's last second (the recovered service) starts.
    pub fn at_recovered(&mut self, d: &Driver<'_>) {
        self.recovered = Some(Snapshot::take(d.shared));
    }

    /// At the end of the phase.
    pub fn report(self, d: &Driver<'_>) -> Option<FailoverReport> {
        let end = Snapshot::take(d.shared);
        let fault = self.fault.as_ref()?;
        let recovered = self.recovered.as_ref().unwrap_or(&end);
        let failed = self.failed_replicas(&end);
        let on_failed = self.sessions_on(&failed);
        let rate = |from: &Snapshot, to: &Snapshot, k: usize| {
            let s = to.at.duration_since(from.at).as_secs_f64();
            if s > 0.0 {
                to.answered[k].saturating_sub(from.answered[k]) as f64 / s
            } else {
                0.0
            }
        };
        let replicas = d
            .plan
            .replicas
            .iter()
            .enumerate()
            .map(|(k, urls)| ReplicaLoad {
                replica: k + 1,
                urls: urls.clone(),
                sessions_at_fault: fault.held[k],
                sessions_after: end.held[k],
                answered_per_s_before: rate(&self.load_start, fault, k),
                answered_per_s_after: rate(recovered, &end, k),
                sessions_moved_away: end.moved_away[k].saturating_sub(fault.moved_away[k]),
            })
            .collect();
        let moved: u64 = (0..end.moved_away.len())
            .map(|k| end.moved_away[k].saturating_sub(fault.moved_away[k]))
            .sum();
        let failover_s = if on_failed == 0 {
            None
        } else {
            logic::recovery_time_s(on_failed, &self.samples, FAILED_OVER_FRACTION)
        };
        Some(FailoverReport {
            policy: d
                .plan
                .failover
                .map(|p| p.name().to_string())
                .unwrap_or_default(),
            failed_replicas: failed.iter().map(|k| k + 1).collect(),
            sessions_on_failed: on_failed,
            sessions_failed_over: moved,
            sessions_answering_elsewhere: end.moved_answering.saturating_sub(fault.moved_answering),
            failover_s,
            curve: logic::recovery_curve(on_failed, &self.samples, None),
            replicas,
        })
    }
}
