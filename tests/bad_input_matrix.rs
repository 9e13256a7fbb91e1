//! The bad-input matrix: every argument of `compile`, `fit`, `evaluate`, `predict`, `save`,
//! `load` and the callback constructors, with its invalid values. One test per row. Each row
//! runs the call inside [`no_panic`], so a panic anywhere fails the row with the panic
//! message, and asserts the error variant and that the message names the rejected value.
//!
//! Rows that `tests/bad_input.rs`, `tests/checkpoint.rs`, `tests/model_checkpoint.rs`,
//! `tests/callbacks.rs` and `tests/backup_and_restore.rs` already cover are not repeated here;
//! `docs/reliability.md` lists the whole matrix with the test of each row.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use grit::nn::NnError;
use grit::optim::OptimError;
use grit::prelude::*;
use grit::train::callbacks::BACKUP_FILE_NAME;
use ndarray::{Array1, Array2, Array4, arr0};

/// Runs `f` and returns its result, failing the test with the panic message if `f` panics.
fn no_panic<T>(f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic payload that is not a string)");
            panic!("the call panicked instead of returning an error: {message}");
        }
    }
}

/// Returns the error of `result`, failing the test when the call succeeded.
fn error_of<T: std::fmt::Debug>(result: Result<T, TrainError>) -> TrainError {
    result.expect_err("the call should return an error")
}

/// Returns a 4 → 8 → 3 softmax classifier compiled for integer labels.
fn classifier() -> Sequential {
    classifier_with(
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        vec![Metric::Accuracy],
    )
}

fn classifier_with(loss: Loss, metrics: Vec<Metric>) -> Sequential {
    let mut model = Sequential::new([4])
        .seed(3)
        .add(Dense::new(8).activation(Activation::Relu))
        .add(Dense::new(3).activation(Activation::Softmax));
    model.compile(Adam::new(0.01), loss, metrics).unwrap();
    model
}

fn inputs(n: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, 4), |(i, j)| ((i + j) % 5) as f32 * 0.2)
}

fn labels(n: usize) -> Array1<f32> {
    Array1::from_shape_fn(n, |i| (i % 3) as f32)
}

fn one_hot(n: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, 3), |(i, j)| if i % 3 == j { 1.0 } else { 0.0 })
}

fn quiet() -> FitOptions<'static> {
    FitOptions::new().epochs(1).batch_size(4).verbose(0)
}

/// Fits the classifier for one epoch on 12 samples with `callbacks`.
fn fit_with(callbacks: &mut [&mut dyn Callback]) -> Result<History, TrainError> {
    classifier().fit(&inputs(12), &labels(12), &quiet(), callbacks)
}

/// Fits the classifier with 25% validation data, so `val_loss` exists.
fn fit_validated(callbacks: &mut [&mut dyn Callback]) -> Result<History, TrainError> {
    let options = quiet().validation_split(0.25);
    classifier().fit(&inputs(12), &labels(12), &options, callbacks)
}

