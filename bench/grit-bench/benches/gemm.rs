//! GEMM throughput for the matrix shapes that training the benchmark models produces.
//!
//! Run with `cargo bench -p grit-bench --bench gemm`. It prints three parts:
//!
//! 1. How the machine's peak is derived: cores × FMA instructions per cycle × f32 lanes per
//!    instruction × 2 FLOPs per FMA × clock. The clock comes from timing a chain of dependent
//!    integer additions of a register (one per cycle). The FMA rate per cycle comes from
//!    timing a loop of independent FMAs on one core, for AVX2 and, where the CPU has it,
//!    AVX-512.
//! 2. divan's timings, where one "item" is one FLOP, so `Gitem/s` reads as GFLOP/s.
//! 3. A summary with GFLOP/s and the fraction of the peak, from a median of 11 timed samples.
//!
//! Each shape is the product `a · b` as the layers call [`grit::tensor::ops::gemm`]: the
//! kernel gradient multiplies a transposed view of the layer input, and the input gradient a
//! transposed view of the kernel. The first layer with weights skips its input gradient, so
//! its shape is not listed. The products run on rayon's global pool: `RAYON_NUM_THREADS`
//! threads, or one per CPU when it is unset. The summary times them from inside the pool, as
//! the training loop calls them. divan's table times them from the main thread, so every
//! call there also pays the hand-off to the pool.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use divan::Bencher;
use divan::counter::ItemsCount;
use grit::tensor::ndarray::{Array2, ArrayView2};
use grit::tensor::ops::gemm;

/// One matrix product `c[m, n] = a[m, k] · b[k, n]` from a training step.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The layer and pass that produce the product.
    pass: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// `a` is a transposed view of a row-major `[k, m]` matrix.
    a_transposed: bool,
    /// `b` is a transposed view of a row-major `[n, k]` matrix.
    b_transposed: bool,
}

impl Shape {
    const fn new(pass: &'static str, m: usize, k: usize, n: usize) -> Self {
        Shape {
            pass,
            m,
            k,
            n,
            a_transposed: false,
            b_transposed: false,
        }
    }

    const fn a_transposed(mut self) -> Self {
        self.a_transposed = true;
        self
    }

    const fn b_transposed(mut self) -> Self {
        self.b_transposed = true;
        self
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = if self.a_transposed { "ᵀ" } else { "" };
        let b = if self.b_transposed { "ᵀ" } else { "" };
        write!(
            f,
            "{} {}×{}{a}·{}×{}{b}",
            self.pass, self.m, self.k, self.k, self.n
        )
    }
}

/// Batch size of every shape below.
const BATCH: usize = 128;
/// Rows of the im2col matrices: one per output position of the batch.
const CONV1_POSITIONS: usize = BATCH * 26 * 26;
const CONV2_POSITIONS: usize = BATCH * 11 * 11;

const SHAPES: &[Shape] = &[
    // MLP 784-128-10.
    Shape::new("mlp dense1 forward", BATCH, 784, 128),
    Shape::new("mlp dense1 kernel grad", 784, BATCH, 128).a_transposed(),
    Shape::new("mlp dense2 forward", BATCH, 128, 10),
    Shape::new("mlp dense2 kernel grad", 128, BATCH, 10).a_transposed(),
    Shape::new("mlp dense2 input grad", BATCH, 10, 128).b_transposed(),
    // The sweep's widest MLP, 784-2048-10.
    Shape::new("mlp2048 dense1 forward", BATCH, 784, 2048),
    Shape::new("mlp2048 dense1 kernel grad", 784, BATCH, 2048).a_transposed(),
    Shape::new("mlp2048 dense2 input grad", BATCH, 10, 2048).b_transposed(),
    // Keras's MNIST convnet: 3×3 convolutions on 28×28×1 and 13×13×32 inputs.
    Shape::new("cnn conv1 forward", CONV1_POSITIONS, 9, 32),
    Shape::new("cnn conv1 kernel grad", 9, CONV1_POSITIONS, 32).a_transposed(),
    Shape::new("cnn conv2 forward", CONV2_POSITIONS, 288, 64),
    Shape::new("cnn conv2 kernel grad", 288, CONV2_POSITIONS, 64).a_transposed(),
    Shape::new("cnn conv2 input grad", CONV2_POSITIONS, 64, 288).b_transposed(),
    Shape::new("cnn dense forward", BATCH, 1600, 10),
    Shape::new("cnn dense kernel grad", 1600, BATCH, 10).a_transposed(),
    Shape::new("cnn dense input grad", BATCH, 10, 1600).b_transposed(),
];

