//! Fits small models with the `TensorBoard` callback and reads the event files back, checking
//! Keras's layout, tags, steps and values against the `History` of the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use grit_tensorboard::proto::summary::value;
use grit_tensorboard::proto::{DataType, TensorProto, event};
use grit_tensorboard::{
    TRAIN_DIR, TensorBoard, UpdateFreq, VALIDATION_DIR, model_config_text, read_events,
};
use grit_train::prelude::*;
use ndarray::{Array2, array};

/// Learning rates that [`RateSetter`] applies in epochs 0, 1, 2, ...
const RATES: [f32; 5] = [0.1, 0.05, 0.025, 0.0125, 0.00625];

/// The value of one point of a tag, decoded from its tensor.
#[derive(Debug, Clone, PartialEq)]
enum PointValue {
    Scalar(f32),
    Histogram(Vec<[f64; 3]>),
    Text(String),
}

/// Points by tag, in file order, each as `(step, value)`.
type Points = BTreeMap<String, Vec<(i64, PointValue)>>;

fn xor() -> (Array2<f32>, Array2<f32>) {
    (
        array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        array![[0.0], [1.0], [1.0], [0.0]],
    )
}

/// Builds a 2-4-1 network for XOR with Adam at a fixed rate, which [`RateSetter`] may change.
fn xor_model(metrics: Vec<Metric>) -> Sequential {
    let mut model = Sequential::new([2])
        .seed(7)
        .add(Dense::new(4).activation(Activation::Tanh))
        .add(Dense::new(1).activation(Activation::Sigmoid));
    model
        .compile(Adam::new(RATES[0]), Loss::BINARY_CROSSENTROPY, metrics)
        .unwrap();
    model
}

/// Sets `RATES[epoch]` at each epoch begin and logs it as `learning_rate`, as a
/// learning-rate scheduler does.
struct RateSetter;

impl Callback for RateSetter {
    fn on_epoch_begin(
        &mut self,
        epoch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit_train::Result<()> {
        ctx.set_learning_rate(RATES[epoch])
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        _ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit_train::Result<()> {
        logs.insert("learning_rate".to_string(), f64::from(RATES[epoch]));
        Ok(())
    }
}

/// Records what the run looks like to a callback, to compare with the event files.
#[derive(Default)]
struct Recorder {
    train_begun: bool,
    /// Training batches begun, across epochs.
    batches: u64,
    /// Logs of each training batch end, by 1-based global batch number.
    batch_logs: BTreeMap<u64, Logs>,
    /// Every weight's values at each epoch end.
    weights: BTreeMap<usize, Vec<(String, Vec<f32>)>>,
    /// When set, the train run directory to read at each epoch end.
    probe_dir: Option<PathBuf>,
    /// `epoch_loss` steps found in the train event file at each epoch end.
    flushed_steps: Vec<Vec<i64>>,
}

impl Callback for Recorder {
    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> grit_train::Result<()> {
        self.train_begun = true;
        Ok(())
    }

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
        if let Some(dir) = &self.probe_dir {
            let points = read_run(dir);
            self.flushed_steps.push(steps(&points, "epoch_loss"));
        }
        Ok(())
    }
}

/// Returns the event files in `dir`, sorted by name.
fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("failed to list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("tfevents"))
        .collect();
    files.sort();
    files
}

/// Reads the only event file in `dir`.
fn read_run(dir: &Path) -> Points {
    let files = event_files(dir);
    assert_eq!(
        files.len(),
        1,
        "event files in {}: {files:?}",
        dir.display()
    );
    read_file(&files[0])
}

/// Decodes every summary value of one event file.
fn read_file(path: &Path) -> Points {
    let mut points = Points::new();
    for event in read_events(path).unwrap() {
        let Some(event::What::Summary(summary)) = event.what else {
            continue;
        };
        for summary_value in summary.value {
            let Some(value::Value::Tensor(tensor)) = &summary_value.value else {
                panic!("tag {} has no tensor", summary_value.tag);
            };
            let decoded = decode(&summary_value.tag, tensor);
            points
                .entry(summary_value.tag)
                .or_default()
                .push((event.step, decoded));
        }
    }
    points
}

fn decode(tag: &str, tensor: &TensorProto) -> PointValue {
    let dims: Vec<i64> = tensor
        .tensor_shape
        .as_ref()
        .map(|shape| shape.dim.iter().map(|dim| dim.size).collect())
        .unwrap_or_default();
    if tensor.dtype == DataType::DtFloat as i32 {
        assert!(dims.is_empty(), "scalar {tag} has shape {dims:?}");
        assert_eq!(tensor.float_val.len(), 1, "float_val of scalar {tag}");
        PointValue::Scalar(tensor.float_val[0])
    } else if tensor.dtype == DataType::DtDouble as i32 {
        assert_eq!(dims.len(), 2, "histogram {tag} has shape {dims:?}");
        assert_eq!(dims[1], 3, "histogram {tag} has shape {dims:?}");
        let rows = tensor
            .double_val
            .chunks(3)
            .map(|row| [row[0], row[1], row[2]])
            .collect();
        PointValue::Histogram(rows)
    } else if tensor.dtype == DataType::DtString as i32 {
        assert_eq!(tensor.string_val.len(), 1, "string_val of text {tag}");
        PointValue::Text(String::from_utf8(tensor.string_val[0].clone()).unwrap())
    } else {
        panic!("tag {tag} has unexpected dtype {}", tensor.dtype)
    }
}

fn tags(points: &Points) -> BTreeSet<String> {
    points.keys().cloned().collect()
}

fn tag_set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|tag| tag.to_string()).collect()
}

