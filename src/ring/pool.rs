//! A pool of byte buffers with a free list, shared by the server and client shards for send
//! and spill buffers. Part of `ring/`: the one rule it keeps for io_uring is that a buffer
//! handed to the kernel is neither touched nor reused until its completion, which the caller
//! ensures by giving it back only then. Steady state allocates nothing: returned buffers keep
//! their capacity, up to a bounded reserve.

/// Capacity a fresh buffer starts with: a typical MCP request or response fits.
pub const POOL_BUF_BYTES: usize = 512;
/// Free buffers kept with their memory; beyond this, returned buffers release it (a burst
/// with every connection sending at once must not pin one buffer per connection forever).
pub const POOL_RESERVE_MAX: usize = 1024;
/// A buffer grown past this (a huge body) releases its memory when returned.
const POOL_BUF_KEEP_MAX_BYTES: usize = 64 * 1024;

pub struct Pool {
    pub bufs: Vec<Vec<u8>>,
    /// Bytes of each buffer already sent (partial sends).
    pub sent: Vec<usize>,
    free: Vec<u32>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    pub fn new() -> Pool {
        Pool {
            bufs: Vec::new(),
            sent: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn take(&mut self) -> u32 {
        if let Some(i) = self.free.pop() {
            let buf = &mut self.bufs[i as usize];
            if buf.capacity() == 0 {
                buf.reserve(POOL_BUF_BYTES);
            }
            return i;
        }
        self.bufs.push(Vec::with_capacity(POOL_BUF_BYTES));
        self.sent.push(0);
        (self.bufs.len() - 1) as u32
    }

    /// Buffers handed out and not yet given back.
    pub fn in_use(&self) -> usize {
        self.bufs.len() - self.free.len()
    }

    pub fn give(&mut self, i: u32) {
        let buf = &mut self.bufs[i as usize];
        buf.clear();
        if buf.capacity() > POOL_BUF_KEEP_MAX_BYTES || self.free.len() >= POOL_RESERVE_MAX {
            *buf = Vec::new();
        }
        self.sent[i as usize] = 0;
        self.free.push(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds_memory() {
        let mut pool = Pool::new();
        let a = pool.take();
        pool.bufs[a as usize].extend_from_slice(b"hello");
        pool.sent[a as usize] = 3;
        assert_eq!(pool.in_use(), 1);
        pool.give(a);
        assert_eq!(pool.in_use(), 0);
        let b = pool.take();
        assert_eq!(a, b, "a returned buffer is reused");
        assert!(pool.bufs[b as usize].is_empty() && pool.sent[b as usize] == 0);
        pool.bufs[b as usize].resize(100_000, 0);
        pool.give(b);
        assert_eq!(
            pool.bufs[b as usize].capacity(),
            0,
            "a huge buffer releases its memory"
        );
        let again = pool.take();
        assert!(pool.bufs[again as usize].capacity() >= POOL_BUF_BYTES);
    }

    #[test]
    fn reserve_is_bounded() {
        let mut pool = Pool::new();
        let taken: Vec<u32> = (0..POOL_RESERVE_MAX + 10).map(|_| pool.take()).collect();
        for i in taken {
            pool.give(i);
        }
        let kept = pool.bufs.iter().filter(|b| b.capacity() > 0).count();
        assert_eq!(kept, POOL_RESERVE_MAX);
    }
}