fn assert_invalid_label(error: &TrainError, data: &str, index: usize, label_text: &str) {
    match error {
        TrainError::InvalidLabel {
            what: found_what,
            index: found_index,
            classes,
            ..
        } => {
            assert_eq!(*found_what, data, "{error}");
            assert_eq!(*found_index, index, "{error}");
            assert_eq!(*classes, 3, "{error}");
        }
        other => panic!("expected InvalidLabel, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&format!("has label {label_text}")),
        "the message should name the label {label_text}: {text}"
    );
}

fn assert_invalid_argument(error: &TrainError, name: &str, value: &str) {
    match error {
        TrainError::InvalidArgument {
            name: found_name,
            value: found_value,
            ..
        } => {
            assert_eq!(*found_name, name, "{error}");
            assert_eq!(found_value, value, "{error}");
        }
        other => panic!("expected InvalidArgument for {name}, got {other:?}"),
    }
}

fn assert_optimizer_parameter(error: &TrainError, name: &str, value: &str) {
    match error {
        TrainError::Optimizer(OptimError::InvalidParameter {
            name: found_name,
            value: found_value,
            ..
        }) => {
            assert_eq!(*found_name, name, "{error}");
            assert_eq!(found_value, value, "{error}");
        }
        other => panic!("expected an invalid optimizer parameter {name}, got {other:?}"),
    }
}

fn assert_layer_parameter(error: &TrainError, name: &str, value: &str) {
    match error {
        TrainError::Layer(NnError::InvalidParameter {
            name: found_name,
            value: found_value,
            ..
        }) => {
            assert_eq!(*found_name, name, "{error}");
            assert_eq!(found_value, value, "{error}");
        }
        other => panic!("expected an invalid layer parameter {name}, got {other:?}"),
    }
}

fn assert_incompatible_shape(error: &TrainError, input_shape: &[usize], reason: &str) {
    match error {
        TrainError::Layer(NnError::IncompatibleShape {
            input_shape: found,
            reason: found_reason,
            ..
        }) => {
            assert_eq!(found, input_shape, "{error}");
            assert!(found_reason.contains(reason), "{error}");
        }
        other => panic!("expected IncompatibleShape, got {other:?}"),
    }
}

fn assert_invalid_callback(error: &TrainError, callback: &str, fragment: &str) {
    match error {
        TrainError::InvalidCallback {
            callback: found,
            message,
        } => {
            assert_eq!(*found, callback, "{error}");
            assert!(
                message.contains(fragment),
                "expected {fragment:?} in: {message}"
            );
        }
        other => panic!("expected InvalidCallback from {callback}, got {other:?}"),
    }
}

fn assert_io(error: &TrainError, path: &Path, action: &str) {
    match error {
        TrainError::Io {
            action: found_action,
            path: found_path,
            ..
        } => {
            assert_eq!(found_path, path, "{error}");
            assert!(found_action.contains(action), "{error}");
        }
        other => panic!(
            "expected an I/O error for {}, got {other:?}",
            path.display()
        ),
    }
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
}

fn assert_checkpoint(error: &TrainError, path: &Path, fragment: &str) {
    match error {
        TrainError::Checkpoint {
            path: found,
            message,
        } => {
            assert_eq!(found, path, "{error}");
            assert!(
                message.contains(fragment),
                "expected {fragment:?} in: {message}"
            );
        }
        other => panic!(
            "expected a checkpoint error for {}, got {other:?}",
            path.display()
        ),
    }
}

/// A folder that the test process cannot write to. Root ignores file permissions, so as
/// root the folder is a read-only tmpfs mounted for the test; otherwise it is a folder with
/// mode 0555.
struct ReadOnlyFolder {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl ReadOnlyFolder {
    fn new() -> ReadOnlyFolder {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};

        let dir = tempfile::tempdir().unwrap();
        let is_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
        if !is_root {
            let read_only = std::fs::Permissions::from_mode(0o555);
            std::fs::set_permissions(dir.path(), read_only).unwrap();
            return ReadOnlyFolder {
                dir,
                mounted: false,
            };
        }
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=64k", "grit-read-only"])
            .arg(dir.path())
            .output()
            .expect("failed to run `mount`");
        assert!(
            output.status.success(),
            "mounting a read-only tmpfs at {} failed: {}. As root, these rows need \
             CAP_SYS_ADMIN (mount) to make a folder that root cannot write",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
        ReadOnlyFolder { dir, mounted: true }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ReadOnlyFolder {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let writable = std::fs::Permissions::from_mode(0o755);
            let _ = std::fs::set_permissions(self.dir.path(), writable);
        }
    }
}

/// Returns `name` below `dir` as the `String` path that ModelCheckpoint takes.
fn path_text(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

// ---- fit: targets ----

#[test]
fn fit_negative_label() {
    let mut y = labels(12);
    y[5] = -1.0;
    let error = no_panic(|| error_of(classifier().fit(&inputs(12), &y, &quiet(), &mut [])));
    assert_invalid_label(&error, "targets", 5, "-1");
}

#[test]
fn fit_nan_label() {
    let mut y = labels(12);
    y[2] = f32::NAN;
    let error = no_panic(|| error_of(classifier().fit(&inputs(12), &y, &quiet(), &mut [])));
    assert_invalid_label(&error, "targets", 2, "NaN");
}

#[test]
fn fit_infinite_label() {
    let mut y = labels(12);
    y[11] = f32::INFINITY;
    let error = no_panic(|| error_of(classifier().fit(&inputs(12), &y, &quiet(), &mut [])));
    assert_invalid_label(&error, "targets", 11, "inf");
}

#[test]
fn fit_one_hot_targets_for_sparse_loss() {
    let error =
        no_panic(|| error_of(classifier().fit(&inputs(12), &one_hot(12), &quiet(), &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "targets", actual, expected }
                if actual == &[3] && expected.is_empty()
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("[3]"), "{error}");
}

#[test]
fn fit_labels_for_categorical_loss() {
    let mut model = classifier_with(Loss::CATEGORICAL_CROSSENTROPY, vec![Metric::Accuracy]);
    let error = no_panic(|| error_of(model.fit(&inputs(12), &labels(12), &quiet(), &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "targets", actual, expected }
                if actual.is_empty() && expected == &[3]
        ),
        "{error:?}"
    );
}

#[test]
fn fit_categorical_accuracy_with_labels() {
    let mut model = classifier_with(
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        vec![Metric::CategoricalAccuracy],
    );
    let error = no_panic(|| error_of(model.fit(&inputs(12), &labels(12), &quiet(), &mut [])));
    assert_invalid_argument(&error, "metrics", "categorical_accuracy");
    let text = error.to_string();
    assert!(text.contains("3 values per sample"), "{text}");
    assert!(text.contains("have 1"), "{text}");
}

#[test]
fn fit_binary_accuracy_with_labels() {
    let mut model = classifier_with(
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        vec![Metric::BinaryAccuracy],
    );
    let error = no_panic(|| error_of(model.fit(&inputs(12), &labels(12), &quiet(), &mut [])));
    assert_invalid_argument(&error, "metrics", "binary_accuracy");
}

#[test]
fn fit_error_metric_with_labels() {
    let mut model = classifier_with(
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        vec![Metric::MeanSquaredError],
    );
    let error = no_panic(|| error_of(model.fit(&inputs(12), &labels(12), &quiet(), &mut [])));
    assert_invalid_argument(&error, "metrics", "mean_squared_error");
}

#[test]
fn fit_sparse_accuracy_with_one_hot() {
    let mut model = classifier_with(
        Loss::CATEGORICAL_CROSSENTROPY,
        vec![Metric::SparseCategoricalAccuracy],
    );
    let error = no_panic(|| error_of(model.fit(&inputs(12), &one_hot(12), &quiet(), &mut [])));
    assert_invalid_argument(&error, "metrics", "sparse_categorical_accuracy");
    let text = error.to_string();
    assert!(text.contains("one integer label per sample"), "{text}");
    assert!(text.contains("have 3"), "{text}");
}

#[test]
fn fit_scalar_array_as_inputs() {
    let error =
        no_panic(|| error_of(classifier().fit(&arr0(1.0f32), &labels(1), &quiet(), &mut [])));
    assert!(
        matches!(error, TrainError::EmptyData("inputs")),
        "{error:?}"
    );
}

#[test]
fn fit_inputs_with_empty_feature_axis() {
    let x = Array2::<f32>::zeros((12, 0));
    let error = no_panic(|| error_of(classifier().fit(&x, &labels(12), &quiet(), &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "inputs", actual, .. } if actual == &[0]
        ),
        "{error:?}"
    );
}

// ---- fit: options ----

#[test]
fn fit_epochs_zero_trains_nothing() {
    let mut model = classifier();
    let before = model.get_weights();
    let options = quiet().epochs(0);
    let history = no_panic(|| model.fit(&inputs(12), &labels(12), &options, &mut []))
        .expect("Keras accepts epochs = 0 and trains no epoch");
    assert!(history.epochs().is_empty());
    assert_eq!(model.get_weights(), before);
}

#[test]
fn fit_initial_epoch_past_epochs() {
    let mut model = classifier();
    let before = model.get_weights();
    let options = quiet().epochs(2).initial_epoch(5);
    let history = no_panic(|| model.fit(&inputs(12), &labels(12), &options, &mut []))
        .expect("an initial epoch at or past `epochs` trains no epoch, as in Keras");
    assert!(history.epochs().is_empty());
    assert_eq!(model.get_weights(), before);
}

#[test]
fn fit_validation_split_infinite() {
    for split in [f32::INFINITY, f32::NEG_INFINITY] {
        let options = quiet().validation_split(split);
        let error =
            no_panic(|| error_of(classifier().fit(&inputs(12), &labels(12), &options, &mut [])));
        assert_invalid_argument(&error, "validation_split", &split.to_string());
    }
}

#[test]
fn fit_validation_batch_size_zero() {
    let options = quiet().validation_split(0.25).validation_batch_size(0);
    let error =
        no_panic(|| error_of(classifier().fit(&inputs(12), &labels(12), &options, &mut [])));
    assert_invalid_argument(&error, "validation_batch_size", "0");
}

#[test]
fn fit_validation_inputs_wrong_shape() {
    let (vx, vy) = (Array2::<f32>::zeros((4, 5)), labels(4));
    let options = quiet().validation_data(&vx, &vy);
    let error =
        no_panic(|| error_of(classifier().fit(&inputs(12), &labels(12), &options, &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "validation inputs", actual, expected }
                if actual == &[5] && expected == &[4]
        ),
        "{error:?}"
    );
}

#[test]
fn fit_validation_data_empty() {
    let (vx, vy) = (inputs(0), labels(0));
    let options = quiet().validation_data(&vx, &vy);
    let error =
        no_panic(|| error_of(classifier().fit(&inputs(12), &labels(12), &options, &mut [])));
    assert!(
        matches!(error, TrainError::EmptyData("validation inputs")),
        "{error:?}"
    );
}

#[test]
fn fit_validation_label_out_of_range() {
    let (vx, mut vy) = (inputs(4), labels(4));
    vy[1] = 7.0;
    let options = quiet().validation_data(&vx, &vy);
    let error =
        no_panic(|| error_of(classifier().fit(&inputs(12), &labels(12), &options, &mut [])));
    assert_invalid_label(&error, "validation targets", 1, "7");
}

#[test]
fn fit_validation_metric_mismatch() {
    let mut model = classifier_with(
        Loss::CATEGORICAL_CROSSENTROPY,
        vec![Metric::CategoricalAccuracy],
    );
    let (vx, vy) = (inputs(4), Array2::<f32>::zeros((4, 2)));
    let options = quiet().validation_data(&vx, &vy);
    let error = no_panic(|| error_of(model.fit(&inputs(12), &one_hot(12), &options, &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "validation targets", actual, expected }
                if actual == &[2] && expected == &[3]
        ),
        "{error:?}"
    );
}

// ---- evaluate and predict ----

#[test]
fn evaluate_invalid_label() {
    let mut y = labels(6);
    y[3] = 3.0;
    let error = no_panic(|| error_of(classifier().evaluate(&inputs(6), &y, 2)));
    assert_invalid_label(&error, "targets", 3, "3");
}

#[test]
fn evaluate_empty_data() {
    let error = no_panic(|| error_of(classifier().evaluate(&inputs(0), &labels(0), 2)));
    assert!(
        matches!(error, TrainError::EmptyData("inputs")),
        "{error:?}"
    );
}

#[test]
fn evaluate_metric_mismatch() {
    let mut model = classifier_with(
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        vec![Metric::CategoricalAccuracy],
    );
    let error = no_panic(|| error_of(model.evaluate(&inputs(6), &labels(6), 2)));
    assert_invalid_argument(&error, "metrics", "categorical_accuracy");
}

#[test]
fn predict_model_without_layers() {
    let mut model = Sequential::new([4]);
    let error = no_panic(|| error_of(model.predict(&inputs(3), 2)));
    assert_invalid_argument(&error, "layers", "none");
}

#[test]
fn predict_layer_rejects_input_shape() {
    let mut model = Sequential::new([2, 2]).add(Dense::new(3));
    let x = ndarray::Array3::<f32>::zeros((3, 2, 2));
    let error = no_panic(|| error_of(model.predict(&x, 2)));
    assert_incompatible_shape(&error, &[2, 2], "Flatten");
}

#[test]
fn predict_non_finite_inputs() {
    let mut x = inputs(3);
    x[[0, 0]] = f32::NAN;
    x[[1, 1]] = f32::INFINITY;
    let output = no_panic(|| classifier().predict(&x, 2))
        .expect("non-finite inputs are data, not an argument error");
    assert_eq!(output.shape(), &[3, 3]);
    assert!(
        output
            .index_axis(ndarray::Axis(0), 2)
            .iter()
            .all(|v| v.is_finite())
    );
}

// ---- compile: optimizers ----

#[test]
fn compile_sgd_learning_rate() {
    for rate in [-0.1f32, f32::INFINITY, f32::NEG_INFINITY] {
        let mut model = Sequential::new([4]).add(Dense::new(3));
        let error =
            no_panic(|| error_of(model.compile(Sgd::new(rate), Loss::MeanSquaredError, [])));
        assert_optimizer_parameter(&error, "learning_rate", &rate.to_string());
    }
}

#[test]
fn compile_sgd_momentum() {
    for momentum in [-0.5f32, 1.5, f32::NAN] {
        let mut model = Sequential::new([4]).add(Dense::new(3));
        let optimizer = Sgd::new(0.1).momentum(momentum);
        let error = no_panic(|| error_of(model.compile(optimizer, Loss::MeanSquaredError, [])));
        assert_optimizer_parameter(&error, "momentum", &momentum.to_string());
    }
}

#[test]
fn compile_adam_betas() {
    let cases = [
        ("beta_1", Adam::new(0.1).beta_1(1.0), "1"),
        ("beta_1", Adam::new(0.1).beta_1(-0.1), "-0.1"),
        ("beta_2", Adam::new(0.1).beta_2(f32::NAN), "NaN"),
        ("beta_2", Adam::new(0.1).beta_2(f32::INFINITY), "inf"),
    ];
    for (name, optimizer, value) in cases {
        let mut model = Sequential::new([4]).add(Dense::new(3));
        let error = no_panic(|| error_of(model.compile(optimizer, Loss::MeanSquaredError, [])));
        assert_optimizer_parameter(&error, name, value);
    }
}

#[test]
fn compile_adam_epsilon() {
    for epsilon in [0.0f32, -1e-7, f32::NAN, f32::INFINITY] {
        let mut model = Sequential::new([4]).add(Dense::new(3));
        let optimizer = Adam::new(0.1).epsilon(epsilon);
        let error = no_panic(|| error_of(model.compile(optimizer, Loss::MeanSquaredError, [])));
        assert_optimizer_parameter(&error, "epsilon", &epsilon.to_string());
    }
}

#[test]
fn compile_schedule_settings() {
    let cases = [
        (StepDecay::at(f32::NAN, 0.1, [10]), "initial_learning_rate"),
        (StepDecay::at(0.1, 0.0, [10]), "factor"),
        (StepDecay::at(0.1, f32::INFINITY, [10]), "factor"),
        (StepDecay::at(0.1, 0.5, [10, 5]), "milestones"),
        (StepDecay::every(0.1, 0.5, 0), "decay_steps"),
    ];
    for (result, name) in cases {
        let error = no_panic(|| result.expect_err("the schedule should be rejected"));
        assert!(
            matches!(&error, OptimError::InvalidParameter { name: found, .. } if *found == name),
            "{error:?}"
        );
    }
}

// ---- compile: layers ----

#[test]
fn compile_dense_zero_units() {
    let mut model = Sequential::new([4]).add(Dense::new(0));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_layer_parameter(&error, "units", "0");
}

#[test]
fn compile_dropout_rate() {
    for rate in [-0.1f32, 1.0, f32::NAN, f32::INFINITY] {
        let mut model = Sequential::new([4])
            .add(Dropout::new(rate))
            .add(Dense::new(3));
        let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
        assert_layer_parameter(&error, "rate", &rate.to_string());
    }
}

#[test]
fn compile_conv2d_settings() {
    let cases = [
        (Conv2D::new(0, (3, 3)), "filters", "0"),
        (Conv2D::new(4, (0, 3)), "kernel_size", "(0, 3)"),
        (Conv2D::new(4, (3, 3)).strides((1, 0)), "strides", "(1, 0)"),
    ];
    for (layer, name, value) in cases {
        let mut model = Sequential::new([8, 8, 1]).add(layer);
        let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
        assert_layer_parameter(&error, name, value);
    }
}

#[test]
fn compile_conv2d_kernel_larger_than_input() {
    let mut model = Sequential::new([2, 5, 1]).add(Conv2D::new(4, (3, 3)));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[2, 5, 1], "larger than the input");
}

#[test]
fn compile_conv2d_flat_input() {
    let mut model = Sequential::new([64]).add(Conv2D::new(4, (3, 3)));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[64], "Reshape");
}

#[test]
fn compile_pooling_settings() {
    let cases: Vec<(Box<dyn Layer>, &str, &str)> = vec![
        (
            Box::new(MaxPooling2D::new().pool_size((0, 2))),
            "pool_size",
            "(0, 2)",
        ),
        (
            Box::new(MaxPooling2D::new().strides((2, 0))),
            "strides",
            "(2, 0)",
        ),
        (
            Box::new(AveragePooling2D::new().pool_size((2, 0))),
            "pool_size",
            "(2, 0)",
        ),
    ];
    for (layer, name, value) in cases {
        let mut model = Sequential::new([4, 4, 1]);
        model.push(layer);
        let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
        assert_layer_parameter(&error, name, value);
    }
}

#[test]
fn compile_pool_larger_than_input() {
    let mut model = Sequential::new([3, 3, 2]).add(MaxPooling2D::new().pool_size((4, 4)));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[3, 3, 2], "no window fits");
}

#[test]
fn compile_batch_normalization_settings() {
    let cases = [
        (
            BatchNormalization::new().momentum(f32::NAN),
            "momentum",
            "NaN",
        ),
        (BatchNormalization::new().momentum(1.5), "momentum", "1.5"),
        (BatchNormalization::new().epsilon(0.0), "epsilon", "0"),
        (
            BatchNormalization::new().epsilon(f32::INFINITY),
            "epsilon",
            "inf",
        ),
    ];
    for (layer, name, value) in cases {
        let mut model = Sequential::new([4]).add(layer);
        let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
        assert_layer_parameter(&error, name, value);
    }
}

#[test]
fn compile_reshape_target_shape() {
    for target in [vec![0isize, 4], vec![-1, -1], vec![], vec![-2, 2]] {
        let mut model = Sequential::new([4]).add(Reshape::new(target.clone()));
        let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
        assert_layer_parameter(&error, "target_shape", &format!("{target:?}"));
    }
}

#[test]
fn compile_reshape_size_mismatch() {
    let mut model = Sequential::new([6]).add(Reshape::new([4, -1]));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[6], "multiple of 4");
    let mut model = Sequential::new([6]).add(Reshape::new([4, 2]));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[6], "8 values per sample");
}