fn steps(points: &Points, tag: &str) -> Vec<i64> {
    points
        .get(tag)
        .map(|points| points.iter().map(|(step, _)| *step).collect())
        .unwrap_or_default()
}

/// Returns the scalar points of `tag`, failing if it is missing or not a scalar.
fn scalars(points: &Points, tag: &str) -> Vec<(i64, f32)> {
    let Some(tag_points) = points.get(tag) else {
        panic!("tag {tag} is missing; tags: {:?}", tags(points));
    };
    tag_points
        .iter()
        .map(|(step, value)| match value {
            PointValue::Scalar(scalar) => (*step, *scalar),
            other => panic!("tag {tag} at step {step} is not a scalar: {other:?}"),
        })
        .collect()
}

/// Returns `values` as f32 points at steps 0, 1, 2, ...
fn per_epoch(values: &[f64]) -> Vec<(i64, f32)> {
    values
        .iter()
        .enumerate()
        .map(|(epoch, value)| (epoch as i64, *value as f32))
        .collect()
}

/// Without metrics, Keras's `test_TensorBoard_basic` finds exactly `epoch_loss` and
/// `epoch_learning_rate` in train and `epoch_loss` and `evaluation_loss_vs_iterations` in
/// validation. grit adds the `model_config` text.
#[test]
fn default_callback_writes_keras_tags() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![]);
    let mut tensorboard = TensorBoard::new(logs.path());
    let options = FitOptions::new()
        .epochs(3)
        .batch_size(2)
        .shuffle(false)
        .validation_data(&x, &y)
        .verbose(0);
    let history = model
        .fit(&x, &y, &options, &mut [&mut RateSetter, &mut tensorboard])
        .unwrap();

    let train = read_run(&logs.path().join(TRAIN_DIR));
    let validation = read_run(&logs.path().join(VALIDATION_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&["epoch_learning_rate", "epoch_loss", "model_config"])
    );
    assert_eq!(
        tags(&validation),
        tag_set(&["epoch_loss", "evaluation_loss_vs_iterations"])
    );

    assert_eq!(
        scalars(&train, "epoch_loss"),
        per_epoch(&history.values("loss"))
    );
    assert_eq!(
        scalars(&validation, "epoch_loss"),
        per_epoch(&history.values("val_loss"))
    );
}

