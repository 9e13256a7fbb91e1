//! ModelCheckpoint through `fit`: which epochs write a file, the file names that templates
//! produce, best-only saving in both modes with NaN values, and the settings rejected before
//! training. Keras's `model_checkpoint_test.py` cases are ported where they apply. Monitored
//! values are set exactly by a `LambdaCallback` placed before the checkpoint, which overwrites
//! `loss` in the epoch logs.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;

use grit::prelude::*;
use grit::train::callbacks::Weights;
use grit::train::checkpoint::{Checkpoint, CheckpointKind};
use ndarray::Array2;

/// 30 samples, as in Keras's tests.
fn data() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((30, 2), |(i, j)| ((i + j) % 7) as f32 / 7.0);
    let y = Array2::from_shape_fn((30, 1), |(i, _)| (i % 5) as f32 / 5.0);
    (x, y)
}

fn model() -> Sequential {
    let mut model = Sequential::new([2]).seed(5).add(Dense::new(1));
    model
        .compile(
            Sgd::new(0.01),
            Loss::MeanSquaredError,
            [Metric::MeanAbsoluteError],
        )
        .unwrap();
    model
}

fn options(epochs: usize, batch_size: usize) -> FitOptions<'static> {
    FitOptions::new()
        .epochs(epochs)
        .batch_size(batch_size)
        .verbose(0)
}

/// Overwrites `loss` in each epoch's logs with `values[epoch]`.
fn feed_loss(values: Vec<f64>) -> LambdaCallback {
    LambdaCallback::new().on_epoch_end(move |epoch, _ctx, logs| {
        logs.insert("loss".to_string(), values[epoch]);
    })
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

/// Runs `fit` with a loss sequence and a best-only checkpoint saving `{epoch:02d}` files, and
/// returns the files written.
fn best_only_files(mode: Mode, losses: Vec<f64>) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let epochs = losses.len();
    let mut feed = feed_loss(losses);
    let mut checkpoint = ModelCheckpoint::new(
        dir.path()
            .join("{epoch:02d}.safetensors")
            .to_string_lossy()
            .into_owned(),
    )
    .monitor("loss")
    .mode(mode)
    .save_best_only(true);
    model()
        .fit(
            &x,
            &y,
            &options(epochs, 5),
            &mut [&mut feed, &mut checkpoint],
        )
        .unwrap();
    file_names(dir.path())
}

#[test]
fn best_only_min_mode() {
    let files = best_only_files(Mode::Min, vec![1.0, 0.8, 0.9, 0.7, 0.7, f64::NAN, 0.5]);
    assert_eq!(
        files,
        names(&[
            "01.safetensors",
            "02.safetensors",
            "04.safetensors",
            "07.safetensors"
        ])
    );
}

#[test]
fn best_only_max_mode() {
    let files = best_only_files(Mode::Max, vec![0.5, 0.6, 0.6, 0.59, f64::NAN, 0.7]);
    assert_eq!(
        files,
        names(&["01.safetensors", "02.safetensors", "06.safetensors"])
    );
}

#[test]
fn nan_first_epoch_is_not_best() {
    let files = best_only_files(Mode::Min, vec![f64::NAN, 1.0, 2.0, f64::INFINITY, 0.5]);
    assert_eq!(files, names(&["02.safetensors", "05.safetensors"]));
}

#[test]
fn every_epoch_without_best_only() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let template = dir
        .path()
        .join("subdir/checkpoint.epoch{epoch:02d}.safetensors");
    let mut checkpoint = ModelCheckpoint::new(template.to_string_lossy());
    model()
        .fit(&x, &y, &options(3, 5), &mut [&mut checkpoint])
        .unwrap();
    assert_eq!(
        file_names(&dir.path().join("subdir")),
        names(&[
            "checkpoint.epoch01.safetensors",
            "checkpoint.epoch02.safetensors",
            "checkpoint.epoch03.safetensors"
        ])
    );
    let saved = Checkpoint::read(dir.path().join("subdir/checkpoint.epoch02.safetensors")).unwrap();
    assert_eq!(saved.kind(), CheckpointKind::Full);
    assert_eq!(saved.epoch(), Some(2));
}

/// Keras's case 8: batch 6 gives 5 batches per epoch, and saving every 15 batches writes
/// files at the ends of epochs 3, 6 and 9 only.
#[test]
fn save_every_fifteen_batches() {
    for weights_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = data();
        let template = dir.path().join("checkpoint.epoch{epoch:02d}.safetensors");
        let mut checkpoint = ModelCheckpoint::new(template.to_string_lossy())
            .save_freq(SaveFrequency::Batches(15))
            .save_weights_only(weights_only);
        model()
            .fit(&x, &y, &options(10, 6), &mut [&mut checkpoint])
            .unwrap();
        assert_eq!(
            file_names(dir.path()),
            names(&[
                "checkpoint.epoch03.safetensors",
                "checkpoint.epoch06.safetensors",
                "checkpoint.epoch09.safetensors"
            ]),
            "weights_only = {weights_only}"
        );
        let saved = Checkpoint::read(dir.path().join("checkpoint.epoch03.safetensors")).unwrap();
        let expected = if weights_only {
            CheckpointKind::Weights
        } else {
            CheckpointKind::Full
        };
        assert_eq!(saved.kind(), expected);
    }
}

