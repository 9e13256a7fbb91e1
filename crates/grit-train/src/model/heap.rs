//! Returning freed heap memory to the system during a model's first training steps.
//!
//! With glibc (2.36), the first training steps leave freed but still resident blocks in each
//! pool thread's heap. matrixmultiply allocates its packing buffer with 64-byte alignment at
//! every product. glibc cuts the spare bytes of such a block off as small blocks and keeps
//! them in the thread's cache of small freed blocks, where they count as in use. The freed
//! buffer then cannot merge with the space around it and is a few dozen bytes too small for
//! the next step's request, so each step takes a new buffer above the last one. This stops
//! once that cache is full, after about six steps. Releasing the free pages after each of
//! the first steps keeps those buffers out of the process's resident memory. On a 2-core
//! AMD EPYC VM, the MNIST MLP's median peak went from 63.92 to 62.77 MB over 15 runs.
//!
//! Each release costs the call and the page faults when the released pages are used again.
//! That came to 240 to 300 µs per step in a loop of one-step `fit` calls on the MNIST MLP.
//! So a model pays it for its first [`RELEASE_STEPS`] steps only, whether they come in one
//! `fit` call or several.

/// The number of a model's first training steps after each of which `fit` releases the free
/// heap memory. It is more than twice the six or so steps that the heaps grow for.
pub(crate) const RELEASE_STEPS: usize = 16;

/// Returns glibc malloc's free whole pages to the system (`malloc_trim`) on Linux with glibc,
/// and does nothing elsewhere. A program whose global allocator is not glibc's malloc gains
/// nothing from it.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions. It locks each heap while it walks it, so
    // other threads may allocate and free meanwhile.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    const BLOCK: usize = 64 * 1024;

    /// glibc's `malloc_trim` keeps the first 32 bytes at a freed block's address, where it
    /// stores its list pointers, so the page that contains them stays resident.
    const KEPT_BYTES: usize = 32;

    /// Returns the page size.
    fn page_size() -> usize {
        // SAFETY: `sysconf` has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    /// Returns how many of the whole pages inside the freed `block`, past the bytes that
    /// `malloc_trim` keeps, are resident. `flags` needs a byte per page of a block, and is
    /// allocated before the blocks are freed so that it does not take their place.
    fn resident_pages(block: usize, flags: &mut [u8]) -> usize {
        let page = page_size();
        let start = (block + KEPT_BYTES).next_multiple_of(page);
        let end = (block + BLOCK) / page * page;
        let pages = (end - start) / page;
        // SAFETY: `start` is page-aligned and `flags` has a byte for each of the `pages`
        // pages. `mincore` only reports whether pages are resident, and it fails without
        // side effects on pages that are not mapped.
        let status = unsafe { libc::mincore(start as *mut _, end - start, flags.as_mut_ptr()) };
        assert_eq!(status, 0, "mincore failed for {start:#x}..{end:#x}");
        flags[..pages].iter().filter(|&&flag| flag & 1 == 1).count()
    }

    #[test]
    fn freed_blocks_leave_memory() {
        // NOTE: with pages over 16 KiB a 64 KiB block may hold no whole page, and a larger
        // block would be a mapping of its own, which glibc unmaps when it is freed.
        let page = page_size();
        assert!(
            page <= 16 * 1024,
            "the test needs pages of 16 KiB or less, not {page}"
        );
        let mut flags = vec![0u8; BLOCK / page];
        // Other tests train models, and their first steps release free memory too. When
        // one of them does that between the free and the first count, the blocks are
        // allocated and freed again.
        for _ in 0..10 {
            // Blocks below glibc's threshold for mappings of their own (128 KiB or more)
            // come from this thread's heap. The last one stays allocated, so the others are
            // freed below it and the heap cannot give them back by shrinking.
            let mut blocks: Vec<Vec<u8>> = (0..9).map(|_| vec![1u8; BLOCK]).collect();
            let last_block = blocks.pop();
            let places: Vec<usize> = blocks.iter().map(|b| b.as_ptr() as usize).collect();
            drop(blocks);
            let before: usize = places.iter().map(|&p| resident_pages(p, &mut flags)).sum();
            if before == 0 {
                continue;
            }
            release_free_memory();
            let after: usize = places.iter().map(|&p| resident_pages(p, &mut flags)).sum();
            assert_eq!(
                after, 0,
                "{after} of {before} freed pages are still resident"
            );
            drop(last_block);
            return;
        }
        panic!("the freed blocks were released before every count");
    }
}