#[test]
fn epoch_scalars_match_history() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![Metric::Accuracy]);
    let mut tensorboard = TensorBoard::new(logs.path());
    let mut recorder = Recorder {
        probe_dir: Some(logs.path().join(TRAIN_DIR)),
        ..Recorder::default()
    };
    let options = FitOptions::new()
        .epochs(3)
        .batch_size(2)
        .validation_data(&x, &y)
        .verbose(0);
    let history = model
        .fit(
            &x,
            &y,
            &options,
            &mut [&mut RateSetter, &mut tensorboard, &mut recorder],
        )
        .unwrap();

    let train = read_run(&logs.path().join(TRAIN_DIR));
    let validation = read_run(&logs.path().join(VALIDATION_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&[
            "epoch_accuracy",
            "epoch_learning_rate",
            "epoch_loss",
            "model_config"
        ])
    );
    assert_eq!(
        tags(&validation),
        tag_set(&[
            "epoch_accuracy",
            "epoch_loss",
            "evaluation_accuracy_vs_iterations",
            "evaluation_loss_vs_iterations"
        ])
    );

    assert_eq!(
        scalars(&train, "epoch_loss"),
        per_epoch(&history.values("loss"))
    );
    assert_eq!(
        scalars(&train, "epoch_accuracy"),
        per_epoch(&history.values("accuracy"))
    );
    // One point per epoch although the logs also contain `learning_rate`.
    let rates: Vec<(i64, f32)> = (0..3).map(|epoch| (epoch, RATES[epoch as usize])).collect();
    assert_eq!(scalars(&train, "epoch_learning_rate"), rates);
    assert_eq!(
        history.values("learning_rate"),
        RATES[..3]
            .iter()
            .map(|&rate| f64::from(rate))
            .collect::<Vec<_>>()
    );

    assert_eq!(
        scalars(&validation, "epoch_loss"),
        per_epoch(&history.values("val_loss"))
    );
    assert_eq!(
        scalars(&validation, "epoch_accuracy"),
        per_epoch(&history.values("val_accuracy"))
    );

    // Two batches per epoch, so validation after epoch e follows 2·(e + 1) optimizer updates.
    let evaluation_loss: Vec<(i64, f32)> = history
        .values("val_loss")
        .iter()
        .enumerate()
        .map(|(epoch, value)| (2 * (epoch as i64 + 1), *value as f32))
        .collect();
    assert_eq!(
        scalars(&validation, "evaluation_loss_vs_iterations"),
        evaluation_loss
    );
    assert_eq!(
        steps(&validation, "evaluation_accuracy_vs_iterations"),
        vec![2, 4, 6]
    );

    let expected_text = model_config_text(model.config(), &model.summary());
    assert_eq!(
        train["model_config"],
        vec![(0, PointValue::Text(expected_text))]
    );

    // A callback after TensorBoard finds each epoch's values already on disk.
    assert_eq!(
        recorder.flushed_steps,
        vec![vec![0], vec![0, 1], vec![0, 1, 2]]
    );
}

#[test]
fn histograms_and_batch_scalars() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![Metric::Accuracy]);
    let mut tensorboard = TensorBoard::new(logs.path())
        .histogram_freq(2)
        .update_freq(UpdateFreq::Batches(3));
    let mut recorder = Recorder::default();
    // Batch size 1 gives 4 batches per epoch and 12 in 3 epochs.
    let options = FitOptions::new()
        .epochs(3)
        .batch_size(1)
        .validation_data(&x, &y)
        .verbose(0);
    model
        .fit(
            &x,
            &y,
            &options,
            &mut [&mut RateSetter, &mut tensorboard, &mut recorder],
        )
        .unwrap();

    let train = read_run(&logs.path().join(TRAIN_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&[
            "batch_accuracy",
            "batch_loss",
            "dense/bias/histogram",
            "dense/kernel/histogram",
            "dense_1/bias/histogram",
            "dense_1/kernel/histogram",
            "epoch_accuracy",
            "epoch_learning_rate",
            "epoch_loss",
            "model_config"
        ])
    );

    assert_eq!(recorder.batches, 12);
    for key in ["loss", "accuracy"] {
        let expected: Vec<(i64, f32)> = [3, 6, 9, 12]
            .iter()
            .map(|&batch| (batch as i64, recorder.batch_logs[&batch][key] as f32))
            .collect();
        assert_eq!(scalars(&train, &format!("batch_{key}")), expected, "{key}");
    }

    for (name, _) in &recorder.weights[&0] {
        let tag = format!("{name}/histogram");
        assert_eq!(steps(&train, &tag), vec![0, 2], "{tag}");
        for (step, point) in &train[&tag] {
            let epoch = *step as usize;
            let values = &recorder.weights[&epoch]
                .iter()
                .find(|(weight, _)| weight == name)
                .unwrap()
                .1;
            let PointValue::Histogram(rows) = point else {
                panic!("{tag} at step {step} is not a histogram: {point:?}");
            };
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let count: f64 = rows.iter().map(|row| row[2]).sum();
            assert_eq!(rows.len(), 30, "{tag} step {step}");
            assert_eq!(count, values.len() as f64, "{tag} step {step}");
            assert_eq!(rows[0][0], f64::from(min), "{tag} step {step}");
            assert_eq!(rows[29][1], f64::from(max), "{tag} step {step}");
        }
    }

    let validation = read_run(&logs.path().join(VALIDATION_DIR));
    assert!(
        tags(&validation)
            .iter()
            .all(|tag| !tag.starts_with("batch_")),
        "{:?}",
        tags(&validation)
    );
}