#[test]
fn compile_reshape_huge_target() {
    // The product of these sizes overflows usize, so it must not wrap to a small number.
    let huge = 1isize << 40;
    let mut model = Sequential::new([4]).add(Reshape::new([huge, huge, -1]));
    let error = no_panic(|| error_of(model.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])));
    assert_incompatible_shape(&error, &[4], "values per sample");
}

// ---- save and load ----

#[test]
fn save_to_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("model.safetensors");
    std::fs::create_dir(&folder).unwrap();
    let error = no_panic(|| error_of(classifier().save(&folder)));
    assert_checkpoint(&error, &folder, "is a folder");
}

#[test]
fn save_to_empty_path() {
    let error = no_panic(|| error_of(classifier().save("")));
    assert_checkpoint(&error, Path::new(""), "does not name a file");
}

#[test]
fn save_below_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a folder").unwrap();
    let path = file.join("model.safetensors");
    let error = no_panic(|| error_of(classifier().save_weights(&path)));
    assert_io(&error, &file, "failed to create the folder");
}

#[test]
fn save_into_read_only_folder() {
    let folder = ReadOnlyFolder::new();
    let path = folder.path().join("model.safetensors");
    let error = no_panic(|| error_of(classifier().save(&path)));
    assert_io(&error, &path, "failed to create a temporary file");
    assert!(!path.exists());
}

