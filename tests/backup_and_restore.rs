//! BackupAndRestore through `fit`. A run that fails part-way and is started again with the
//! same call ends with the same weights, bit for bit, as a run that never failed. Keras's
//! `backup_and_restore_test.py` cases are ported where they apply, and invalid settings are
//! rejected up front. The failure is an error returned by a callback, which leaves `fit` the
//! way a crash would, with no further hook. `tests/resume.rs` kills a real process instead.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use grit::prelude::*;
use grit::train::Context;
use grit::train::callbacks::BACKUP_FILE_NAME;
use grit::train::checkpoint::Checkpoint;
use ndarray::{Array1, Array2};

/// Returns 60 samples in 3 classes. After the validation split, 48 train in 5 batches of 10.
fn data() -> (Array2<f32>, Array1<u8>) {
    let x = Array2::from_shape_fn((60, 4), |(i, j)| ((i * 5 + j * 3) % 11) as f32 / 11.0);
    let y = Array1::from_shape_fn(60, |i| ((i * 5) % 11 % 3) as u8);
    (x, y)
}

/// A model with dropout, so a resumed run must also continue the dropout masks.
fn adam_model() -> Sequential {
    let mut model = Sequential::new([4])
        .seed(21)
        .add(Dense::new(6).activation(Activation::Relu))
        .add(Dropout::new(0.25))
        .add(Dense::new(3).activation(Activation::Softmax));
    let schedule = ExponentialDecay::new(0.02, 4, 0.9).unwrap();
    model
        .compile(
            Adam::new(schedule),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn sgd_model() -> Sequential {
    let mut model = Sequential::new([4])
        .seed(22)
        .add(Dense::new(5).activation(Activation::Tanh))
        .add(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(
            Sgd::new(0.1).momentum(0.9),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn options(epochs: usize) -> FitOptions<'static> {
    FitOptions::new()
        .epochs(epochs)
        .batch_size(10)
        .validation_split(0.2)
        .verbose(0)
}

fn bits(model: &Sequential) -> Vec<(String, Vec<u32>)> {
    model
        .get_weights()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// Fails `fit` after training batch `batch` of epoch `epoch`, or at the end of `epoch` when
/// `batch` is `None`, and counts the training batches it saw.
struct Failure {
    epoch: usize,
    batch: Option<usize>,
    current_epoch: usize,
    batches_seen: Rc<RefCell<usize>>,
}

impl Failure {
    fn new(epoch: usize, batch: Option<usize>) -> Self {
        Failure {
            epoch,
            batch,
            current_epoch: 0,
            batches_seen: Rc::default(),
        }
    }

    fn never() -> Self {
        Failure::new(usize::MAX, None)
    }

    fn error(&self) -> TrainError {
        TrainError::Callback {
            callback: "Failure".into(),
            message: format!("simulated crash in epoch {}", self.epoch),
        }
    }
}

impl Callback for Failure {
    fn name(&self) -> &str {
        "Failure"
    }

    fn on_epoch_begin(
        &mut self,
        epoch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        self.current_epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        *self.batches_seen.borrow_mut() += 1;
        if self.current_epoch == self.epoch && self.batch == Some(batch) {
            return Err(self.error());
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        if epoch == self.epoch && self.batch.is_none() {
            return Err(self.error());
        }
        Ok(())
    }
}

/// Overwrites `loss` in each epoch's logs with `values[epoch]`.
fn feed_loss(values: &[f64]) -> LambdaCallback {
    let values = values.to_vec();
    LambdaCallback::new().on_epoch_end(move |epoch, _ctx, logs| {
        logs.insert("loss".to_string(), values[epoch]);
    })
}

const LOSSES: [f64; 8] = [1.0, 0.9, 0.95, 0.85, 0.86, 0.87, 0.5, 0.4];

/// Runs the Adam model with EarlyStopping (patience 2 on the fed losses, so it stops after
/// epoch 5) and a best-only ModelCheckpoint, failing where `failure` is set to fail.
fn run_with_early_stopping(
    dir: &Path,
    backup: &mut BackupAndRestore,
    failure: &mut Failure,
) -> (Sequential, grit::train::Result<History>) {
    let (x, y) = data();
    let mut model = adam_model();
    let mut feed = feed_loss(&LOSSES);
    let mut early_stopping = EarlyStopping::new("loss").patience(2);
    let template = dir.join("best/{epoch:02d}.safetensors");
    let mut checkpoint = ModelCheckpoint::new(template.to_string_lossy())
        .monitor("loss")
        .save_best_only(true);
    let result = model.fit(
        &x,
        &y,
        &options(8),
        &mut [
            &mut feed,
            &mut early_stopping,
            &mut checkpoint,
            backup,
            failure,
        ],
    );
    (model, result)
}

#[test]
fn resume_after_mid_epoch_failure_is_bit_identical() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (uninterrupted, history) = run_with_early_stopping(
        reference_dir.path(),
        &mut BackupAndRestore::new(reference_dir.path().join("backup")),
        &mut Failure::never(),
    );
    assert_eq!(history.unwrap().epochs(), [0, 1, 2, 3, 4, 5]);

    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backup");
    let (_, result) = run_with_early_stopping(
        dir.path(),
        &mut BackupAndRestore::new(&backup_dir),
        &mut Failure::new(5, Some(2)),
    );
    let message = result.unwrap_err().to_string();
    assert!(message.contains("simulated crash"), "{message}");
    let backup = Checkpoint::read(backup_dir.join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(backup.epoch(), Some(5), "epochs 0 to 4 were complete");
    assert_eq!(backup.global_step(), Some(5 * 5));
    let callbacks = &backup.metadata()["callbacks"];
    assert!(
        callbacks.contains(r#""name":"EarlyStopping""#),
        "{callbacks}"
    );
    assert!(callbacks.contains(r#""wait":1"#), "{callbacks}");

    let (resumed, history) = run_with_early_stopping(
        dir.path(),
        &mut BackupAndRestore::new(&backup_dir),
        &mut Failure::never(),
    );
    assert_eq!(
        history.unwrap().epochs(),
        [5],
        "EarlyStopping kept its wait count"
    );
    assert_eq!(bits(&resumed), bits(&uninterrupted));
    assert_eq!(
        resumed.optimizer().unwrap().state(),
        uninterrupted.optimizer().unwrap().state()
    );
    assert!(
        !backup_dir.exists(),
        "the backup is deleted after a normal end"
    );
    let best: Vec<String> = std::fs::read_dir(dir.path().join("best"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut best = best;
    best.sort();
    assert_eq!(
        best,
        ["01.safetensors", "02.safetensors", "04.safetensors"],
        "ModelCheckpoint kept its best value"
    );
}

/// ReduceLROnPlateau lowers a fixed learning rate; the rate, the plateau counters and the
/// momentum all come back from the backup.
#[test]
fn resume_restores_reduced_learning_rate() {
    let run = |backup_dir: &Path, failure: &mut Failure| {
        let (x, y) = data();
        let mut model = sgd_model();
        let mut feed = feed_loss(&[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]);
        let mut plateau = ReduceLROnPlateau::new("loss").patience(1).factor(0.5);
        let mut backup = BackupAndRestore::new(backup_dir);
        let result = model.fit(
            &x,
            &y,
            &options(7),
            &mut [&mut feed, &mut plateau, &mut backup, failure],
        );
        (model, result)
    };
    let reference_dir = tempfile::tempdir().unwrap();
    let (uninterrupted, result) = run(reference_dir.path(), &mut Failure::never());
    result.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (failed, result) = run(dir.path(), &mut Failure::new(3, Some(0)));
    assert!(result.is_err());
    let reduced = failed.optimizer().unwrap().learning_rate();
    assert!(
        (reduced - 0.025).abs() < 1e-9,
        "two reductions from 0.1: {reduced}"
    );
    let (resumed, result) = run(dir.path(), &mut Failure::never());
    assert_eq!(result.unwrap().epochs(), [3, 4, 5, 6]);
    assert_eq!(
        resumed.optimizer().unwrap().learning_rate(),
        uninterrupted.optimizer().unwrap().learning_rate()
    );
    assert_eq!(bits(&resumed), bits(&uninterrupted));
}

/// With backups every 3 batches (5 per epoch), the failure in epoch 2 finds a backup from
/// that epoch, which contains the state at the epoch's start, so epoch 2 runs again in full.
#[test]
fn batch_level_backup_replays_the_epoch() {
    let run = |backup_dir: &Path, failure: &mut Failure| {
        let (x, y) = data();
        let mut model = adam_model();
        let mut backup = BackupAndRestore::new(backup_dir).save_freq(SaveFrequency::Batches(3));
        let result = model.fit(&x, &y, &options(5), &mut [&mut backup, failure]);
        (model, result)
    };
    let reference_dir = tempfile::tempdir().unwrap();
    let (uninterrupted, result) = run(reference_dir.path(), &mut Failure::never());
    result.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (_, result) = run(dir.path(), &mut Failure::new(2, Some(3)));
    assert!(result.is_err());
    let backup = Checkpoint::read(dir.path().join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(backup.epoch(), Some(2));
    assert_eq!(
        backup.global_step(),
        Some(2 * 5),
        "the state at the start of epoch 2"
    );

    let mut failure = Failure::never();
    let batches = failure.batches_seen.clone();
    let (resumed, result) = run(dir.path(), &mut failure);
    assert_eq!(result.unwrap().epochs(), [2, 3, 4]);
    assert_eq!(*batches.borrow(), 3 * 5);
    assert_eq!(bits(&resumed), bits(&uninterrupted));
}

/// Keras's `test_best_case_step`: 3 batches per epoch, a backup after every batch, a failure
/// at the second batch of epoch 0; the resumed `fit(epochs = 5)` runs all 5 epochs.
#[test]
fn failure_in_first_epoch_restarts_it() {
    let x = Array2::from_shape_fn((10, 4), |(i, j)| (i + j) as f32 / 14.0);
    let y = Array1::from_shape_fn(10, |i| (i % 3) as u8);
    let dir = tempfile::tempdir().unwrap();
    let run = |failure: &mut Failure| {
        let mut model = adam_model();
        let mut backup = BackupAndRestore::new(dir.path()).save_freq(SaveFrequency::Batches(1));
        let options = FitOptions::new().epochs(5).batch_size(4).verbose(0);
        model.fit(&x, &y, &options, &mut [&mut backup, failure])
    };
    assert!(run(&mut Failure::new(0, Some(1))).is_err());
    let backup = Checkpoint::read(dir.path().join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(backup.epoch(), Some(0));
    let mut failure = Failure::never();
    let batches = failure.batches_seen.clone();
    let history = run(&mut failure).unwrap();
    assert_eq!(history.epochs(), [0, 1, 2, 3, 4]);
    assert_eq!(*batches.borrow(), 5 * 3);
}

/// A run that starts at `initial_epoch` 2 and fails in that epoch resumes at epoch 2, not 0.
#[test]
fn batch_level_backup_honours_initial_epoch() {
    let (x, y) = data();
    let dir = tempfile::tempdir().unwrap();
    let run = |failure: &mut Failure| {
        let mut model = adam_model();
        let mut backup = BackupAndRestore::new(dir.path()).save_freq(SaveFrequency::Batches(1));
        model.fit(
            &x,
            &y,
            &options(4).initial_epoch(2),
            &mut [&mut backup, failure],
        )
    };
    assert!(run(&mut Failure::new(2, Some(1))).is_err());
    let backup = Checkpoint::read(dir.path().join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(backup.epoch(), Some(2));
    assert_eq!(backup.global_step(), Some(0));
    let history = run(&mut Failure::never()).unwrap();
    assert_eq!(history.epochs(), [2, 3]);
}

/// Keras's `test_best_case_epoch` fails in a later callback's `on_epoch_end` of the second
/// epoch and resumes at epoch 2. Here the backup is written only after every callback's
/// `on_epoch_end` has run, so that epoch's backup is not written and epoch 1 runs again.
#[test]
fn failure_at_epoch_end_reruns_that_epoch() {
    let (x, y) = data();
    let dir = tempfile::tempdir().unwrap();
    let run = |failure: &mut Failure| {
        let mut model = adam_model();
        let mut backup = BackupAndRestore::new(dir.path());
        model.fit(&x, &y, &options(5), &mut [&mut backup, failure])
    };
    assert!(run(&mut Failure::new(1, None)).is_err());
    let backup = Checkpoint::read(dir.path().join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(backup.epoch(), Some(1));
    let history = run(&mut Failure::never()).unwrap();
    assert_eq!(history.epochs(), [1, 2, 3, 4]);
}

#[test]
fn backup_kept_when_asked_and_folder_cleaned_otherwise() {
    let (x, y) = data();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let mut backup = BackupAndRestore::new(&kept).delete_checkpoint(false);
    adam_model()
        .fit(&x, &y, &options(2), &mut [&mut backup])
        .unwrap();
    let checkpoint = Checkpoint::read(kept.join(BACKUP_FILE_NAME)).unwrap();
    assert_eq!(checkpoint.epoch(), Some(2));

    let cleaned = dir.path().join("cleaned");
    std::fs::create_dir_all(&cleaned).unwrap();
    std::fs::write(cleaned.join(".latest.safetensors.AbC123.tmp"), b"partial").unwrap();
    let mut backup = BackupAndRestore::new(&cleaned);
    adam_model()
        .fit(&x, &y, &options(2), &mut [&mut backup])
        .unwrap();
    assert!(!cleaned.exists(), "the backup folder is removed when empty");

    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("notes.txt"), b"the user's file").unwrap();
    let mut backup = BackupAndRestore::new(&shared);
    adam_model()
        .fit(&x, &y, &options(2), &mut [&mut backup])
        .unwrap();
    assert!(shared.join("notes.txt").exists());
    assert!(!shared.join(BACKUP_FILE_NAME).exists());
}

#[test]
fn different_callbacks_cannot_resume() {
    let (x, y) = data();
    let dir = tempfile::tempdir().unwrap();
    let mut backup = BackupAndRestore::new(dir.path());
    let mut early_stopping = EarlyStopping::new("loss").patience(5);
    let result = adam_model().fit(
        &x,
        &y,
        &options(3),
        &mut [
            &mut early_stopping,
            &mut backup,
            &mut Failure::new(1, Some(0)),
        ],
    );
    assert!(result.is_err());

    let mut backup = BackupAndRestore::new(dir.path());
    let mut plateau = ReduceLROnPlateau::new("loss");
    let mut model = sgd_model();
    let error = model
        .fit(&x, &y, &options(3), &mut [&mut plateau, &mut backup])
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`dense/kernel` has shape [4, 6] in the file"),
        "{message}"
    );

    let mut backup = BackupAndRestore::new(dir.path());
    let message = adam_model()
        .fit(&x, &y, &options(3), &mut [&mut plateau, &mut backup])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("position 0 held EarlyStopping then and holds ReduceLROnPlateau now"),
        "{message}"
    );
    assert!(
        dir.path().join(BACKUP_FILE_NAME).exists(),
        "a refused backup stays"
    );
}

#[test]
fn invalid_settings_fail_up_front() {
    let (x, y) = data();
    let file = tempfile::NamedTempFile::new().unwrap();
    let cases = [
        (BackupAndRestore::new(""), "backup folder path is empty"),
        (
            BackupAndRestore::new("unused").save_freq(SaveFrequency::Batches(0)),
            "Batches(0)",
        ),
        (BackupAndRestore::new(file.path()), "is a file"),
    ];
    for (mut backup, expected) in cases {
        let message = adam_model()
            .fit(&x, &y, &options(1), &mut [&mut backup])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(expected),
            "expected {expected:?} in: {message}"
        );
    }
}