/// Keras's `update_freq=1`: the default tags plus `batch_loss` at every global batch from 1.
#[test]
fn batch_frequency_one_adds_batch_loss() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![]);
    let mut tensorboard = TensorBoard::new(logs.path()).update_freq(UpdateFreq::Batches(1));
    let options = FitOptions::new()
        .epochs(2)
        .batch_size(2)
        .validation_data(&x, &y)
        .verbose(0);
    model
        .fit(&x, &y, &options, &mut [&mut tensorboard])
        .unwrap();

    let train = read_run(&logs.path().join(TRAIN_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&[
            "batch_loss",
            "epoch_learning_rate",
            "epoch_loss",
            "model_config"
        ])
    );
    assert_eq!(steps(&train, "batch_loss"), vec![1, 2, 3, 4]);
}

#[test]
fn second_fit_restarts_batch_counter() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![]);
    let mut tensorboard = TensorBoard::new(logs.path()).update_freq(UpdateFreq::Batches(1));
    let first = FitOptions::new().epochs(2).batch_size(2).verbose(0);
    model.fit(&x, &y, &first, &mut [&mut tensorboard]).unwrap();
    let second = first.initial_epoch(2).epochs(3);
    model.fit(&x, &y, &second, &mut [&mut tensorboard]).unwrap();

    let files = event_files(&logs.path().join(TRAIN_DIR));
    assert_eq!(files.len(), 2, "{files:?}");
    let runs: Vec<Points> = files.iter().map(|file| read_file(file)).collect();
    let (first_run, second_run) = if steps(&runs[0], "epoch_loss") == [0, 1] {
        (&runs[0], &runs[1])
    } else {
        (&runs[1], &runs[0])
    };
    assert_eq!(steps(first_run, "epoch_loss"), vec![0, 1]);
    assert_eq!(steps(first_run, "batch_loss"), vec![1, 2, 3, 4]);
    assert_eq!(steps(second_run, "epoch_loss"), vec![2]);
    assert_eq!(steps(second_run, "batch_loss"), vec![1, 2]);
}

/// A linear unit with zero weights on zero targets has a mean squared error of exactly 0,
/// and a rate of 0 keeps it there.
#[test]
fn zero_scalar_is_stored_as_zero() {
    let x = array![[1.0f32, 2.0], [3.0, 4.0]];
    let y = array![[0.0f32], [0.0]];
    let mut model = Sequential::new([2]).add(
        Dense::new(1)
            .kernel_initializer(Initializer::Zeros)
            .bias_initializer(Initializer::Zeros),
    );
    model
        .compile(Sgd::new(0.0), Loss::MeanSquaredError, [])
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut tensorboard = TensorBoard::new(logs.path());
    let options = FitOptions::new().epochs(2).batch_size(2).verbose(0);
    let history = model
        .fit(&x, &y, &options, &mut [&mut tensorboard])
        .unwrap();
    assert_eq!(history.values("loss"), vec![0.0, 0.0]);

    let train = read_run(&logs.path().join(TRAIN_DIR));
    for tag in ["epoch_loss", "epoch_learning_rate"] {
        let points = scalars(&train, tag);
        assert_eq!(points.len(), 2, "{tag}");
        for (step, value) in points {
            assert_eq!(value.to_bits(), 0.0f32.to_bits(), "{tag} at step {step}");
        }
    }
}

