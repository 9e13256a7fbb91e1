//! Determinism: the same seed gives bit-identical weights in two runs, and on 1, 2 and 3
//! threads.
//!
//! grit computes on rayon's current thread pool, so each run trains inside a pool of its
//! own size. The model has convolutions, which split a batch into blocks of images, and one
//! of them pools its own output. It also has batch normalization, dropout, and dense layers
//! whose products are large enough to be split among threads. Training shuffles and
//! validates.

use std::hash::{DefaultHasher, Hasher};

use grit::prelude::*;
use ndarray::{Array1, Array4};

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
        // With 16 input channels, this convolution takes the Winograd path, and it computes
        // the pooling after it.
        .add(
            Conv2D::new(16, (3, 3))
                .padding(Padding::Same)
                .activation(Activation::Relu),
        )
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

/// Trains with seed 42 on a pool of `threads` threads.
fn train_on_threads(threads: usize) -> Vec<u8> {
    let pool = grit::tensor::rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    assert_eq!(pool.install(grit::tensor::parallel::num_threads), threads);
    pool.install(|| train_weight_bytes(42))
}

#[test]
fn identical_across_runs_and_thread_counts() {
    let runs: Vec<(usize, Vec<u8>)> = [1, 1, 2, 3]
        .into_iter()
        .map(|threads| (threads, train_on_threads(threads)))
        .collect();
    let summary: Vec<String> = runs
        .iter()
        .map(|(threads, bytes)| format!("{threads} threads: hash {:016x}", hash(bytes)))
        .collect();
    let summary = summary.join("; ");
    let single = &runs[0].1;
    assert!(!single.is_empty());
    assert!(runs[1].1 == *single, "two 1-thread runs differ: {summary}");
    assert!(runs[2].1 == *single, "1 and 2 threads differ: {summary}");
    assert!(runs[3].1 == *single, "1 and 3 threads differ: {summary}");
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