#[test]
fn save_creates_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/model.safetensors");
    no_panic(|| classifier().save(&path)).expect("missing folders are created");
    assert!(path.is_file());
}

#[test]
fn load_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let error = no_panic(|| error_of(Sequential::load(dir.path())));
    assert_io(&error, dir.path(), "failed to read the checkpoint");
}

#[test]
fn load_from_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/model.safetensors");
    let error = no_panic(|| error_of(Sequential::load(&path)));
    assert_io(&error, &path, "failed to read the checkpoint");
}

#[test]
fn load_an_empty_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = no_panic(|| error_of(Sequential::load(file.path())));
    assert_checkpoint(&error, file.path(), "not a readable safetensors file");
}

#[test]
fn load_a_text_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "epoch,loss\n0,0.5\n").unwrap();
    let error = no_panic(|| error_of(Sequential::load(file.path())));
    assert_checkpoint(&error, file.path(), "not a readable safetensors file");
}

/// A valid safetensors file without grit's metadata, as another library writes.
#[test]
fn load_foreign_safetensors_file() {
    let header = br#"{"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let error = no_panic(|| error_of(Sequential::load(file.path())));
    assert_checkpoint(&error, file.path(), "was not written by grit");
    let mut model = classifier();
    let error = no_panic(|| error_of(model.load_weights(file.path())));
    assert_checkpoint(&error, file.path(), "was not written by grit");
}

