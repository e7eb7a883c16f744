//! The embedded server's MCP session table, shared by all shards (a client may initialize on
//! one connection and continue on another, which SO_REUSEPORT may hand to another shard).
//! Part of `server/`; no I/O.
//!
//! A session id is 32 hex digits: the first 8 are the table index, the other 24 a 96-bit random
//! secret. Lookup is lock-free (index, then compare the secret), so the request path never takes
//! a lock; only creating and ending a session touch the free list's mutex. Memory: 24 bytes per
//! session slot, allocated once for `--max-sessions`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

pub const SESSION_ID_LEN: usize = 32;

struct Slot {
    /// High 64 bits of the secret; 0 = free (secrets are generated non-zero).
    secret_hi: AtomicU64,
    secret_lo: AtomicU32,
    /// Seconds since the table's epoch when the session was last used (idle expiry).
    last_used_s: AtomicU32,
    protocol: AtomicU8,
    /// `logging/setLevel`'s level (an index into `catalog::LOG_LEVELS`); [`LOG_LEVEL_UNSET`]
    /// until the client sets one. Lives in the slot's padding: still 24 bytes.
    log_level: AtomicU8,
}

/// No `logging/setLevel` yet.
pub const LOG_LEVEL_UNSET: u8 = u8::MAX;

pub struct SessionTable {
    slots: Box<[Slot]>,
    free: Mutex<Vec<u32>>,
    rng: Mutex<SplitMix64>,
    live: AtomicU64,
}

/// Reasons a session id did not resolve (each counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found {
        index: u32,
        protocol: u8,
        /// The session's log level, [`LOG_LEVEL_UNSET`] when none was set.
        log_level: u8,
    },
    Unknown,
}

