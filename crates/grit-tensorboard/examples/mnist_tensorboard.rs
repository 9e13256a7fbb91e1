//! Trains a 784-128-10 MLP on MNIST twice, once with a fixed learning rate and once on a cosine
//! schedule, and logs both runs for TensorBoard side by side.
//!
//! Run from the workspace root:
//!
//! ```sh
//! cargo run --release -p grit-tensorboard --example mnist_tensorboard -- runs/mnist
//! .venv/bin/tensorboard --logdir runs --host 127.0.0.1
//! ```
//!
//! The log directory argument defaults to `runs/mnist`, which then contains `adam/` and
//! `adam-cosine/`, each with `train/` and `validation/`. MNIST is read from
//! `$GRIT_DATASETS/mnist` or the workspace's `datasets/mnist`, and fetched there when missing.

use std::error::Error;
use std::path::PathBuf;

use grit_data::{Mnist, ensure_mnist};
use grit_optim::CosineDecay;
use grit_tensorboard::{TensorBoard, UpdateFreq};
use grit_train::prelude::*;

const EPOCHS: usize = 10;
const BATCH_SIZE: usize = 128;
const VALIDATION_SPLIT: f32 = 0.1;

fn main() -> Result<(), Box<dyn Error>> {
    let log_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/mnist"));
    let datasets = std::env::var_os("GRIT_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets"));
    let mnist_dir = datasets.join("mnist");
    ensure_mnist(&mnist_dir)?;
    let data = Mnist::load(&mnist_dir)?;

    let train_samples = data.train_labels.len()
        - (data.train_labels.len() as f64 * f64::from(VALIDATION_SPLIT)).ceil() as usize;
    let total_steps = (train_samples.div_ceil(BATCH_SIZE) * EPOCHS) as u64;
    let runs: [(&str, Adam); 2] = [
        ("adam", Adam::new(1e-3)),
        (
            "adam-cosine",
            Adam::new(CosineDecay::new(2e-3, total_steps)?),
        ),
    ];

    for (name, optimizer) in runs {
        println!("run {name}: logging to {}", log_dir.join(name).display());
        let mut model = Sequential::new([28, 28])
            .seed(42)
            .add(Flatten::new())
            .add(Dense::new(128).activation(Activation::Relu))
            .add(Dense::new(10).activation(Activation::Softmax));
        model.compile(
            optimizer,
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )?;
        let mut tensorboard = TensorBoard::new(&log_dir)
            .run_name(name)
            .histogram_freq(1)
            .update_freq(UpdateFreq::Batches(50));
        let options = FitOptions::new()
            .epochs(EPOCHS)
            .batch_size(BATCH_SIZE)
            .validation_split(VALIDATION_SPLIT)
            .verbose(2);
        model.fit(
            &data.train_images,
            &data.train_labels,
            &options,
            &mut [&mut tensorboard],
        )?;
        let test = model.evaluate(&data.test_images, &data.test_labels, 1000)?;
        println!(
            "run {name}: test loss {:.4}, test accuracy {:.4}",
            test["loss"], test["accuracy"]
        );
    }
    println!(
        "view with: .venv/bin/tensorboard --logdir {} --host 127.0.0.1",
        log_dir.display()
    );
    Ok(())
}
