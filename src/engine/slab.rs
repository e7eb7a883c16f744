//! The connection slots of one client ring, in their own anonymous mapping (so the RSS growth
//! per connection is the truth about the slot). Part of `engine/`, used by `shard.rs`.

use super::conn::Conn;

/// The connection slots of one ring: an anonymous mapping of `capacity` slots, filled in order
/// as connections open. The kernel supplies each page on its first write, and huge pages are
/// declined, so a page of memory is spent when 39 connections have opened, not before: the
/// RSS growth per connection then shows the slab truthfully. (A `Vec` from the global
/// allocator did not: mimalloc's segments are backed by transparent huge pages, resident in
/// 2 MiB steps, and largely resident before the first connect.)
pub(crate) struct Slab {
    ptr: std::ptr::NonNull<Conn>,
    len: usize,
    capacity: usize,
    mapped_bytes: usize,
}

impl Slab {
    pub(crate) fn new(capacity: usize) -> std::io::Result<Slab> {
        let mapped_bytes = (capacity * std::mem::size_of::<Conn>()).max(1);
        // SAFETY: a fresh private anonymous mapping, owned by the Slab and unmapped in Drop;
        // checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: advice on our own mapping; failure only means huge pages may be used.
        unsafe { libc::madvise(ptr, mapped_bytes, libc::MADV_NOHUGEPAGE) };
        let Some(ptr) = std::ptr::NonNull::new(ptr.cast::<Conn>()) else {
            unreachable!("mmap never returns NULL for a non-fixed mapping")
        };
        Ok(Slab {
            ptr,
            len: 0,
            capacity,
            mapped_bytes,
        })
    }

    pub(crate) fn push(&mut self, conn: Conn) {
        assert!(
            self.len < self.capacity,
            "slab sized by the plan overflowed"
        );
        // SAFETY: `len < capacity` slots fit the mapping; mmap memory is page-aligned, so
        // suitably aligned for Conn; Conn is Copy (nothing to drop in the zeroed slot).
        unsafe { self.ptr.as_ptr().add(self.len).write(conn) };
        self.len += 1;
    }
}

impl std::ops::Deref for Slab {
    type Target = [Conn];
    fn deref(&self) -> &[Conn] {
        // SAFETY: the first `len` slots were initialized by `push`; the mapping lives as long
        // as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Slab {
    fn deref_mut(&mut self) -> &mut [Conn] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length; the Ring that referenced these
        // slots' descriptors is dropped before (field order in RingSlot: `ring` first).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped_bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_grows_in_place_and_pages_in_lazily() {
        let mut slab = Slab::new(100_000).unwrap();
        assert_eq!(slab.len(), 0);
        let first = slab.ptr.as_ptr();
        for id in 0..1000 {
            slab.push(Conn { id, ..Conn::FREE });
        }
        assert_eq!(slab.len(), 1000);
        assert_eq!(slab[999].id, 999);
        slab[5].id = 77;
        assert_eq!(slab[5].id, 77);
        assert_eq!(slab.ptr.as_ptr(), first, "never moves");
        // Only the pages written are resident: mincore over the whole mapping.
        let page = 4096;
        let pages = slab.mapped_bytes.div_ceil(page);
        let mut resident = vec![0u8; pages];
        // SAFETY: mincore reads our own mapping's residency into `resident` (one byte a page).
        let rc = unsafe {
            libc::mincore(
                slab.ptr.as_ptr().cast(),
                slab.mapped_bytes,
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        let resident_pages = resident.iter().filter(|&&r| r & 1 != 0).count();
        let written_pages = (1000 * std::mem::size_of::<Conn>()).div_ceil(page);
        assert!(
            resident_pages <= written_pages + 1,
            "{resident_pages} pages resident for {written_pages} written"
        );
    }
}
