//! Trains small MNIST models with the `TensorBoard` callback and has the real TensorBoard
//! (the `tensorboard` Python package in the workspace's `.venv`) read the logs back through
//! `scripts/check_tensorboard.py`.
//!
//! The expectations come from each run's `History`, the batch logs and the weights seen by a
//! recording callback, and the learning-rate schedule itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use grit_data::Mnist;
use grit_optim::{ExponentialDecay, LearningRateSchedule};
use grit_tensorboard::{TensorBoard, UpdateFreq, model_config_text};
use grit_train::prelude::*;
use serde_json::{Value, json};

const TRAIN_SAMPLES: usize = 2000;
const VALIDATION_SAMPLES: usize = 500;
const BATCH_SIZE: usize = 64;
/// 2000 samples in batches of 64: 31 full batches and one of 16.
const STEPS_PER_EPOCH: u64 = 32;
const EPOCHS: usize = 3;
const BATCH_UPDATE_FREQ: u64 = 10;
/// Per-epoch rates of the `step` run, set by [`EpochRates`].
const STEP_RATES: [f32; EPOCHS] = [2e-3, 1e-3, 5e-4];

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The crate lives in `<workspace>/crates/grit-tensorboard`.
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("the crate is two levels below the workspace root")
        .to_path_buf()
}

/// Returns `.venv/bin/python`, failing with the setup command when it is missing.
fn venv_python(root: &Path) -> PathBuf {
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: this test runs the real TensorBoard from the workspace's virtual \
         environment. Run the README's test command, `scripts/test.sh`, which creates it, or \
         create it by hand in the workspace root with `python3 -m venv .venv && \
         .venv/bin/pip install -r scripts/requirements.txt`.",
        python.display()
    );
    python
}

