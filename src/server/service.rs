//! The calibrated service of `serve --service-time T --concurrency C`: a request that does
//! work (`ping`, `tools/call`) holds one of C service slots for T (plus a `sleep` tool's own
//! delay); requests that find every slot busy wait in FIFO order. A server built this way has a
//! capacity known by construction — C ÷ T requests per second, and a latency of exactly T
//! while unloaded — so a test can check that a report tells the truth about saturation.
//!
//! Part of `server/`; I/O-free and clock-free (time is an argument): the shard turns a
//! `Started` deadline into a timer and calls `finish` when it fires.

use std::collections::VecDeque;

/// Who waits for (or holds) a service slot: the connection's ring, slot and generation, and
/// the extra delay of its request (a `sleep` tool's `ms`), ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub ring: u8,
    pub slot: u32,
    pub generation: u16,
    pub extra_ns: u64,
}

/// What `admit` or `finish` decided for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub job: Job,
    /// When its service ends (the shard's timer deadline), ns.
    pub done_ns: u64,
}

/// One shard's share of the service slots and its waiting line.
#[derive(Debug)]
pub struct ServiceQueue {
    service_ns: u64,
    /// Slots of this shard; `u32::MAX` = no concurrency limit.
    slots: u32,
    busy: u32,
    waiting: VecDeque<Job>,
    /// Requests that had to wait for a slot.
    pub queued_total: u64,
    /// Longest the waiting line has been.
    pub waiting_max: usize,
}

impl ServiceQueue {
    /// `slots == 0` means unlimited (every request is served at once, after `service_ns`).
    pub fn new(service_ns: u64, slots: u32) -> ServiceQueue {
        ServiceQueue {
            service_ns,
            slots: if slots == 0 { u32::MAX } else { slots },
            busy: 0,
            waiting: VecDeque::new(),
            queued_total: 0,
            waiting_max: 0,
        }
    }

    /// A request arrives at `now_ns`: it starts now if a slot is free, else it waits.
    pub fn admit(&mut self, job: Job, now_ns: u64) -> Option<Started> {
        if self.busy < self.slots {
            self.busy += 1;
            return Some(self.start(job, now_ns));
        }
        self.waiting.push_back(job);
        self.queued_total += 1;
        self.waiting_max = self.waiting_max.max(self.waiting.len());
        None
    }

    /// A service ended at `now_ns` (its slot is free, whether or not its connection is still
    /// there: the work was done either way). Starts the next waiting job that `alive` accepts;
    /// jobs of connections that went away are discarded.
    pub fn finish(&mut self, now_ns: u64, mut alive: impl FnMut(&Job) -> bool) -> Option<Started> {
        assert!(self.busy > 0, "a service finished that never started");
        while let Some(job) = self.waiting.pop_front() {
            if alive(&job) {
                return Some(self.start(job, now_ns));
            }
        }
        self.busy -= 1;
        None
    }

    pub fn busy(&self) -> u32 {
        self.busy
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn start(&self, job: Job, now_ns: u64) -> Started {
        Started {
            job,
            done_ns: now_ns + self.service_ns + job.extra_ns,
        }
    }
}

/// This shard's share of `concurrency` slots over `shards` shards (0 = unlimited). The plan
/// keeps shards ≤ concurrency, so every shard has at least one.
pub fn slots_of_shard(concurrency: u32, shards: usize, shard: usize) -> u32 {
    if concurrency == 0 {
        return 0;
    }
    let shards = shards as u32;
    let base = concurrency / shards;
    base + u32::from((shard as u32) < concurrency % shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(slot: u32) -> Job {
        Job {
            ring: 0,
            slot,
            generation: 1,
            extra_ns: 0,
        }
    }

    #[test]
    fn free_slots_start_at_once_then_requests_wait_in_order() {
        let mut q = ServiceQueue::new(25_000_000, 2);
        assert_eq!(q.admit(job(1), 0).map(|s| s.done_ns), Some(25_000_000));
        assert_eq!(q.admit(job(2), 1).map(|s| s.done_ns), Some(25_000_001));
        assert_eq!(q.admit(job(3), 2), None);
        assert_eq!(q.admit(job(4), 3), None);
        assert_eq!((q.busy(), q.waiting(), q.queued_total), (2, 2, 2));
        let next = q.finish(25_000_000, |_| true).unwrap();
        assert_eq!(next.job.slot, 3);
        assert_eq!(next.done_ns, 50_000_000);
        let next = q.finish(25_000_001, |_| true).unwrap();
        assert_eq!(next.job.slot, 4);
        assert_eq!(q.finish(50_000_000, |_| true), None);
        assert_eq!(q.finish(50_000_001, |_| true), None);
        assert_eq!((q.busy(), q.waiting(), q.waiting_max), (0, 0, 2));
    }

    #[test]
    fn jobs_of_closed_connections_are_skipped_and_free_the_slot() {
        let mut q = ServiceQueue::new(10, 1);
        q.admit(job(1), 0).unwrap();
        assert_eq!(q.admit(job(2), 0), None);
        assert_eq!(q.admit(job(3), 0), None);
        let next = q.finish(10, |j| j.slot != 2).unwrap();
        assert_eq!(next.job.slot, 3);
        assert_eq!(q.finish(20, |_| false), None);
        assert_eq!(q.busy(), 0);
    }

    #[test]
    fn extra_delay_adds_to_the_service_time() {
        let mut q = ServiceQueue::new(1_000, 0);
        let started = q
            .admit(
                Job {
                    extra_ns: 500,
                    ..job(1)
                },
                100,
            )
            .unwrap();
        assert_eq!(started.done_ns, 1_600);
        // Unlimited: nobody waits.
        for slot in 0..1000 {
            assert!(q.admit(job(slot), 0).is_some());
        }
        assert_eq!(q.queued_total, 0);
    }

    #[test]
    fn capacity_is_split_over_shards_exactly() {
        assert_eq!(slots_of_shard(20, 2, 0) + slots_of_shard(20, 2, 1), 20);
        assert_eq!(slots_of_shard(5, 2, 0), 3);
        assert_eq!(slots_of_shard(5, 2, 1), 2);
        assert_eq!(slots_of_shard(0, 2, 1), 0);
    }
}
