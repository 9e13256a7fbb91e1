//! Checks that the IDX reader sizes its buffers by the input, not by the header's claim.
//!
//! This file is its own test binary because it installs a global allocator that records the
//! largest single allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use grit_data::{DataError, parse_idx, read_idx};

struct MaxAllocation;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for MaxAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: MaxAllocation = MaxAllocation;

/// Upper bound for any single allocation while reading a tiny input. Decompressors and file
/// buffers need some kilobytes, and the claimed size is 4 GiB.
const MAX_EXPECTED_ALLOCATION: usize = 1 << 20;

#[test]
fn huge_claim_allocates_little() {
    // 65536 · 65536 = 2^32 one-byte items, with 3 bytes of data present.
    let mut raw = vec![0, 0, 0x08, 2];
    raw.extend_from_slice(&65536u32.to_be_bytes());
    raw.extend_from_slice(&65536u32.to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3]);
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&raw).unwrap();
    let compressed = encoder.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("huge-raw");
    let gz_path = dir.path().join("huge-gz");
    std::fs::write(&raw_path, &raw).unwrap();
    std::fs::write(&gz_path, &compressed).unwrap();

    LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
    let results = [
        parse_idx(&raw, "raw"),
        parse_idx(&compressed, "gz"),
        read_idx(&raw_path),
        read_idx(&gz_path),
    ];
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);

    for result in results {
        assert!(
            matches!(result, Err(DataError::Truncated { offset: 15, .. })),
            "{result:?}"
        );
    }
    assert!(
        largest < MAX_EXPECTED_ALLOCATION,
        "largest allocation {largest} bytes"
    );
}
