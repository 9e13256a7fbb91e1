//! Determinism: the same seed gives bit-identical weights in two runs, with 1 and with 2
//! GEMM threads.
//!
//! matrixmultiply reads `MATMUL_NUM_THREADS` once per process, so
//! [`identical_across_runs_and_thread_counts`] runs [`child_training_run`] in child processes
//! of this test binary, two with 1 thread and two with 2, and compares the weights' bytes.
//! The model has a convolution, batch normalization, dropout and dense layers whose GEMMs are
//! large enough for matrixmultiply 0.3 to split them across 2 threads, and training shuffles
//! and validates. The 2-thread children must really start GEMM worker threads, which the
//! test checks by counting the process's threads.

use std::hash::{DefaultHasher, Hasher};
use std::path::Path;
use std::process::Command;

use grit::prelude::*;
use ndarray::{Array1, Array4};

/// The environment variable that names the file [`child_training_run`] writes its result to.
const OUTPUT_VARIABLE: &str = "GRIT_DETERMINISM_OUTPUT";

/// 256 images of 28 × 28 × 1 in 10 classes, from a fixed formula.
fn data() -> (Array4<f32>, Array1<f32>) {
    let x = Array4::from_shape_fn((256, 28, 28, 1), |(i, r, c, _)| {
        ((i * 31 + r * 7 + c * 13) % 97) as f32 / 97.0
    });
    let y = Array1::from_shape_fn(256, |i| (i % 10) as f32);
    (x, y)
}

fn model(seed: u64) -> Sequential {
    let mut model = Sequential::new([28, 28, 1])
        .seed(seed)
        .add(Conv2D::new(16, (3, 3)).activation(Activation::Relu))
        .add(BatchNormalization::new())
        .add(MaxPooling2D::new())
        .add(Flatten::new())
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dropout::new(0.3))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

/// Trains `model(seed)` for 2 epochs and returns every weight's bytes, in model order.
fn train_weight_bytes(seed: u64) -> Vec<u8> {
    let (x, y) = data();
    let mut model = model(seed);
    let options = FitOptions::new()
        .epochs(2)
        .batch_size(64)
        .validation_split(0.125)
        .verbose(0);
    model.fit(&x, &y, &options, &mut []).unwrap();
    model
        .get_weights()
        .iter()
        .flat_map(|(_, tensor)| tensor.iter().flat_map(|value| value.to_le_bytes()))
        .collect()
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// Returns the number of threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Trains in a child process and writes the thread count and the weights' bytes to the file
/// named by `GRIT_DETERMINISM_OUTPUT`. Ignored in normal runs, because only a fresh
/// process can choose the GEMM thread count.
#[test]
#[ignore = "run by identical_across_runs_and_thread_counts in a child process"]
fn child_training_run() {
    let bytes = train_weight_bytes(42);
    let threads = thread_count();
    println!(
        "{} weight bytes, hash {:016x}, {threads} threads",
        bytes.len(),
        hash(&bytes)
    );
    if let Ok(path) = std::env::var(OUTPUT_VARIABLE) {
        let mut output = (threads as u64).to_le_bytes().to_vec();
        output.extend_from_slice(&bytes);
        std::fs::write(path, output).unwrap();
    }
}

/// Runs [`child_training_run`] with `threads` GEMM threads and returns the process's thread
/// count and the weights' bytes.
fn run_child(threads: usize, output: &Path) -> (usize, Vec<u8>) {
    let executable = std::env::current_exe().unwrap();
    let result = Command::new(executable)
        .args([
            "child_training_run",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MATMUL_NUM_THREADS", threads.to_string())
        .env(OUTPUT_VARIABLE, output)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "the child run with {threads} threads failed: {}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(output).unwrap();
    let (count, weights) = bytes.split_at(8);
    let count = u64::from_le_bytes(count.try_into().unwrap()) as usize;
    (count, weights.to_vec())
}

#[test]
fn identical_across_runs_and_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (index, threads) in [1, 1, 2, 2].into_iter().enumerate() {
        let output = dir.path().join(format!("run-{index}"));
        let (thread_count, bytes) = run_child(threads, &output);
        runs.push((threads, thread_count, bytes));
    }
    let summary: Vec<String> = runs
        .iter()
        .map(|(threads, count, bytes)| {
            format!(
                "{threads} GEMM threads: hash {:016x}, {count} threads",
                hash(bytes)
            )
        })
        .collect();
    let summary = summary.join("; ");

    let (_, single_threads, single) = &runs[0];
    let (_, multi_threads, multi) = &runs[2];
    assert!(
        multi_threads > single_threads,
        "the 2-thread runs must start GEMM worker threads: {summary}"
    );
    assert!(!single.is_empty());
    assert!(runs[1].2 == *single, "two 1-thread runs differ: {summary}");
    assert!(runs[3].2 == *multi, "two 2-thread runs differ: {summary}");
    assert!(multi == single, "1 and 2 threads differ: {summary}");
}

/// The same seed in one process gives the same weights; another seed does not, which shows
/// that the comparison can fail.
#[test]
fn seed_decides_the_weights() {
    let first = train_weight_bytes(7);
    assert!(
        first == train_weight_bytes(7),
        "two runs with seed 7 differ"
    );
    assert!(
        first != train_weight_bytes(8),
        "seeds 7 and 8 give the same weights"
    );
}