/// A header length far beyond the file's size must not allocate or read past the end.
#[test]
fn load_file_with_huge_header_length() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let error = no_panic(|| error_of(Sequential::load(file.path())));
    assert_checkpoint(&error, file.path(), "not a readable safetensors file");
}

// ---- callbacks: EarlyStopping and ReduceLROnPlateau ----

#[test]
fn early_stopping_min_delta() {
    for min_delta in [f64::NAN, f64::INFINITY] {
        let mut early_stopping = EarlyStopping::new("loss").min_delta(min_delta);
        let error = no_panic(|| error_of(fit_with(&mut [&mut early_stopping])));
        assert_invalid_callback(&error, "EarlyStopping", &format!("min_delta = {min_delta}"));
    }
}

#[test]
fn early_stopping_baseline() {
    let mut early_stopping = EarlyStopping::new("loss").baseline(f64::NAN);
    let error = no_panic(|| error_of(fit_with(&mut [&mut early_stopping])));
    assert_invalid_callback(&error, "EarlyStopping", "baseline = NaN");
}

#[test]
fn early_stopping_unknown_mode_key() {
    // A key that `Mode::Auto` cannot give a direction to: it names the key and the fix.
    let mut plateau = ReduceLROnPlateau::new("loss");
    let mut early_stopping = EarlyStopping::new("learning_rate");
    let error = no_panic(|| error_of(fit_with(&mut [&mut plateau, &mut early_stopping])));
    assert_invalid_callback(&error, "EarlyStopping", "`learning_rate`");
    assert!(error.to_string().contains("Mode::Min"), "{error}");
}

