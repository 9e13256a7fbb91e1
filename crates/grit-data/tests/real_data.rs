//! Checks against the real MNIST and Fashion-MNIST files.
//!
//! The files are read from `$GRIT_DATASETS/<dataset>` when that variable is set, and from the
//! workspace's `datasets/<dataset>` otherwise. These tests fail, rather than skip, when the
//! files are missing. Fetch them first with
//! `cargo run --release -p grit-data --bin fetch-datasets -- mnist fashion-mnist`.

use std::path::PathBuf;
use std::sync::OnceLock;

use grit_data::fetch::verify_file;
use grit_data::{Dataset, FashionMnist, Mnist};
use grit_tensor::{Samples, ScaledU8};
use ndarray::Array1;

const PIXELS_PER_IMAGE: usize = 28 * 28;

fn datasets_root() -> PathBuf {
    match std::env::var_os("GRIT_DATASETS") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets"),
    }
}

fn fetch_command() -> String {
    let root = datasets_root();
    format!(
        "cargo run --release -p grit-data --bin fetch-datasets -- --dir {} mnist fashion-mnist",
        root.display()
    )
}

fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| {
        let dir = datasets_root().join("mnist");
        Mnist::load(&dir).unwrap_or_else(|error| {
            panic!(
                "cannot load MNIST from {}: {error}\nFetch the datasets with `{}`",
                dir.display(),
                fetch_command()
            )
        })
    })
}

fn fashion_mnist() -> &'static FashionMnist {
    static FASHION_MNIST: OnceLock<FashionMnist> = OnceLock::new();
    FASHION_MNIST.get_or_init(|| {
        let dir = datasets_root().join("fashion-mnist");
        FashionMnist::load(&dir).unwrap_or_else(|error| {
            panic!(
                "cannot load Fashion-MNIST from {}: {error}\nFetch the datasets with `{}`",
                dir.display(),
                fetch_command()
            )
        })
    })
}

fn label_histogram(labels: &Array1<u8>) -> [usize; 10] {
    let mut counts = [0; 10];
    for &label in labels {
        counts[usize::from(label)] += 1;
    }
    counts
}

fn pixel_sum(images: &ScaledU8, index: usize) -> u64 {
    let sample = images.data().outer_iter().nth(index).unwrap();
    sample.iter().map(|&byte| u64::from(byte)).sum()
}

/// Returns the mean pixel value in [0, 1] over all images, through the f32 view that batches
/// see.
fn mean_scaled_pixel(images: &ScaledU8) -> f64 {
    let mut sum = 0.0f64;
    let mut buffer = vec![0.0f32; PIXELS_PER_IMAGE];
    for index in 0..images.num_samples() {
        images.gather(&[index], &mut buffer);
        sum += buffer.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    sum / (images.num_samples() * PIXELS_PER_IMAGE) as f64
}

#[test]
fn files_match_checksums() {
    for dataset in Dataset::ALL {
        let dir = datasets_root().join(dataset.name());
        for file in dataset.files() {
            let path = dir.join(file.name);
            if let Err(error) = verify_file(&path, file) {
                panic!("{error}\nFetch the datasets with `{}`", fetch_command());
            }
        }
    }
}

#[test]
fn mnist_sample_counts() {
    let data = mnist();
    assert_eq!(data.train_images.data().shape(), &[60_000, 28, 28]);
    assert_eq!(data.train_labels.len(), 60_000);
    assert_eq!(data.test_images.data().shape(), &[10_000, 28, 28]);
    assert_eq!(data.test_labels.len(), 10_000);
    assert_eq!(data.train_images.scale(), 1.0 / 255.0);
}

#[test]
fn mnist_first_labels() {
    let data = mnist();
    assert_eq!(data.train_labels[0], 5);
    let first_train: Vec<u8> = data.train_labels.iter().take(10).copied().collect();
    assert_eq!(first_train, vec![5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let first_test: Vec<u8> = data.test_labels.iter().take(10).copied().collect();
    assert_eq!(first_test, vec![7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
}

#[test]
fn mnist_test_label_histogram() {
    // The published per-digit counts of MNIST's 10000 test images, which a Python count over
    // the same file reproduces.
    let expected = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
    assert_eq!(label_histogram(&mnist().test_labels), expected);
}

#[test]
fn mnist_train_label_histogram() {
    // The published per-digit counts of MNIST's 60000 training images, which a Python count
    // over the same file reproduces.
    let expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
    assert_eq!(label_histogram(&mnist().train_labels), expected);
}

#[test]
fn mnist_image_pixel_sums() {
    // Sums of the raw bytes, computed independently with a Python script over the same files.
    let data = mnist();
    assert_eq!(pixel_sum(&data.train_images, 0), 27_525);
    assert_eq!(pixel_sum(&data.test_images, 0), 18_454);
    assert_eq!(pixel_sum(&data.train_images, 59_999), 20_920);
}

#[test]
fn mnist_mean_pixel() {
    // The byte sum over all training images, from a Python script, divided by the number of
    // pixels and by 255. It rounds to 0.1307.
    let expected = 1_567_298_545.0 / (60_000.0 * 784.0 * 255.0);
    let mean = mean_scaled_pixel(&mnist().train_images);
    assert!(
        (mean - expected).abs() < 1e-6,
        "mean {mean}, expected {expected}"
    );
}

#[test]
fn fashion_sample_counts() {
    let data = fashion_mnist();
    assert_eq!(data.train_images.data().shape(), &[60_000, 28, 28]);
    assert_eq!(data.train_labels.len(), 60_000);
    assert_eq!(data.test_images.data().shape(), &[10_000, 28, 28]);
    assert_eq!(data.test_labels.len(), 10_000);
}

#[test]
fn fashion_label_histograms() {
    let data = fashion_mnist();
    assert_eq!(label_histogram(&data.test_labels), [1000; 10]);
    assert_eq!(label_histogram(&data.train_labels), [6000; 10]);
}

#[test]
fn fashion_first_labels() {
    let data = fashion_mnist();
    let names = FashionMnist::class_names();
    assert_eq!(names[usize::from(data.train_labels[0])], "Ankle boot");
    let first_train: Vec<u8> = data.train_labels.iter().take(10).copied().collect();
    assert_eq!(first_train, vec![9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    let first_test: Vec<u8> = data.test_labels.iter().take(10).copied().collect();
    assert_eq!(first_test, vec![9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
}

#[test]
fn fashion_image_pixel_sums() {
    // Sums of the raw bytes, computed independently with a Python script over the same files.
    let data = fashion_mnist();
    assert_eq!(pixel_sum(&data.train_images, 0), 76_247);
    assert_eq!(pixel_sum(&data.test_images, 0), 33_456);
}

#[test]
fn fashion_mean_pixel() {
    // The byte sum over all training images, from a Python script, divided by the number of
    // pixels and by 255. It rounds to 0.2860.
    let expected = 3_431_114_169.0 / (60_000.0 * 784.0 * 255.0);
    let mean = mean_scaled_pixel(&fashion_mnist().train_images);
    assert!(
        (mean - expected).abs() < 1e-6,
        "mean {mean}, expected {expected}"
    );
}