/// Keras's `test_TensorBoard_no_spurious_event_files`.
#[test]
fn no_validation_folder_without_validation() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![]);
    let mut tensorboard = TensorBoard::new(logs.path()).histogram_freq(1);
    let options = FitOptions::new().epochs(2).batch_size(4).verbose(0);
    model
        .fit(&x, &y, &options, &mut [&mut tensorboard])
        .unwrap();

    assert!(!logs.path().join(VALIDATION_DIR).exists());
    let entries: Vec<PathBuf> = fs::read_dir(logs.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries, vec![logs.path().join(TRAIN_DIR)]);
    let train = read_run(&logs.path().join(TRAIN_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&[
            "dense/bias/histogram",
            "dense/kernel/histogram",
            "dense_1/bias/histogram",
            "dense_1/kernel/histogram",
            "epoch_learning_rate",
            "epoch_loss",
            "model_config"
        ])
    );
}

#[test]
fn unwritable_log_dir_fails_before_first_batch() {
    let (x, y) = xor();
    let root = tempfile::tempdir().unwrap();
    // A directory cannot be created below a regular file, even by root.
    let blocker = root.path().join("blocker");
    fs::write(&blocker, "not a directory").unwrap();
    let log_dir = blocker.join("logs");
    let mut model = xor_model(vec![]);
    let mut recorder = Recorder::default();
    let mut tensorboard = TensorBoard::new(&log_dir);
    let options = FitOptions::new().epochs(2).batch_size(2).verbose(0);
    let error = model
        .fit(&x, &y, &options, &mut [&mut recorder, &mut tensorboard])
        .unwrap_err();

    assert!(recorder.train_begun);
    assert_eq!(recorder.batches, 0);
    let TrainError::Io { path, .. } = &error else {
        panic!("expected TrainError::Io, got {error:?}");
    };
    assert!(path.starts_with(&log_dir), "{}", path.display());
    let message = error.to_string();
    assert!(
        message.contains("failed to create TensorBoard log directory"),
        "{message}"
    );
    assert!(
        message.contains(&log_dir.display().to_string()),
        "{message}"
    );
}

#[test]
fn run_names_share_one_log_dir() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    for name in ["adam", "schedules/slow"] {
        let mut model = xor_model(vec![]);
        let mut tensorboard = TensorBoard::new(logs.path()).run_name(name);
        let options = FitOptions::new()
            .epochs(1)
            .batch_size(4)
            .validation_data(&x, &y)
            .verbose(0);
        model
            .fit(&x, &y, &options, &mut [&mut tensorboard])
            .unwrap();
    }

    assert!(!logs.path().join(TRAIN_DIR).exists());
    for name in ["adam", "schedules/slow"] {
        for run in [TRAIN_DIR, VALIDATION_DIR] {
            let dir = logs.path().join(name).join(run);
            assert_eq!(event_files(&dir).len(), 1, "{}", dir.display());
        }
    }
}

#[test]
fn invalid_settings_fail_before_training() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let cases = [
        TensorBoard::new(logs.path()).update_freq(UpdateFreq::Batches(0)),
        TensorBoard::new(logs.path()).run_name(""),
        TensorBoard::new(logs.path()).run_name("../outside"),
        TensorBoard::new(logs.path()).run_name("/absolute"),
    ];
    for mut tensorboard in cases {
        let settings = format!("{tensorboard:?}");
        let mut model = xor_model(vec![]);
        let mut recorder = Recorder::default();
        let options = FitOptions::new().epochs(1).batch_size(4).verbose(0);
        let error = model
            .fit(&x, &y, &options, &mut [&mut recorder, &mut tensorboard])
            .unwrap_err();
        assert!(
            matches!(
                error,
                TrainError::InvalidCallback {
                    callback: "TensorBoard",
                    ..
                }
            ),
            "{settings}: {error:?}"
        );
        assert!(!recorder.train_begun, "{settings}");
    }
    assert_eq!(fs::read_dir(logs.path()).unwrap().count(), 0);
}

#[test]
fn model_config_can_be_turned_off() {
    let (x, y) = xor();
    let logs = tempfile::tempdir().unwrap();
    let mut model = xor_model(vec![]);
    let mut tensorboard = TensorBoard::new(logs.path()).write_model_config(false);
    let options = FitOptions::new().epochs(1).batch_size(4).verbose(0);
    model
        .fit(&x, &y, &options, &mut [&mut tensorboard])
        .unwrap();

    let train = read_run(&logs.path().join(TRAIN_DIR));
    assert_eq!(
        tags(&train),
        tag_set(&["epoch_learning_rate", "epoch_loss"])
    );
}