/// Deterministic values in [-0.5, 0.5], away from subnormals.
fn filled(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 17) % 101) as f32 / 101.0 - 0.5
    })
}

/// The operands of one shape, stored in the layout the layers use.
struct Operands {
    a: Array2<f32>,
    b: Array2<f32>,
    c: Array2<f32>,
    shape: Shape,
}

impl Operands {
    fn new(shape: Shape) -> Self {
        let a = if shape.a_transposed {
            filled(shape.k, shape.m)
        } else {
            filled(shape.m, shape.k)
        };
        let b = if shape.b_transposed {
            filled(shape.n, shape.k)
        } else {
            filled(shape.k, shape.n)
        };
        Operands {
            a,
            b,
            c: Array2::zeros((shape.m, shape.n)),
            shape,
        }
    }

    fn multiply(&mut self) {
        let a: ArrayView2<f32> = if self.shape.a_transposed {
            self.a.t()
        } else {
            self.a.view()
        };
        let b: ArrayView2<f32> = if self.shape.b_transposed {
            self.b.t()
        } else {
            self.b.view()
        };
        gemm(1.0, &a, &b, 0.0, &mut self.c.view_mut());
        black_box(&mut self.c);
    }
}

#[divan::bench(args = SHAPES)]
fn product(bencher: Bencher, shape: &Shape) {
    let mut operands = Operands::new(*shape);
    bencher
        .counter(ItemsCount::new(shape.flops()))
        .bench_local(move || operands.multiply());
}

/// Returns the median seconds of one product over 11 samples of at least 20 ms each.
fn median_seconds(shape: Shape) -> f64 {
    let mut operands = Operands::new(shape);
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < Duration::from_millis(20) {
        operands.multiply();
        calls += 1;
    }
    let mut samples: Vec<f64> = (0..11)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                operands.multiply();
            }
            started.elapsed().as_secs_f64() / f64::from(calls)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The factors of the machine's peak, with the clock in GHz and the peak in GFLOP/s.
struct Peak {
    cores: usize,
    clock_ghz: f64,
    lanes: usize,
    fma_per_cycle: f64,
    gflops: f64,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    /// Returns the best of 5 timings of `run(iterations)`, in seconds.
    fn best_seconds(iterations: u64, run: impl Fn(u64)) -> f64 {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                run(iterations);
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Measures the core clock in GHz from 16 dependent additions per loop iteration: each
    /// addition waits for the previous one, so one iteration takes 16 cycles on any x86-64
    /// core with single-cycle integer addition. Preemption only lowers the result, so the
    /// best of 5 runs is taken.
    ///
    /// NOTE: each addition adds a register, not a constant. On an Intel Xeon of family 6
    /// model 207 (Emerald Rapids), a chain of `add reg, 1` ran at 13 to 15 additions per ns.
    /// Chains of `add reg, reg` and of `imul` both gave 2.7 GHz there, so that core does not
    /// execute constant additions one per cycle.
    pub fn measured_clock_ghz() -> f64 {
        const ITERATIONS: u64 = 50_000_000;
        let seconds = best_seconds(ITERATIONS, |iterations| {
            // SAFETY: the loop touches only the three registers it declares.
            unsafe {
                std::arch::asm!(
                    "2:",
                    "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                    "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                    "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                    "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) iterations => _,
                    x = inout(reg) 0u64 => _,
                    one = in(reg) black_box(1u64),
                    options(nomem, nostack),
                );
            }
        });
        16.0 * ITERATIONS as f64 / seconds / 1e9
    }

    /// Twelve independent accumulators, more than FMA latency × FMA units (4 × 2 on Zen 4 and
    /// Skylake-class cores), so the loop runs at the FMA units' throughput.
    const CHAINS: usize = 12;
    const FMA_ITERATIONS: u64 = 20_000_000;

    #[target_feature(enable = "avx2,fma")]
    fn fma256_loop(iterations: u64) -> f32 {
        let x = _mm256_set1_ps(0.999_999);
        let y = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut total = _mm256_setzero_ps();
        for a in acc {
            total = _mm256_add_ps(total, a);
        }
        _mm256_cvtss_f32(total)
    }

