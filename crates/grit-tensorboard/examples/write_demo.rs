//! Writes a small Keras-style TensorBoard log and a JSON file describing what it contains, for
//! `scripts/check_tensorboard.py` to verify with the real TensorBoard.
//!
//! Usage: `cargo run -p grit-tensorboard --example write_demo -- LOG_DIR EXPECTATIONS_JSON`
//!
//! The log has two runs, `train` and `validation`, laid out and tagged like
//! `keras.callbacks.TensorBoard`: `epoch_*` scalars at steps 0, 1, 2, a `keras` text at step 0,
//! weight histograms in `train`, and `evaluation_loss_vs_iterations` in `validation`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use grit_tensorboard::EventWriter;
use serde_json::{Value, json};

const MODEL_CONFIG: &str = "{\"class_name\": \"Sequential\", \"layers\": [\"dense\"]}";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [log_dir, expectations_path] = args.as_slice() else {
        eprintln!("usage: write_demo LOG_DIR EXPECTATIONS_JSON");
        return ExitCode::from(2);
    };
    match write_demo(&PathBuf::from(log_dir), &PathBuf::from(expectations_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("write_demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn write_demo(log_dir: &Path, expectations_path: &Path) -> Result<(), Box<dyn Error>> {
    let train = write_train_run(log_dir)?;
    let validation = write_validation_run(log_dir)?;
    let expectations = json!({ "runs": { "train": train, "validation": validation } });
    std::fs::write(
        expectations_path,
        serde_json::to_string_pretty(&expectations)?,
    )?;
    println!(
        "wrote runs train and validation under {} and expectations to {}",
        log_dir.display(),
        expectations_path.display()
    );
    Ok(())
}

/// Writes `log_dir/train` and returns its expectations.
fn write_train_run(log_dir: &Path) -> Result<Value, Box<dyn Error>> {
    let mut writer = EventWriter::create(log_dir.join("train"))?;
    writer.write_text("keras", 0, MODEL_CONFIG)?;

    // Accuracy 0.0 at epoch 0 checks that a zero value survives encoding.
    let losses = [1.0_f32, 0.5, 0.1];
    let accuracies = [0.0_f32, 0.5, 0.75];
    for epoch in 0..3 {
        let step = epoch as i64;
        writer.write_scalar("epoch_loss", step, losses[epoch])?;
        writer.write_scalar("epoch_accuracy", step, accuracies[epoch])?;
        writer.write_scalar("epoch_learning_rate", step, 0.001)?;
    }

    // 100 values from -1.0 to 0.98, plus a NaN that the writer leaves out.
    let mut kernel: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) / 50.0).collect();
    kernel.push(f32::NAN);
    for step in [0, 2] {
        let skipped = writer.write_histogram("dense/kernel/histogram", step, &kernel)?;
        assert_eq!(skipped, 1, "the NaN is the only non-finite value");
    }

    // Worked by hand: 3 buckets over [0, 3] have width 1, so 0.0 goes to the first, 1.0 and
    // 1.5 to the second, and 3.0, the max, to the last.
    writer.write_histogram_with_buckets("dense/bias/histogram", 0, &[0.0, 1.0, 1.5, 3.0], 3)?;
    writer.close()?;

    let kernel_expectations: Vec<Value> = [0, 2]
        .iter()
        .map(|step| {
            json!({
                "step": step,
                "bucket_count": 30,
                "count": 100,
                "min": -1.0,
                "max": f64::from(0.98_f32),
            })
        })
        .collect();
    Ok(json!({
        "scalars": {
            "epoch_loss": pairs(&losses),
            "epoch_accuracy": pairs(&accuracies),
            "epoch_learning_rate": pairs(&[0.001_f32; 3]),
        },
        "histograms": {
            "dense/kernel/histogram": kernel_expectations,
            "dense/bias/histogram": [{
                "step": 0,
                "bucket_count": 3,
                "count": 4,
                "min": 0.0,
                "max": 3.0,
                "buckets": [[0.0, 1.0, 1.0], [1.0, 2.0, 2.0], [2.0, 3.0, 1.0]],
            }],
        },
        "texts": { "keras": [[0, MODEL_CONFIG]] },
    }))
}

/// Writes `log_dir/validation` and returns its expectations.
fn write_validation_run(log_dir: &Path) -> Result<Value, Box<dyn Error>> {
    let mut writer = EventWriter::create(log_dir.join("validation"))?;
    let losses = [1.25_f32, 0.625, 0.3];
    let accuracies = [0.0_f32, 0.25, 0.5];
    // Keras steps evaluation scalars by optimizer iterations: 10 batches per epoch here.
    let iterations = [10_i64, 20, 30];
    for epoch in 0..3 {
        let step = epoch as i64;
        writer.write_scalar("epoch_loss", step, losses[epoch])?;
        writer.write_scalar("epoch_accuracy", step, accuracies[epoch])?;
        writer.write_scalar(
            "evaluation_loss_vs_iterations",
            iterations[epoch],
            losses[epoch],
        )?;
    }
    writer.close()?;

    let evaluation: Vec<Value> = iterations
        .iter()
        .zip(losses)
        .map(|(&step, loss)| json!([step, f64::from(loss)]))
        .collect();
    Ok(json!({
        "scalars": {
            "epoch_loss": pairs(&losses),
            "epoch_accuracy": pairs(&accuracies),
            "evaluation_loss_vs_iterations": evaluation,
        },
    }))
}

/// Returns `[[0, values[0]], [1, values[1]], …]` with each f32 widened exactly to f64.
fn pairs(values: &[f32]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(step, &value)| json!([step, f64::from(value)]))
        .collect()
}