/// Keras's case 10: batch 15 gives 2 batches per epoch, and saving every batch writes one file
/// per epoch and batch, both 1-based.
#[test]
fn save_every_batch_names_epoch_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let template = dir
        .path()
        .join("epoch{epoch:02d}batch{batch:02d}.safetensors");
    let mut checkpoint =
        ModelCheckpoint::new(template.to_string_lossy()).save_freq(SaveFrequency::Batches(1));
    model()
        .fit(&x, &y, &options(5, 15), &mut [&mut checkpoint])
        .unwrap();
    let expected: BTreeSet<String> = (1..=5)
        .flat_map(|epoch| {
            (1..=2).map(move |batch| format!("epoch{epoch:02}batch{batch:02}.safetensors"))
        })
        .collect();
    assert_eq!(file_names(dir.path()), expected);
}

#[test]
fn template_file_names_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let template = dir
        .path()
        .join("m-{epoch:03}-{loss:.2f}-{loss:.3e}-{loss:.4}-{epoch}.safetensors");
    let mut feed = feed_loss(vec![0.123456, 12.5, 0.000987654]);
    let mut checkpoint = ModelCheckpoint::new(template.to_string_lossy());
    model()
        .fit(&x, &y, &options(3, 5), &mut [&mut feed, &mut checkpoint])
        .unwrap();
    assert_eq!(
        file_names(dir.path()),
        names(&[
            "m-001-0.12-1.235e-01-0.1235-1.safetensors",
            "m-002-12.50-1.250e+01-12.5000-2.safetensors",
            "m-003-0.00-9.877e-04-0.0010-3.safetensors",
        ])
    );
}

/// A path without placeholders keeps one file, overwritten at each new best, and the
/// file's epoch is the best one.
#[test]
fn fixed_path_keeps_best() {
    for (losses, best_epoch) in [(vec![3.0, 2.0, 1.0], 3), (vec![1.0, 2.0, 3.0], 1)] {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = data();
        let path = dir.path().join("best.safetensors");
        let recorded: Rc<RefCell<Vec<Weights>>> = Rc::default();
        let record = recorded.clone();
        let mut recorder = LambdaCallback::new()
            .on_epoch_end(move |_, ctx, _| record.borrow_mut().push(ctx.weights()));
        let mut feed = feed_loss(losses.clone());
        let mut checkpoint = ModelCheckpoint::new(path.to_string_lossy())
            .monitor("loss")
            .save_best_only(true);
        model()
            .fit(
                &x,
                &y,
                &options(3, 5),
                &mut [&mut feed, &mut checkpoint, &mut recorder],
            )
            .unwrap();
        assert_eq!(
            file_names(dir.path()),
            names(&["best.safetensors"]),
            "{losses:?}"
        );
        assert_eq!(checkpoint.best(), Some(losses[best_epoch - 1]));
        let saved = Checkpoint::read(&path).unwrap();
        assert_eq!(saved.epoch(), Some(best_epoch), "{losses:?}");
        let mut loaded = Sequential::load(&path).unwrap();
        assert_eq!(loaded.get_weights(), recorded.borrow()[best_epoch - 1]);
        assert_eq!(loaded.predict(&x, 10).unwrap().shape(), &[30, 1]);
    }
}

/// Keras's cases 11 to 14: the threshold is the best value to beat.
#[test]
fn initial_value_threshold() {
    let cases = [
        (Mode::Max, -0.01, 0.0, true),
        (Mode::Max, 0.5, 0.4, false),
        (Mode::Min, 0.0, 0.2, false),
        (Mode::Min, 0.3, 0.2, true),
        (Mode::Auto, 0.0, 0.2, false),
    ];
    for (mode, threshold, loss, saved) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = data();
        let mut feed = feed_loss(vec![loss]);
        let mut checkpoint =
            ModelCheckpoint::new(dir.path().join("m.safetensors").to_string_lossy())
                .monitor("loss")
                .mode(mode)
                .initial_value_threshold(threshold)
                .save_best_only(true);
        model()
            .fit(&x, &y, &options(1, 5), &mut [&mut feed, &mut checkpoint])
            .unwrap();
        assert_eq!(
            dir.path().join("m.safetensors").exists(),
            saved,
            "{mode:?}, threshold {threshold}, loss {loss}"
        );
    }
}