    #[target_feature(enable = "avx512f")]
    fn fma512_loop(iterations: u64) -> f32 {
        let x = _mm512_set1_ps(0.999_999);
        let y = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        let mut total = _mm512_setzero_ps();
        for a in acc {
            total = _mm512_add_ps(total, a);
        }
        _mm512_reduce_add_ps(total)
    }

    /// Returns FMA instructions per second (in 1e9) on one core for 256-bit vectors, and for
    /// 512-bit vectors when the CPU has AVX-512F.
    pub fn measured_fma_rates() -> (Option<f64>, Option<f64>) {
        let instructions = (CHAINS as u64 * FMA_ITERATIONS) as f64;
        let avx2 =
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then(|| {
                // SAFETY: the CPU has AVX2 and FMA, checked above.
                let seconds = best_seconds(FMA_ITERATIONS, |n| {
                    black_box(unsafe { fma256_loop(black_box(n)) });
                });
                instructions / seconds / 1e9
            });
        let avx512 = is_x86_feature_detected!("avx512f").then(|| {
            // SAFETY: the CPU has AVX-512F, checked above.
            let seconds = best_seconds(FMA_ITERATIONS, |n| {
                black_box(unsafe { fma512_loop(black_box(n)) });
            });
            instructions / seconds / 1e9
        });
        (avx2, avx512)
    }
}

#[cfg(target_arch = "x86_64")]
fn derive_peak() -> Option<Peak> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clock_ghz = x86::measured_clock_ghz();
    let (avx2, avx512) = x86::measured_fma_rates();
    println!("CPU cores available: {cores}");
    println!("measured clock (dependent-add chain): {clock_ghz:.2} GHz");
    let mut best: Option<(usize, f64)> = None;
    for (lanes, rate) in [(8, avx2), (16, avx512)] {
        let Some(rate) = rate else { continue };
        // Round to the nearest half instruction per cycle, because real rates are 1/2, 1 or 2
        // per cycle and the timing is noisy.
        let per_cycle = (rate / clock_ghz * 2.0).round() / 2.0;
        println!(
            "{}-bit FMA on one core: {rate:.2} G instructions/s = {per_cycle} per cycle \
             × {lanes} f32 lanes × 2 FLOPs = {} FLOPs per cycle",
            lanes * 32,
            per_cycle * lanes as f64 * 2.0
        );
        if best.is_none_or(|(l, p)| per_cycle * lanes as f64 > p * l as f64) {
            best = Some((lanes, per_cycle));
        }
    }
    let (lanes, fma_per_cycle) = best?;
    let gflops = cores as f64 * fma_per_cycle * lanes as f64 * 2.0 * clock_ghz;
    println!(
        "peak = {cores} cores × {fma_per_cycle} FMA/cycle × {lanes} lanes × 2 FLOPs × \
         {clock_ghz:.2} GHz = {gflops:.1} GFLOP/s\n"
    );
    Some(Peak {
        cores,
        clock_ghz,
        lanes,
        fma_per_cycle,
        gflops,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn derive_peak() -> Option<Peak> {
    // NOTE: only x86-64 gets a measured peak, so elsewhere the summary shows GFLOP/s alone.
    println!("peak not derived: the clock and FMA measurements are written for x86-64\n");
    None
}

fn print_summary(peak: Option<&Peak>) {
    let threads = grit::tensor::parallel::num_threads();
    println!("\nsummary ({threads} threads; median of 11 samples, timed inside the pool)\n");
    println!("| product | MFLOP | ms | GFLOP/s | of peak |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for &shape in SHAPES {
        let seconds = grit::tensor::parallel::in_pool(|| median_seconds(shape));
        let gflops = shape.flops() as f64 / seconds / 1e9;
        let fraction = peak.map_or("n/a".to_string(), |p| {
            format!("{:.0}%", 100.0 * gflops / p.gflops)
        });
        println!(
            "| {shape} | {:.1} | {:.3} | {gflops:.1} | {fraction} |",
            shape.flops() as f64 / 1e6,
            seconds * 1e3
        );
    }
    if let Some(p) = peak {
        println!(
            "\npeak {:.1} GFLOP/s = {} cores × {} FMA/cycle × {} lanes × 2 × {:.2} GHz",
            p.gflops, p.cores, p.fma_per_cycle, p.lanes, p.clock_ghz
        );
    }
}

fn main() {
    let peak = derive_peak();
    divan::main();
    print_summary(peak.as_ref());
}
