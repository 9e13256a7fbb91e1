//! Compares five learning-rate schedules on Fashion-MNIST and prints the ranking.
//!
//! Each schedule trains the same 784-128-10 network with SGD and momentum 0.9, from the same
//! initial weights and in the same batch order. It trains on the first 12 000 training images
//! for 10 epochs and is validated on the 10 000 test images. The runs are ranked by their best
//! validation loss. The example writes the table to `report.md` and a chart of every
//! learning-rate curve and validation loss to `chart.svg`, in `runs/compare-schedules` or the
//! folder given as the first argument.
//!
//! Run with `cargo run --release --example compare_schedules`. The data goes to
//! `datasets/fashion-mnist` (or the folder in `GRIT_DATASETS`). When it is missing, the
//! example fetches it with `apt-get download dataset-fashion-mnist` and checks every file's
//! SHA-256.

use std::path::PathBuf;

use grit::prelude::*;
use grit::train::compare::{ScheduleComparison, ScheduleRun};
use ndarray::{Array1, s};

const TRAIN_SAMPLES: usize = 12_000;
const EPOCHS: usize = 10;
const BATCH_SIZE: usize = 128;
const PEAK_RATE: f32 = 0.1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let output = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/compare-schedules"));
    std::fs::create_dir_all(&output)?;

    let dir = grit::data::dataset_dir(
        concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"),
        "fashion-mnist",
    );
    grit::data::ensure_fashion_mnist(&dir)?;
    let data = FashionMnist::load(&dir)?;
    let x = data.train_images.take(TRAIN_SAMPLES);
    let y: Array1<u8> = data.train_labels.slice(s![..TRAIN_SAMPLES]).to_owned();

    let steps_per_epoch = TRAIN_SAMPLES.div_ceil(BATCH_SIZE) as u64;
    let total_steps = steps_per_epoch * EPOCHS as u64;
    let runs = [
        ScheduleRun::per_epoch("constant", Constant::new(PEAK_RATE)?),
        // ×0.1 at the start of epochs 5 and 8 (0-based).
        ScheduleRun::per_epoch("step decay", StepDecay::at(PEAK_RATE, 0.1, [5, 8])?),
        // ×0.7 per epoch, smoothly from update to update.
        ScheduleRun::per_step(
            "exponential",
            ExponentialDecay::new(PEAK_RATE, steps_per_epoch, 0.7)?,
        ),
        // From 0.01 up to 0.1 over the first epoch, then a cosine down to 0.
        ScheduleRun::per_step(
            "cosine + warm-up",
            CosineDecay::new(0.01, total_steps - steps_per_epoch)?
                .warmup(PEAK_RATE, steps_per_epoch)?,
        ),
        ScheduleRun::per_step("one-cycle", OneCycle::new(PEAK_RATE, total_steps)?),
    ];

    let build_model = |learning_rate| {
        let mut model = Sequential::new([28, 28])
            .seed(42)
            .add(Flatten::new())
            .add(Dense::new(128).activation(Activation::Relu))
            .add(Dense::new(10).activation(Activation::Softmax));
        model.compile(
            Sgd::new(learning_rate).momentum(0.9),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )?;
        Ok(model)
    };
    let (validation_x, validation_y) = (&data.test_images, &data.test_labels);
    let fit_options = || {
        FitOptions::new()
            .epochs(EPOCHS)
            .batch_size(BATCH_SIZE)
            .validation_data(validation_x, validation_y)
            .validation_batch_size(1000)
            .verbose(0)
    };

    let report = ScheduleComparison::new(runs).run(build_model, &x, &y, fit_options)?;
    println!("{}", report.to_markdown());
    for run in &report.runs {
        let accuracy = run.history.last("val_accuracy").unwrap_or(f64::NAN);
        println!("{:<18} final val_accuracy {accuracy:.4}", run.name);
    }
    report.write_markdown(output.join("report.md"))?;
    report.write_svg(output.join("chart.svg"))?;
    println!(
        "wrote {} and {}",
        output.join("report.md").display(),
        output.join("chart.svg").display()
    );
    Ok(())
}