#[test]
fn plateau_factor() {
    for factor in [0.0f32, -0.5, 1.5, f32::NAN] {
        let mut plateau = ReduceLROnPlateau::new("loss").factor(factor);
        let error = no_panic(|| error_of(fit_with(&mut [&mut plateau])));
        assert_invalid_callback(&error, "ReduceLROnPlateau", &format!("factor = {factor}"));
    }
}

#[test]
fn plateau_min_lr() {
    for min_lr in [-1e-3f32, f32::INFINITY, f32::NAN] {
        let mut plateau = ReduceLROnPlateau::new("loss").min_lr(min_lr);
        let error = no_panic(|| error_of(fit_with(&mut [&mut plateau])));
        assert_invalid_callback(&error, "ReduceLROnPlateau", &format!("min_lr = {min_lr}"));
    }
}

#[test]
fn plateau_min_delta() {
    let mut plateau = ReduceLROnPlateau::new("loss").min_delta(f64::NAN);
    let error = no_panic(|| error_of(fit_with(&mut [&mut plateau])));
    assert_invalid_callback(&error, "ReduceLROnPlateau", "min_delta = NaN");
}

#[test]
fn plateau_monitor_without_validation() {
    let mut plateau = ReduceLROnPlateau::new("val_loss");
    let error = no_panic(|| error_of(fit_with(&mut [&mut plateau])));
    assert!(
        matches!(&error, TrainError::UnknownMonitor { key, .. } if key == "val_loss"),
        "{error:?}"
    );
}

