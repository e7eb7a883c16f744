//! Provided buffer ring (IORING_REGISTER_PBUF_RING): the one pool a ring's multishot receives
//! draw from, so an idle connection holds no receive buffer. Part of `ring/`.
//!
//! Buffers go back to the kernel as soon as the receive handler has parsed (or spilled) their
//! bytes; `recycle` only writes the entry, `publish` makes a batch visible with one release
//! store of the tail.

use io_uring::IoUring;
use io_uring::types::BufRingEntry;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

pub struct BufRing {
    entries: *mut BufRingEntry,
    entries_len_bytes: usize,
    data: Box<[u8]>,
    buf_bytes: u32,
    count: u16,
    mask: u16,
    tail: u16,
    published_tail: u16,
}

impl BufRing {
    /// Allocates `count` buffers of `buf_bytes` (count a power of two ≤ 32768) and registers
    /// them as group `group_id` of `uring`.
    pub fn new(uring: &IoUring, group_id: u16, count: u16, buf_bytes: u32) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two() && count <= 32768,
            "buffer count must be a power of two"
        );
        let entries_len_bytes = count as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping, no file; checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut data = vec![0u8; count as usize * buf_bytes as usize].into_boxed_slice();
        // Fault every page in now: the pool is a fixed cost of the ring, and touching it lazily
        // would show up as per-connection memory growth in the measurements. Volatile so the
        // store is not elided on memory the allocator already zeroed.
        for page in data.chunks_mut(4096) {
            // SAFETY: `page` is a live, exclusively borrowed slice of at least one byte.
            unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
        }
        let mut ring = BufRing {
            entries: ptr.cast(),
            entries_len_bytes,
            data,
            buf_bytes,
            count,
            mask: count - 1,
            tail: 0,
            published_tail: 0,
        };
        // SAFETY: the entries mapping and `data` are owned by the returned BufRing, which the
        // Ring owning `uring` drops only after the io_uring itself is gone (field order in Ring:
        // `uring` before `bufs`), so the kernel never sees them freed while registered.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ptr as u64, count, group_id, 0)?;
        }
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The bytes a completion reported in buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.buf_bytes as usize);
        let start = bid as usize * self.buf_bytes as usize;
        &self.data[start..start + len]
    }

    /// The bytes of buffer `bid`, writable: a completion handed the buffer to us, and the
    /// kernel writes into it again only after `recycle` (the TLS layer decrypts in place).
    pub fn get_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.count && len <= self.buf_bytes as usize);
        let start = bid as usize * self.buf_bytes as usize;
        &mut self.data[start..start + len]
    }

    /// Hands buffer `bid` back (visible to the kernel after `publish`).
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count);
        let index = (self.tail & self.mask) as usize;
        let addr = self.data.as_ptr() as u64 + bid as u64 * self.buf_bytes as u64;
        // SAFETY: `index` < count and the mapping holds `count` entries; only this thread
        // writes entries, and the kernel reads an entry only once the tail covers it.
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(addr);
            entry.set_len(self.buf_bytes);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel with one release store.
    pub fn publish(&mut self) {
        if self.tail == self.published_tail {
            return;
        }
        // SAFETY: the tail lives inside entry 0 of our live mapping (io_uring ABI); the
        // AtomicU16 view gives the release ordering the kernel's acquire load pairs with.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.published_tail = self.tail;
    }

    pub fn buf_bytes(&self) -> u32 {
        self.buf_bytes
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: mapping created in `new` with this length; the ring that used it is gone.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len_bytes);
        }
    }
}