fn load_mnist(root: &Path) -> Mnist {
    let datasets = std::env::var_os("GRIT_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("datasets"));
    let dir = datasets.join("mnist");
    grit_data::ensure_mnist(&dir)
        .unwrap_or_else(|error| panic!("MNIST is not available in {}: {error}", dir.display()));
    Mnist::load(&dir).unwrap()
}

fn mnist_model(optimizer: Adam) -> Sequential {
    let mut model = Sequential::new([28, 28])
        .seed(11)
        .add(Flatten::new())
        .add(Dense::new(32).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            optimizer,
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

/// Sets `STEP_RATES[epoch]` at each epoch begin and logs it as `learning_rate`, as Keras's
/// `LearningRateScheduler` does.
struct EpochRates;

impl Callback for EpochRates {
    fn on_epoch_begin(
        &mut self,
        epoch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit_train::Result<()> {
        ctx.set_learning_rate(STEP_RATES[epoch])
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        _ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit_train::Result<()> {
        logs.insert("learning_rate".to_string(), f64::from(STEP_RATES[epoch]));
        Ok(())
    }
}

/// Records the batch logs and weights that the `TensorBoard` callback receives.
#[derive(Default)]
struct Recorder {
    batches: u64,
    /// Logs of each training batch end, by 1-based global batch number.
    batch_logs: BTreeMap<u64, Logs>,
    /// Every weight's values at each epoch end.
    weights: BTreeMap<usize, Vec<(String, Vec<f32>)>>,
}

impl Callback for Recorder {
    fn on_train_batch_begin(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit_train::Result<()> {
        self.batches += 1;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit_train::Result<()> {
        self.batch_logs.insert(self.batches, logs.clone());
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit_train::Result<()> {
        let weights = ctx
            .weights()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.iter().copied().collect()))
            .collect();
        self.weights.insert(epoch, weights);
        Ok(())
    }
}

/// Builds `[[step, value], ...]` from `(step, value)` pairs.
fn points(pairs: impl IntoIterator<Item = (u64, f64)>) -> Value {
    Value::Array(
        pairs
            .into_iter()
            .map(|(step, value)| json!([step, value]))
            .collect(),
    )
}

fn per_epoch(values: &[f64]) -> Value {
    points(
        values
            .iter()
            .enumerate()
            .map(|(epoch, value)| (epoch as u64, *value)),
    )
}

/// Builds the expectations of one run name's `train` and `validation` runs.
fn expected_runs(
    run_name: &str,
    history: &History,
    recorder: &Recorder,
    learning_rates: &[f32],
    model_text: &str,
) -> Vec<(String, Value)> {
    let mut train_scalars = serde_json::Map::new();
    let mut validation_scalars = serde_json::Map::new();
    for key in ["loss", "accuracy"] {
        train_scalars.insert(format!("epoch_{key}"), per_epoch(&history.values(key)));
        let validation = history.values(&format!("val_{key}"));
        validation_scalars.insert(format!("epoch_{key}"), per_epoch(&validation));
        let after_epochs = validation
            .iter()
            .enumerate()
            .map(|(epoch, value)| (STEPS_PER_EPOCH * (epoch as u64 + 1), *value));
        validation_scalars.insert(
            format!("evaluation_{key}_vs_iterations"),
            points(after_epochs),
        );
        let batches = recorder
            .batch_logs
            .iter()
            .filter(|(batch, _)| *batch % BATCH_UPDATE_FREQ == 0)
            .map(|(batch, logs)| (*batch, logs[key]));
        train_scalars.insert(format!("batch_{key}"), points(batches));
    }
    let rates: Vec<f64> = learning_rates.iter().map(|&rate| f64::from(rate)).collect();
    train_scalars.insert("epoch_learning_rate".to_string(), per_epoch(&rates));

    let mut histograms = serde_json::Map::new();
    for (name, _) in &recorder.weights[&0] {
        let per_step: Vec<Value> = recorder
            .weights
            .iter()
            .map(|(epoch, weights)| {
                let values = &weights.iter().find(|(weight, _)| weight == name).unwrap().1;
                let min = values.iter().copied().fold(f32::INFINITY, f32::min);
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                json!({
                    "step": epoch,
                    "bucket_count": 30,
                    "count": values.len(),
                    "min": min,
                    "max": max,
                })
            })
            .collect();
        histograms.insert(format!("{name}/histogram"), Value::Array(per_step));
    }

    vec![
        (
            format!("{run_name}/train"),
            json!({
                "scalars": train_scalars,
                "histograms": histograms,
                "texts": {"model_config": [[0, model_text]]},
            }),
        ),
        (
            format!("{run_name}/validation"),
            json!({"scalars": validation_scalars}),
        ),
    ]
}

/// Counts the tags and points that `check_tensorboard.py` reports for `runs`.
fn count_tags_and_points(runs: &serde_json::Map<String, Value>) -> (usize, usize) {
    let mut tags = 0;
    let mut points = 0;
    for sections in runs.values() {
        for section in sections.as_object().unwrap().values() {
            let section = section.as_object().unwrap();
            tags += section.len();
            points += section
                .values()
                .map(|points| points.as_array().unwrap().len())
                .sum::<usize>();
        }
    }
    (tags, points)
}

#[test]
fn real_tensorboard_reads_mnist_runs() {
    let root = workspace_root();
    let python = venv_python(&root);
    let mnist = load_mnist(&root);
    let x = mnist.train_images.take(TRAIN_SAMPLES);
    let y = mnist
        .train_labels
        .slice(ndarray::s![..TRAIN_SAMPLES])
        .to_owned();
    let x_validation = mnist.test_images.take(VALIDATION_SAMPLES);
    let y_validation = mnist
        .test_labels
        .slice(ndarray::s![..VALIDATION_SAMPLES])
        .to_owned();
    let options = FitOptions::new()
        .epochs(EPOCHS)
        .batch_size(BATCH_SIZE)
        .validation_data(&x_validation, &y_validation)
        .verbose(0);

    let work = tempfile::tempdir().unwrap();
    let log_dir = work.path().join("logs");
    let mut runs = serde_json::Map::new();

    // Run 1: Adam on an exponential-decay schedule of the update count. Keras logs the rate
    // the next update will use, which is the schedule at the updates made so far.
    let schedule = ExponentialDecay::new(2e-3, 16, 0.8).unwrap();
    let mut model = mnist_model(Adam::new(schedule));
    let mut tensorboard = TensorBoard::new(&log_dir)
        .run_name("exponential")
        .histogram_freq(1)
        .update_freq(UpdateFreq::Batches(BATCH_UPDATE_FREQ));
    let mut recorder = Recorder::default();
    let history = model
        .fit(&x, &y, &options, &mut [&mut tensorboard, &mut recorder])
        .unwrap();
    assert_eq!(recorder.batches, STEPS_PER_EPOCH * EPOCHS as u64);
    let rates: Vec<f32> = (1..=EPOCHS as u64)
        .map(|epoch| schedule.learning_rate(STEPS_PER_EPOCH * epoch))
        .collect();
    let text = model_config_text(model.config(), &model.summary());
    runs.extend(expected_runs(
        "exponential",
        &history,
        &recorder,
        &rates,
        &text,
    ));

    // Run 2: a fixed rate that a callback changes each epoch and also puts in the logs.
    let mut model = mnist_model(Adam::new(STEP_RATES[0]));
    let mut tensorboard = TensorBoard::new(&log_dir)
        .run_name("step")
        .histogram_freq(1)
        .update_freq(UpdateFreq::Batches(BATCH_UPDATE_FREQ));
    let mut recorder = Recorder::default();
    let history = model
        .fit(
            &x,
            &y,
            &options,
            &mut [&mut EpochRates, &mut tensorboard, &mut recorder],
        )
        .unwrap();
    let text = model_config_text(model.config(), &model.summary());
    runs.extend(expected_runs(
        "step",
        &history,
        &recorder,
        &STEP_RATES,
        &text,
    ));

    let (tags, points) = count_tags_and_points(&runs);
    let run_count = runs.len();
    let expectations = work.path().join("expectations.json");
    std::fs::write(
        &expectations,
        serde_json::to_string_pretty(&json!({ "runs": runs })).unwrap(),
    )
    .unwrap();

    let script = root.join("scripts/check_tensorboard.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&log_dir)
        .arg(&expectations)
        .output()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display(),
        output.status
    );
    let expected_line = format!(
        "OK: {run_count} runs, {tags} tags, {points} points match in {}",
        log_dir.display()
    );
    assert_eq!(stdout.trim_end(), expected_line, "stderr:\n{stderr}");
}