// ---- callbacks: ModelCheckpoint ----

#[test]
fn model_checkpoint_empty_path() {
    let mut checkpoint = ModelCheckpoint::new("");
    let error = no_panic(|| error_of(fit_with(&mut [&mut checkpoint])));
    assert_invalid_callback(&error, "ModelCheckpoint", "must end in `.safetensors`");
}

#[test]
fn model_checkpoint_threshold_infinite() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoint = ModelCheckpoint::new(path_text(dir.path(), "best.safetensors"))
        .monitor("loss")
        .save_best_only(true)
        .initial_value_threshold(f64::INFINITY);
    let error = no_panic(|| error_of(fit_with(&mut [&mut checkpoint])));
    assert_invalid_callback(&error, "ModelCheckpoint", "initial_value_threshold is inf");
}

#[test]
fn model_checkpoint_monitor_without_validation() {
    let mut checkpoint = ModelCheckpoint::new("best.safetensors")
        .monitor("val_accuracy")
        .save_best_only(true);
    let error = no_panic(|| error_of(fit_with(&mut [&mut checkpoint])));
    assert!(
        matches!(&error, TrainError::UnknownMonitor { key, .. } if key == "val_accuracy"),
        "{error:?}"
    );
}

#[test]
fn model_checkpoint_path_is_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("best.safetensors");
    std::fs::create_dir(&folder).unwrap();
    let mut checkpoint = ModelCheckpoint::new(folder.to_string_lossy());
    let error = no_panic(|| error_of(fit_with(&mut [&mut checkpoint])));
    assert_checkpoint(&error, &folder, "is a folder");
}

#[test]
fn model_checkpoint_read_only_folder() {
    let folder = ReadOnlyFolder::new();
    let path = folder.path().join("epoch-1.safetensors");
    let mut checkpoint =
        ModelCheckpoint::new(path_text(folder.path(), "epoch-{epoch}.safetensors"));
    let error = no_panic(|| error_of(fit_with(&mut [&mut checkpoint])));
    assert_io(&error, &path, "failed to create a temporary file");
}

#[test]
fn model_checkpoint_overwrites_foreign_file() {
    // As in Keras, the checkpoint path is the user's choice and an existing file there is
    // replaced, atomically, by the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, "someone else's data").unwrap();
    let mut checkpoint = ModelCheckpoint::new(path.to_string_lossy());
    no_panic(|| fit_with(&mut [&mut checkpoint])).expect("the file is replaced");
    Sequential::load(&path).expect("the file is now a checkpoint");
}

// ---- callbacks: CsvLogger ----

#[test]
fn csv_logger_separator() {
    for separator in ['"', '\n'] {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(dir.path().join("log.csv")).separator(separator);
        let error = no_panic(|| error_of(fit_with(&mut [&mut logger])));
        assert_invalid_callback(&error, "CSVLogger", &format!("{separator:?}"));
    }
}

#[test]
fn csv_logger_path_is_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = CsvLogger::new(dir.path());
    let error = no_panic(|| error_of(fit_with(&mut [&mut logger])));
    assert_io(&error, dir.path(), "failed to open");
}

#[test]
fn csv_logger_below_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a folder").unwrap();
    let path = file.join("log.csv");
    let mut logger = CsvLogger::new(&path);
    let error = no_panic(|| error_of(fit_with(&mut [&mut logger])));
    assert_io(&error, &path, "failed to create the folder of");
}

