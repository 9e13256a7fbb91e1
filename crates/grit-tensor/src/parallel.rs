//! The threads grit computes on.
//!
//! grit runs its parallel work on rayon's current thread pool: the global pool, with one
//! thread per CPU unless `RAYON_NUM_THREADS` sets the count, or the pool a caller entered
//! with [`rayon::ThreadPool::install`]. Matrix products split their output among the pool's
//! threads, and batches are gathered and parameters updated in parallel blocks. Every split
//! is arranged so that each value is computed by the same operations in the same order for
//! any number of threads: a fixed seed gives the same bits on 1, 2 or 16 threads.
//!
//! ```
//! // Train on one thread, whatever the machine has.
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
//! let threads = pool.install(grit_tensor::parallel::num_threads);
//! assert_eq!(threads, 1);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

/// Slices shorter than this many values are processed on one thread: below it, handing
/// part of the work to another thread costs more than it saves.
pub const MIN_PARALLEL_VALUES: usize = 1 << 15;

/// Returns the number of threads in the current pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `work` on a thread of the current pool, with the pool's other threads kept awake
/// for it, and returns its result.
///
/// The training loop runs each whole step through this function. A thread outside the pool
/// (a program's main thread) that starts parallel work has to hand it to the pool and sleep
/// until it is done; and a pool thread that finds no work goes to sleep within tens of
/// microseconds, after which waking it costs tens of microseconds more, about as long as the
/// half of a small product it would take. So `work` runs on a pool thread, and every other
/// thread of the pool runs a helper that keeps taking the pool's pending work (the halves of
/// the step's products, the blocks of its element-wise passes) until `work` returns, instead
/// of sleeping between them. The helpers spin while the step runs, as the worker threads of
/// BLAS libraries and of XLA's CPU runtime do.
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // Outside any pool this is the global pool's size, the pool `rayon::scope` then uses.
    let threads = rayon::current_num_threads();
    let done = AtomicBool::new(false);
    let done = &done;
    // `rayon::scope` runs its body on a pool thread: in place when called from one.
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(move |_| help_until(done));
        }
        let result = work();
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs the pool's pending jobs, one at a time, until `done` is set.
fn help_until(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            // Between looks, pause: a looking thread writes to shared cache lines and
            // slows the thread doing the work.
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
}

/// Returns how many values each block of a slice of `len` values should hold so that the
/// blocks can go to different threads: the whole slice when it is short, otherwise a size
/// that depends only on `len`, so the blocks are the same for any number of threads.
pub fn block_len(len: usize) -> usize {
    if len < 2 * MIN_PARALLEL_VALUES {
        len.max(1)
    } else {
        // About 16 blocks: enough to balance 2 to 8 threads, few enough to keep each
        // block's hand-off cheap against its work.
        len.div_ceil(16).max(MIN_PARALLEL_VALUES)
    }
}
