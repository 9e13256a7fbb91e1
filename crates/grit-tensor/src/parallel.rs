//! The threads grit computes on.
//!
//! grit runs its parallel work on rayon's current thread pool: the global pool, with one
//! thread per CPU unless `RAYON_NUM_THREADS` sets the count, or the pool a caller entered
//! with [`rayon::ThreadPool::install`]. Matrix products split their output among the pool's
//! threads, and batches are gathered and parameters updated in parallel blocks. Every split
//! is arranged so that each value is computed by the same operations in the same order for
//! any number of threads, so a fixed seed gives the same bits whatever the thread count.
//!
//! ```
//! // A pool of one thread: work that grit runs inside `install` stays on it.
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
//! let threads = pool.install(grit_tensor::parallel::num_threads);
//! assert_eq!(threads, 1);
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::IxDyn;
use rayon::prelude::*;

use crate::Tensor;

/// Slices shorter than this many values are processed on one thread, because handing part
/// of a shorter slice to another thread costs more than it saves.
pub const MIN_PARALLEL_VALUES: usize = 1 << 15;

/// Returns the number of threads in the current pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `work` on a thread of the current pool, with the pool's other threads kept awake
/// for it, and returns its result.
///
/// The training loop runs each whole step through this function, for two reasons. A thread
/// outside the pool (a program's main thread) that starts parallel work hands it to the pool
/// and sleeps until it is done. And a pool thread that finds no work sleeps within tens of
/// microseconds, and waking it again costs about as long as half of a small product.
///
/// So `work` runs on a pool thread, and every other thread of the pool runs a helper that
/// takes the pool's pending jobs (the halves of the step's products, the blocks of its
/// element-wise passes) until `work` returns or panics. The helpers spin between jobs
/// instead of sleeping, which keeps their cores busy for the length of the step. A panic in
/// `work` reaches the caller once the helpers have stopped.
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // Outside any pool this is the global pool's size, the pool `rayon::scope` then uses.
    let helpers = helper_count(rayon::current_num_threads());
    let done = AtomicBool::new(false);
    let done = &done;
    // `rayon::scope` runs its body on a pool thread: in place when called from one.
    rayon::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(move |_| help_until(done));
        }
        // The flag is set when `work` returns or panics, so a panic reaches the caller
        // instead of leaving the scope waiting for helpers that never stop.
        let _stop_helpers = SetOnDrop(done);
        work()
    })
}

/// Runs `first` and `second` as [`rayon::join`] does, but so that pool thread 0 runs
/// `first` and pool thread 1 runs `second` whenever one of the two calls this and the other
/// takes the remaining closure. When both closures panic, the panic raised is the first
/// closure's, as with `rayon::join`, unless pool thread 1 called: then it is the second's.
///
/// [`rayon::join`] runs its first closure on the calling thread and leaves the second for
/// another thread to take. The training loop's step runs on either thread of a two-thread
/// pool, so with plain `join` the half of a split product or update that a thread computes
/// would change from step to step. With this function each half stays with one thread, and
/// the weights, gradients and moments it touches stay in that core's cache. Which thread
/// runs a closure never changes a result.
pub fn join_by_index(first: impl FnOnce() + Send, second: impl FnOnce() + Send) {
    if rayon::current_thread_index() == Some(1) {
        rayon::join(second, first);
    } else {
        rayon::join(first, second);
    }
}

/// Sets its flag when dropped, also while a panic unwinds.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Returns how many helpers [`in_pool`] starts for a pool of `threads` threads: one per
/// other thread, but no more than the CPUs leave room for. Spinning helpers on a pool larger
/// than the machine would take the CPUs from the threads doing the work.
fn helper_count(threads: usize) -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus = *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    threads.min(cpus).saturating_sub(1)
}

/// Runs the pool's pending jobs, one at a time, until `done` is set.
///
/// NOTE: this relies on rayon's thieves taking a thread's oldest job first, so the helpers
/// are taken before any job that `work` queues after them. A thread that ran its own helper
/// while `work` waited further down its stack would spin forever.
fn help_until(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            // Pause between looks, because each look touches cache lines that the working
            // thread uses too.
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
}

/// Returns the number of values in each block when a slice of `len` values is split among
/// threads. A short slice stays one block. A longer one is cut into blocks whose size
/// depends only on `len`, so the blocks are the same for any number of threads.
pub fn block_len(len: usize) -> usize {
    if len < 2 * MIN_PARALLEL_VALUES {
        len.max(1)
    } else {
        // About 16 blocks balance 2 to 8 threads, and each block's work still outweighs
        // its hand-off.
        len.div_ceil(16).max(MIN_PARALLEL_VALUES)
    }
}