#[test]
fn csv_logger_read_only_folder() {
    let folder = ReadOnlyFolder::new();
    let path = folder.path().join("log.csv");
    let mut logger = CsvLogger::new(&path);
    let error = no_panic(|| error_of(fit_with(&mut [&mut logger])));
    assert_io(&error, &path, "failed to open");
}

#[test]
fn csv_logger_missing_folder_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/a/log.csv");
    let mut logger = CsvLogger::new(&path);
    no_panic(|| fit_with(&mut [&mut logger])).expect("missing folders are created");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("epoch,accuracy,loss\n0,"), "{text}");
}

// ---- callbacks: BackupAndRestore ----

#[test]
fn backup_folder_read_only() {
    let folder = ReadOnlyFolder::new();
    let path = folder.path().join(BACKUP_FILE_NAME);
    let mut backup = BackupAndRestore::new(folder.path());
    let error = no_panic(|| error_of(fit_with(&mut [&mut backup])));
    assert_io(&error, &path, "failed to create a temporary file");
}

#[test]
fn backup_file_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(BACKUP_FILE_NAME);
    std::fs::write(&path, b"\x00\x01 not a checkpoint").unwrap();
    let mut backup = BackupAndRestore::new(dir.path());
    let error = no_panic(|| error_of(fit_with(&mut [&mut backup])));
    assert_checkpoint(&error, &path, "not a readable safetensors file");
    assert!(path.exists(), "a foreign file is left in place");
}

#[test]
fn backup_of_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(BACKUP_FILE_NAME);
    let mut other = Sequential::new([4]).add(Dense::new(5));
    other
        .compile(Adam::new(0.01), Loss::MeanSquaredError, [])
        .unwrap();
    other.save(&path).unwrap();
    let mut backup = BackupAndRestore::new(dir.path());
    let error = no_panic(|| error_of(fit_with(&mut [&mut backup])));
    assert!(
        matches!(&error, TrainError::CheckpointMismatch { path: found, .. } if found == &path),
        "{error:?}"
    );
}

// ---- callbacks: TensorBoard ----

#[test]
fn tensorboard_update_freq_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensorboard = TensorBoard::new(dir.path()).update_freq(UpdateFreq::Batches(0));
    let error = no_panic(|| error_of(fit_with(&mut [&mut tensorboard])));
    assert_invalid_callback(&error, "TensorBoard", "Batches(0)");
}

#[test]
fn tensorboard_run_name_escapes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "../outside", "/absolute"] {
        let mut tensorboard = TensorBoard::new(dir.path()).run_name(name);
        let error = no_panic(|| error_of(fit_with(&mut [&mut tensorboard])));
        assert_invalid_callback(&error, "TensorBoard", &format!("{name:?}"));
    }
}

#[test]
fn tensorboard_log_dir_is_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut tensorboard = TensorBoard::new(file.path());
    let error = no_panic(|| error_of(fit_with(&mut [&mut tensorboard])));
    assert_io(
        &error,
        &file.path().join("train"),
        "failed to create TensorBoard log directory",
    );
}

#[test]
fn tensorboard_read_only_folder() {
    let folder = ReadOnlyFolder::new();
    let mut tensorboard = TensorBoard::new(folder.path());
    let error = no_panic(|| error_of(fit_validated(&mut [&mut tensorboard])));
    assert_io(
        &error,
        &folder.path().join("train"),
        "failed to create TensorBoard log directory",
    );
}

// ---- callbacks: LearningRateScheduler ----

#[test]
fn scheduler_infinite_rate() {
    let mut scheduler = LearningRateScheduler::new(|_, _| f32::INFINITY);
    let error = no_panic(|| error_of(fit_with(&mut [&mut scheduler])));
    assert_invalid_callback(&error, "LearningRateScheduler", "returned inf for epoch 0");
}

// ---- models with convolution layers ----

#[test]
fn fit_convnet_with_wrong_image_shape() {
    let mut model = Sequential::new([6, 6, 1])
        .add(Conv2D::new(2, (3, 3)))
        .add(Flatten::new())
        .add(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(Adam::new(0.01), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [])
        .unwrap();
    let x = Array4::<f32>::zeros((4, 6, 1, 6));
    let error = no_panic(|| error_of(model.fit(&x, &labels(4), &quiet(), &mut [])));
    assert!(
        matches!(
            &error,
            TrainError::ShapeMismatch { what: "inputs", actual, expected }
                if actual == &[6, 1, 6] && expected == &[6, 6, 1]
        ),
        "{error:?}"
    );
}
