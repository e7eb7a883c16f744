//! Replica failover as one shard carries it out (`--failover`, `--replicas N`): where each
//! session connects, what happens on `Action::SeekReplica`, and the per-replica counts the
//! coordinator reads (`Shared::replica_*`). The choice itself is `engine/replicas.rs`
//! (I/O-free); this room only ties it to the slots. Part of `engine/`, a room of `shard.rs`.

use super::super::conn::ConnFlags as F;
use super::super::machine::Event;
use super::super::plan::{EnginePlan, ShardPlan};
use super::super::replicas::Replicas;
use super::Shard;
use std::sync::atomic::Ordering;

/// The shard's replica state, or none without `--failover`.
pub(super) fn new_replicas(
    plan: &EnginePlan,
    slice: &ShardPlan,
    sessions_per_ring: &[u32],
) -> Option<Replicas> {
    let policy = plan.failover?;
    let replica_of = plan.targets.iter().map(|t| t.replica).collect();
    Some(Replicas::new(
        policy,
        replica_of,
        sessions_per_ring,
        slice.first_connection,
        plan.sessions_per_ring,
    ))
}

impl Shard<'_> {
    /// The target session slot `slot` of ring `r` connects to (a stream: its owner's).
    pub(super) fn session_target(&self, r: usize, slot: u32) -> usize {
        match &self.replicas {
            Some(replicas) => replicas.target(r, slot),
            None => self.global_index(r, slot) as usize % self.targets.len(),
        }
    }

    /// `Action::SeekReplica`: the slot's connect failed; move it to another replica if one is
    /// live, and let the machine go on from there (`unreachable`: see `Action::SeekReplica`).
    pub(super) fn seek_replica(&mut self, r: usize, slot: u32, unreachable: bool) {
        let held = self.rings[r].conns[slot as usize].flags.intersects(F::HELD);
        let now_ns = self.now_ns;
        let found = self
            .replicas
            .as_mut()
            .is_some_and(|replicas| replicas.seek(r, slot, now_ns, held, unreachable));
        self.run_event(r, slot, Event::ReplicaSought { found });
    }

    /// The slot's session became held (`true`) or no longer is.
    pub(super) fn replica_held_changed(&mut self, r: usize, slot: u32, held: bool) {
        if let Some(replicas) = &mut self.replicas {
            replicas.held_changed(r, slot, held);
        }
    }

    /// A load request on the slot's session was answered.
    pub(super) fn replica_answered(&mut self, r: usize, slot: u32) {
        if let Some(replicas) = &mut self.replicas {
            replicas.answered(r, slot);
        }
    }

    /// Publishes the per-replica counts (every loop turn, with the shard's other counts).
    pub(super) fn publish_replicas(&self) {
        let Some(replicas) = &self.replicas else {
            return;
        };
        let n = replicas.replicas();
        let at = self.id * n;
        for k in 0..n {
            self.shared.replica_held[at + k].store(replicas.held[k], Ordering::Relaxed);
            self.shared.replica_answered[at + k].store(replicas.answered[k], Ordering::Relaxed);
            self.shared.replica_moved_away[at + k].store(replicas.moved_away[k], Ordering::Relaxed);
        }
        self.shared.moved_answering[self.id].store(replicas.moved_answering, Ordering::Relaxed);
    }
}
