//! Replicas of one service (`run --failover`, `run --replicas N`): which target each of a
//! shard's sessions is homed on, which targets refused a connect lately, and where a session
//! whose replica failed goes next (round-robin or least-loaded). Part of `engine/`, owned by
//! one shard (`shard.rs` asks it on `Action::SeekReplica` and tells it of held sessions and
//! answers); I/O-free and unit-tested here. Without replicas a shard has none of this and a
//! connection's target stays `index % targets` (no byte per session spent).
//!
//! A session stays where it initialized — its `Mcp-Session-Id` means nothing elsewhere — so it
//! moves only when its own connect fails, and never back when the old replica returns.

/// How a session whose replica failed picks the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverPolicy {
    /// The next live target after the last one chosen (spreads the moved sessions evenly).
    RoundRobin,
    /// The live target of the replica with the fewest sessions homed on it.
    LeastLoaded,
}

impl FailoverPolicy {
    pub fn parse(text: &str) -> Result<FailoverPolicy, String> {
        match text {
            "round-robin" => Ok(FailoverPolicy::RoundRobin),
            "least-loaded" => Ok(FailoverPolicy::LeastLoaded),
            other => Err(format!(
                "--failover {other:?}: give round-robin or least-loaded"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailoverPolicy::RoundRobin => "round-robin",
            FailoverPolicy::LeastLoaded => "least-loaded",
        }
    }
}

/// How long a target that refused (or timed out) a connect is passed over by moving sessions:
/// long enough that a dead replica is not tried by every session in turn, short enough that
/// one back from a restart takes new sessions again within a second.
pub const TARGET_DOWN_NS: u64 = 1_000_000_000;

/// Set in `home` while a moved session has not answered on its new replica yet (the failover
/// time counts them answering).
const MOVED_UNANSWERED: u16 = 1 << 15;
/// Targets a run may have with replicas (the low 15 bits of `home`).
pub const TARGETS_MAX: usize = MOVED_UNANSWERED as usize;

/// One shard's view of the replicas.
pub struct Replicas {
    policy: FailoverPolicy,
    /// Each target's replica.
    replica_of: Vec<u16>,
    /// Per ring, per session slot: the target it is homed on (and `MOVED_UNANSWERED`).
    home: Vec<Vec<u16>>,
    /// Per target: passed over until this shard-clock instant (0 = live).
    down_until_ns: Vec<u64>,
    /// Per target and per replica: session slots homed there.
    homed_per_target: Vec<u32>,
    homed_per_replica: Vec<u32>,
    /// Per replica: sessions held there now, load requests answered there (run total), and
    /// sessions that moved away from it (run total).
    pub held: Vec<u64>,
    pub answered: Vec<u64>,
    pub moved_away: Vec<u64>,
    /// Moved sessions that have answered on their new replica (run total: the coordinator
    /// takes the difference from the fault on, so a move racing the fault's mark still counts).
    pub moved_answering: u64,
    /// Round-robin: the target chosen last.
    cursor: usize,
}

impl Replicas {
    /// `sessions_per_ring[r]` session slots on ring `r`, the first with global index
    /// `first_index` and the rest following ring by ring every `slots_stride` indices (as
    /// `Shard::global_index` counts): each starts on `index % targets`, as without replicas.
    pub fn new(
        policy: FailoverPolicy,
        replica_of: Vec<u16>,
        sessions_per_ring: &[u32],
        first_index: u32,
        slots_stride: u32,
    ) -> Replicas {
        let targets = replica_of.len();
        assert!((1..=TARGETS_MAX).contains(&targets), "{targets} targets");
        let replicas = replica_of
            .iter()
            .map(|&r| r as usize + 1)
            .max()
            .unwrap_or(1);
        let mut homed_per_target = vec![0u32; targets];
        let mut homed_per_replica = vec![0u32; replicas];
        let home = sessions_per_ring
            .iter()
            .enumerate()
            .map(|(r, &sessions)| {
                (0..sessions)
                    .map(|slot| {
                        let index =
                            first_index as usize + r * slots_stride as usize + slot as usize;
                        let target = index % targets;
                        homed_per_target[target] += 1;
                        homed_per_replica[replica_of[target] as usize] += 1;
                        target as u16
                    })
                    .collect()
            })
            .collect();
        Replicas {
            policy,
            replica_of,
            home,
            down_until_ns: vec![0; targets],
            homed_per_target,
            homed_per_replica,
            held: vec![0; replicas],
            answered: vec![0; replicas],
            moved_away: vec![0; replicas],
            moved_answering: 0,
            cursor: 0,
        }
    }

    pub fn replicas(&self) -> usize {
        self.held.len()
    }

    /// The target session slot `slot` of ring `r` is homed on.
    pub fn target(&self, r: usize, slot: u32) -> usize {
        usize::from(self.home[r][slot as usize] & !MOVED_UNANSWERED)
    }

    pub fn replica(&self, r: usize, slot: u32) -> usize {
        self.replica_of[self.target(r, slot)] as usize
    }

    /// The slot's session is held now (`held`) or no longer.
    pub fn held_changed(&mut self, r: usize, slot: u32, held: bool) {
        let replica = self.replica(r, slot);
        if held {
            self.held[replica] += 1;
        } else {
            self.held[replica] = self.held[replica].saturating_sub(1);
        }
    }

    /// A load request on the slot's session was answered.
    pub fn answered(&mut self, r: usize, slot: u32) {
        let replica = self.replica(r, slot);
        self.answered[replica] += 1;
        let home = &mut self.home[r][slot as usize];
        if *home & MOVED_UNANSWERED != 0 {
            *home &= !MOVED_UNANSWERED;
            self.moved_answering += 1;
        }
    }

    /// The slot's connect failed at `now_ns`: it moves to a live target of another replica if
    /// there is one (`true`). `unreachable`: the failure says its target is gone, so moving
    /// sessions pass it over for a while. `held`: the slot holds a session (counted where it
    /// is, and towards the failover time once it answers there).
    pub fn seek(
        &mut self,
        r: usize,
        slot: u32,
        now_ns: u64,
        held: bool,
        unreachable: bool,
    ) -> bool {
        let from = self.target(r, slot);
        if unreachable {
            self.down_until_ns[from] = now_ns + TARGET_DOWN_NS;
        }
        let from_replica = self.replica_of[from];
        let live = |t: usize| self.replica_of[t] != from_replica && self.down_until_ns[t] <= now_ns;
        let targets = self.replica_of.len();
        let to = match self.policy {
            FailoverPolicy::RoundRobin => (1..=targets)
                .map(|step| (self.cursor + step) % targets)
                .find(|&t| live(t)),
            FailoverPolicy::LeastLoaded => (0..targets).filter(|&t| live(t)).min_by_key(|&t| {
                (
                    self.homed_per_replica[self.replica_of[t] as usize],
                    self.homed_per_target[t],
                    t,
                )
            }),
        };
        let Some(to) = to else {
            return false;
        };
        self.cursor = to;
        let to_replica = self.replica_of[to] as usize;
        self.homed_per_target[from] -= 1;
        self.homed_per_replica[from_replica as usize] -= 1;
        self.homed_per_target[to] += 1;
        self.homed_per_replica[to_replica] += 1;
        if held {
            self.held[from_replica as usize] = self.held[from_replica as usize].saturating_sub(1);
            self.held[to_replica] += 1;
            self.moved_away[from_replica as usize] += 1;
        }
        let moved = if held { MOVED_UNANSWERED } else { 0 };
        self.home[r][slot as usize] = to as u16 | moved;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three replicas of two targets each (targets 0,1 → replica 0; 2,3 → 1; 4,5 → 2), one
    /// ring of 12 sessions.
    fn three(policy: FailoverPolicy) -> Replicas {
        Replicas::new(policy, vec![0, 0, 1, 1, 2, 2], &[12], 0, 12)
    }

    #[test]
    fn sessions_start_where_they_would_without_replicas() {
        let r = Replicas::new(FailoverPolicy::RoundRobin, vec![0, 1, 2], &[4, 4], 10, 4);
        let targets: Vec<usize> = (0..4).map(|s| r.target(1, s)).collect();
        // Ring 1 starts at global index 14: 14 % 3 = 2, then 0, 1, 2.
        assert_eq!(targets, [2, 0, 1, 2]);
    }

    #[test]
    fn a_failed_replica_s_sessions_spread_over_the_survivors_round_robin() {
        let mut r = three(FailoverPolicy::RoundRobin);
        let on_replica_0: Vec<u32> = (0..12).filter(|&s| r.replica(0, s) == 0).collect();
        for &s in &on_replica_0 {
            r.held_changed(0, s, true);
        }
        assert_eq!(r.held[0], 4);
        for &s in &on_replica_0 {
            assert!(r.seek(0, s, 1000, true, true));
            assert_ne!(r.replica(0, s), 0);
        }
        assert_eq!(r.held, [0, 2, 2]);
        assert_eq!(r.moved_away, [4, 0, 0]);
        // Each survivor target took one: the cursor walks the live targets in turn.
        let mut to: Vec<usize> = on_replica_0.iter().map(|&s| r.target(0, s)).collect();
        to.sort();
        assert_eq!(to, [2, 3, 4, 5]);
        // The moved sessions count towards the failover time once they answer there.
        r.answered(0, on_replica_0[0]);
        r.answered(0, on_replica_0[0]);
        assert_eq!(r.moved_answering, 1);
        assert_eq!(r.answered.iter().sum::<u64>(), 2);
    }

    #[test]
    fn least_loaded_fills_the_emptiest_replica_first() {
        let mut r = three(FailoverPolicy::LeastLoaded);
        // Replica 2 loses two sessions first (its connects failed): replicas 0 and 1, tied
        // at four, take one each.
        let on_2: Vec<u32> = (0..12).filter(|&s| r.replica(0, s) == 2).collect();
        assert!(r.seek(0, on_2[0], 0, false, true));
        assert!(r.seek(0, on_2[1], 0, false, true));
        assert_eq!(r.homed_per_replica, [5, 5, 2]);
        // Later (the down marks expired) replica 1 fails: its sessions go to whichever of 0
        // and 2 has fewer, 2 first.
        let t = 2 * TARGET_DOWN_NS;
        let on_1: Vec<u32> = (0..12).filter(|&s| r.replica(0, s) == 1).collect();
        let mut went = Vec::new();
        for &s in &on_1 {
            assert!(r.seek(0, s, t, false, true));
            went.push(r.replica(0, s));
        }
        assert_eq!(r.homed_per_replica[1], 0);
        assert_eq!(r.homed_per_replica[0] + r.homed_per_replica[2], 12);
        assert_eq!(went[..3], [2, 2, 2]);
    }

    #[test]
    fn with_every_other_replica_down_the_session_stays() {
        let mut r = Replicas::new(FailoverPolicy::RoundRobin, vec![0, 1], &[2], 0, 2);
        assert!(r.seek(0, 0, 100, true, true)); // target 0 fails: to 1
        assert_eq!(r.target(0, 0), 1);
        // Target 1 fails within the second: 0 is still passed over, nothing is live.
        assert!(!r.seek(0, 1, 200, true, true));
        assert_eq!(r.target(0, 1), 1);
        // A reset is no sign the replica is gone: target 1 stays live for the others.
        let mut r = Replicas::new(FailoverPolicy::RoundRobin, vec![0, 1], &[2], 0, 2);
        assert!(r.seek(0, 1, 100, true, false)); // slot 1: target 1 reset, to 0
        assert!(r.seek(0, 0, 200, true, true)); // slot 0: target 0 refused, to 1
        assert_eq!(r.target(0, 0), 1);
        let mut r = Replicas::new(FailoverPolicy::RoundRobin, vec![0, 1], &[2], 0, 2);
        assert!(r.seek(0, 0, 100, true, true));
        assert!(!r.seek(0, 1, 200, true, true));
        // Once the mark on 0 expires it takes sessions again.
        assert!(r.seek(0, 1, 100 + TARGET_DOWN_NS, true, true));
        assert_eq!(r.target(0, 1), 0);
    }
}