impl SessionTable {
    pub fn new(capacity: u32, seed: u64) -> SessionTable {
        let slots = (0..capacity)
            .map(|_| Slot {
                secret_hi: AtomicU64::new(0),
                secret_lo: AtomicU32::new(0),
                last_used_s: AtomicU32::new(0),
                protocol: AtomicU8::new(0),
                log_level: AtomicU8::new(LOG_LEVEL_UNSET),
            })
            .collect();
        // Hand out low indexes first so a small run touches few pages.
        let free = (0..capacity).rev().collect();
        SessionTable {
            slots,
            free: Mutex::new(free),
            rng: Mutex::new(SplitMix64(seed)),
            live: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Creates a session and writes its id into `id_out`; `None` when the table is full.
    pub fn create(
        &self,
        protocol: u8,
        now_s: u32,
        id_out: &mut [u8; SESSION_ID_LEN],
    ) -> Option<u32> {
        let index = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        let (hi, lo) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (rng.next() | 1, rng.next() as u32)
        };
        let slot = &self.slots[index as usize];
        slot.secret_lo.store(lo, Ordering::Relaxed);
        slot.protocol.store(protocol, Ordering::Relaxed);
        slot.log_level.store(LOG_LEVEL_UNSET, Ordering::Relaxed);
        slot.last_used_s.store(now_s, Ordering::Relaxed);
        slot.secret_hi.store(hi, Ordering::Release);
        self.live.fetch_add(1, Ordering::Relaxed);
        write_hex(&mut id_out[0..8], index as u64, 8);
        write_hex(&mut id_out[8..24], hi, 16);
        write_hex(&mut id_out[24..32], lo as u64, 8);
        Some(index)
    }

    /// Resolves a session id from a request header and marks it used.
    pub fn touch(&self, id: &[u8], now_s: u32) -> Lookup {
        let Some((index, hi, lo)) = parse_id(id) else {
            return Lookup::Unknown;
        };
        let Some(slot) = self.slots.get(index as usize) else {
            return Lookup::Unknown;
        };
        if slot.secret_hi.load(Ordering::Acquire) != hi
            || slot.secret_lo.load(Ordering::Relaxed) != lo
        {
            return Lookup::Unknown;
        }
        slot.last_used_s.store(now_s, Ordering::Relaxed);
        Lookup::Found {
            index,
            protocol: slot.protocol.load(Ordering::Relaxed),
            log_level: slot.log_level.load(Ordering::Relaxed),
        }
    }

    /// `logging/setLevel` on the session at `index` (from a [`Lookup::Found`]).
    pub fn set_log_level(&self, index: u32, level: u8) {
        if let Some(slot) = self.slots.get(index as usize) {
            slot.log_level.store(level, Ordering::Relaxed);
        }
    }

    /// Ends a session (DELETE). Returns false when the id was not live.
    pub fn remove(&self, id: &[u8]) -> bool {
        let Some((index, hi, lo)) = parse_id(id) else {
            return false;
        };
        let Some(slot) = self.slots.get(index as usize) else {
            return false;
        };
        if slot.secret_lo.load(Ordering::Relaxed) != lo {
            return false;
        }
        self.release(index, hi)
    }

    fn release(&self, index: u32, hi: u64) -> bool {
        let slot = &self.slots[index as usize];
        // Only the caller that swaps the secret out frees the index, so a racing DELETE and
        // idle expiry cannot push it on the free list twice.
        if slot
            .secret_hi
            .compare_exchange(hi, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(index);
        true
    }

    /// Ends sessions idle for longer than `idle_s`; returns how many.
    pub fn expire_idle(&self, now_s: u32, idle_s: u32) -> u64 {
        let mut expired = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            let hi = slot.secret_hi.load(Ordering::Acquire);
            if hi != 0
                && now_s.saturating_sub(slot.last_used_s.load(Ordering::Relaxed)) > idle_s
                && self.release(index as u32, hi)
            {
                expired += 1;
            }
        }
        expired
    }
}

fn write_hex(out: &mut [u8], value: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().take(digits).enumerate() {
        let shift = (digits - 1 - i) * 4;
        *byte = HEX[((value >> shift) & 0xf) as usize];
    }
}

fn parse_hex(text: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in text {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | digit as u64;
    }
    Some(value)
}

fn parse_id(id: &[u8]) -> Option<(u32, u64, u32)> {
    if id.len() != SESSION_ID_LEN {
        return None;
    }
    Some((
        parse_hex(&id[0..8])? as u32,
        parse_hex(&id[8..24])?,
        parse_hex(&id[24..32])? as u32,
    ))
}

/// Small, fast, good-enough generator for session secrets: seeded from the OS at start, so
/// ids are unguessable across runs; not a CSPRNG (a load-test target needs no more).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A seed from the kernel's random pool (getrandom), falling back to the clock.
pub fn os_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into our local array.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(seed)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_touch_remove() {
        let table = SessionTable::new(4, 1);
        let mut id = [0u8; SESSION_ID_LEN];
        let index = table.create(3, 10, &mut id).unwrap();
        assert!(id.iter().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            table.touch(&id, 11),
            Lookup::Found {
                index,
                protocol: 3,
                log_level: LOG_LEVEL_UNSET
            }
        );
        table.set_log_level(index, 2);
        assert!(matches!(
            table.touch(&id, 12),
            Lookup::Found { log_level: 2, .. }
        ));
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(table.live(), 1);
        let mut wrong = id;
        wrong[20] = if wrong[20] == b'0' { b'1' } else { b'0' };
        assert_eq!(table.touch(&wrong, 11), Lookup::Unknown);
        assert_eq!(table.touch(b"not-a-session", 11), Lookup::Unknown);
        assert!(table.remove(&id));
        assert!(!table.remove(&id), "second DELETE must not free twice");
        assert_eq!(table.touch(&id, 12), Lookup::Unknown);
        assert_eq!(table.live(), 0);
    }

    #[test]
    fn full_table_refuses_then_recovers() {
        let table = SessionTable::new(2, 2);
        let mut a = [0u8; SESSION_ID_LEN];
        let mut b = [0u8; SESSION_ID_LEN];
        let mut c = [0u8; SESSION_ID_LEN];
        table.create(0, 0, &mut a).unwrap();
        table.create(0, 0, &mut b).unwrap();
        assert!(table.create(0, 0, &mut c).is_none());
        assert!(table.remove(&a));
        assert!(table.create(0, 0, &mut c).is_some());
        assert_ne!(a, c, "a reused index gets a new secret");
        assert_eq!(table.touch(&a, 0), Lookup::Unknown);
    }

    #[test]
    fn idle_sessions_expire() {
        let table = SessionTable::new(3, 3);
        let mut a = [0u8; SESSION_ID_LEN];
        let mut b = [0u8; SESSION_ID_LEN];
        table.create(0, 0, &mut a).unwrap();
        table.create(0, 0, &mut b).unwrap();
        table.touch(&b, 100);
        assert_eq!(table.expire_idle(120, 60), 1);
        assert_eq!(table.touch(&a, 120), Lookup::Unknown);
        assert!(matches!(table.touch(&b, 120), Lookup::Found { .. }));
    }
}