/// Returns the error that `fit` gives with `checkpoint`, which must come before any epoch.
fn setup_error(checkpoint: &mut ModelCheckpoint, validation: bool) -> String {
    let (x, y) = data();
    let epochs_run = Rc::new(RefCell::new(0));
    let count = epochs_run.clone();
    let mut counter = LambdaCallback::new().on_epoch_begin(move |_, _, _| *count.borrow_mut() += 1);
    let mut options = options(2, 5);
    if validation {
        options = options.validation_split(0.2);
    }
    let error = model()
        .fit(&x, &y, &options, &mut [&mut counter, checkpoint])
        .unwrap_err()
        .to_string();
    assert_eq!(
        *epochs_run.borrow(),
        0,
        "the error must come before training"
    );
    error
}

#[test]
fn missing_monitor_key_fails_up_front() {
    let mut checkpoint = ModelCheckpoint::new("unused.safetensors")
        .monitor("val_loss")
        .save_best_only(true);
    let message = setup_error(&mut checkpoint, false);
    assert!(message.contains("`val_loss`"), "{message}");
    assert!(message.contains("loss, mean_absolute_error"), "{message}");

    let mut batch_level = ModelCheckpoint::new("unused.safetensors")
        .monitor("val_loss")
        .save_freq(SaveFrequency::Batches(2))
        .save_best_only(true);
    let message = setup_error(&mut batch_level, true);
    assert!(message.contains("batch logs"), "{message}");
}

#[test]
fn unknown_placeholder_fails_up_front() {
    let mut checkpoint = ModelCheckpoint::new("ckpt-{val_acc:.2f}.safetensors");
    let message = setup_error(&mut checkpoint, true);
    assert!(message.contains("`{val_acc}`"), "{message}");
    assert!(
        message.contains("Available: epoch, loss, mean_absolute_error, val_loss"),
        "{message}"
    );

    let mut checkpoint = ModelCheckpoint::new("ckpt-{epoch}-{batch}.safetensors");
    let message = setup_error(&mut checkpoint, false);
    assert!(message.contains("SaveFrequency::Batches"), "{message}");

    let mut checkpoint =
        ModelCheckpoint::new("ckpt-{val_loss}.safetensors").save_freq(SaveFrequency::Batches(3));
    let message = setup_error(&mut checkpoint, true);
    assert!(message.contains("`{val_loss}`"), "{message}");
}

#[test]
fn invalid_settings_fail_up_front() {
    let cases: Vec<(ModelCheckpoint, &str)> = vec![
        (ModelCheckpoint::new("ckpt-{epoch:>3}.safetensors"), "`>3`"),
        (
            ModelCheckpoint::new("ckpt-{loss:02d}.safetensors"),
            "`{loss:02d}`",
        ),
        (
            ModelCheckpoint::new("ckpt-{epoch.safetensors"),
            "without a matching",
        ),
        (
            ModelCheckpoint::new("ckpt.keras"),
            "must end in `.safetensors`",
        ),
        (
            ModelCheckpoint::new("ckpt.safetensors").save_freq(SaveFrequency::Batches(0)),
            "Batches(0)",
        ),
        (
            ModelCheckpoint::new("ckpt.safetensors").initial_value_threshold(f64::NAN),
            "must be finite",
        ),
    ];
    for (mut checkpoint, expected) in cases {
        let message = setup_error(&mut checkpoint, false);
        assert!(
            message.contains(expected),
            "expected {expected:?} in: {message}"
        );
    }
}

/// With validation every second epoch, a best-only checkpoint on `val_loss` skips the epochs
/// without it instead of failing or saving.
#[test]
fn epochs_without_monitored_key_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let mut checkpoint =
        ModelCheckpoint::new(dir.path().join("{epoch}.safetensors").to_string_lossy())
            .monitor("val_loss")
            .save_best_only(true);
    let options = options(4, 5).validation_split(0.2).validation_freq(2);
    model()
        .fit(&x, &y, &options, &mut [&mut checkpoint])
        .unwrap();
    let files = file_names(dir.path());
    assert!(files.contains("2.safetensors"), "{files:?}");
    assert!(!files.contains("1.safetensors"), "{files:?}");
    assert!(!files.contains("3.safetensors"), "{files:?}");
}

/// The template names a `val_*` key that epochs without validation lack: the first such epoch
/// fails with the key and the epoch.
#[test]
fn template_key_missing_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = data();
    let mut checkpoint = ModelCheckpoint::new(
        dir.path()
            .join("{val_loss:.3f}.safetensors")
            .to_string_lossy(),
    );
    let options = options(4, 5).validation_split(0.2).validation_freq(2);
    let message = model()
        .fit(&x, &y, &options, &mut [&mut checkpoint])
        .unwrap_err()
        .to_string();
    assert!(message.contains("epoch 1 have no `val_loss`"), "{message}");
}