/// Returns a tensor of zeros of `shape`, written by the threads of the current pool.
///
/// [`Tensor::zeros`] clears its memory on one thread. For the outputs and gradients of a
/// convolution (several megabytes a batch) that single pass is a noticeable part of a
/// training step, and here every thread clears, and first touches, a part of it.
pub fn zeros(shape: &[usize]) -> Tensor {
    zeros_in(Vec::new(), shape)
}

/// Returns a tensor of zeros of `shape` that uses the memory of `values` (whose values are
/// discarded), cleared as [`zeros`] clears it: by the pool's threads, or by the calling
/// thread when it has fewer than `2 · MIN_PARALLEL_VALUES` values.
///
/// The memory can come from another thread. The training loop reserves each batch with
/// `Vec::with_capacity` on the calling thread, so that the batch returns to that thread's
/// allocator arena when freed, and clears it here on the pool's threads.
pub fn zeros_in(mut values: Vec<f32>, shape: &[usize]) -> Tensor {
    let len: usize = shape.iter().product();
    values.clear();
    if len < 2 * MIN_PARALLEL_VALUES {
        values.resize(len, 0.0);
    } else {
        values.reserve_exact(len);
        values.par_extend(rayon::iter::repeat_n(0.0f32, len).with_min_len(block_len(len)));
    }
    Tensor::from_shape_vec(IxDyn(shape), values).expect("the length is the shape's product")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_small_and_large() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for shape in [vec![3, 4], vec![128, 26, 26, 32]] {
            let tensor = pool.install(|| zeros(&shape));
            assert_eq!(tensor.shape(), shape.as_slice());
            assert!(tensor.is_standard_layout());
            assert!(tensor.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn zeros_in_reuses_memory() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for shape in [vec![3, 4], vec![128, 784]] {
            let len: usize = shape.iter().product();
            let values = vec![7.0; 2 * len];
            let address = values.as_ptr();
            let tensor = pool.install(|| zeros_in(values, &shape));
            assert_eq!(tensor.shape(), shape.as_slice());
            assert_eq!(tensor.as_ptr(), address);
            assert!(tensor.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn panic_in_pool_reaches_caller() {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let result =
                pool.install(|| std::panic::catch_unwind(|| in_pool(|| panic!("work failed"))));
            let _ = sender.send(result.is_err());
        });
        // If the helpers were not stopped on unwinding, they would spin forever and this
        // would time out.
        let panicked = receiver.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(panicked, Ok(true));
    }

    /// Runs `join_by_index` from pool thread `caller` of a two-thread pool. Each closure
    /// waits until the other has started, so they must run on different threads. Returns
    /// the threads that ran `first` and `second`.
    fn join_by_index_from(caller: usize) -> (Option<usize>, Option<usize>) {
        fn meet(mine: &AtomicBool, other: &AtomicBool) -> Option<usize> {
            mine.store(true, Ordering::Release);
            let started = std::time::Instant::now();
            while !other.load(Ordering::Acquire)
                && started.elapsed() < std::time::Duration::from_secs(10)
            {
                std::hint::spin_loop();
            }
            rayon::current_thread_index()
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (started_first, started_second) = (AtomicBool::new(false), AtomicBool::new(false));
        let threads = std::sync::Mutex::new((None, None));
        pool.broadcast(|context| {
            if context.index() == caller {
                join_by_index(
                    || threads.lock().unwrap().0 = meet(&started_first, &started_second),
                    || threads.lock().unwrap().1 = meet(&started_second, &started_first),
                );
            }
        });
        threads.into_inner().unwrap()
    }

    #[test]
    fn join_by_index_pins_each_closure() {
        for caller in [0, 1] {
            let (first, second) = join_by_index_from(caller);
            assert_eq!(first, Some(0), "first closure, called from thread {caller}");
            assert_eq!(
                second,
                Some(1),
                "second closure, called from thread {caller}"
            );
        }
    }

    #[test]
    fn block_len_depends_on_length_only() {
        assert_eq!(block_len(0), 1);
        assert_eq!(block_len(1000), 1000);
        assert_eq!(block_len(2 * MIN_PARALLEL_VALUES), MIN_PARALLEL_VALUES);
        assert_eq!(block_len(16 * 100_000), 100_000);
    }

    #[test]
    fn helpers_never_outnumber_the_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(helper_count(1), 0);
        assert_eq!(helper_count(2), 2.min(cpus) - 1);
        assert_eq!(helper_count(1000), cpus - 1);
    }

    #[test]
    fn in_pool_runs_on_a_pool_thread() {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let index = pool.install(|| in_pool(rayon::current_thread_index));
            assert!(index.is_some_and(|i| i < threads));
        }
        // From outside any pool, the work moves into the global pool.
        assert!(in_pool(rayon::current_thread_index).is_some());
    }
}
