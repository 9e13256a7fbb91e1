//! Faults during I/O: a disk that fills up while a checkpoint, a backup, a CSV log or a
//! TensorBoard event file is written, and a file system that turns read-only during training.
//!
//! Each test mounts its own small tmpfs (Linux, root or CAP_SYS_ADMIN), so the writes fail
//! with the operating system's real ENOSPC or EROFS. A test that cannot mount fails with a
//! message that names the missing permission instead of being skipped. Each case checks that the previous good
//! file survives, that the error reaches the caller with the path, and that the model's
//! training state is the one an undisturbed run has at the same point.

#![cfg(target_os = "linux")]

use std::cell::RefCell;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use grit::prelude::*;
use grit::train::callbacks::{BACKUP_FILE_NAME, Weights};
use grit::train::checkpoint::Checkpoint;
use ndarray::{Array1, Array2};

/// `ENOSPC` on Linux.
const NO_SPACE: i32 = 28;

/// A tmpfs mounted on a new temporary folder for one test and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_kib: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        run_mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k"),
                "grit-small-disk",
            ],
            dir.path(),
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn run_mount(arguments: &[&str], target: &Path) {
    let output = Command::new("mount")
        .args(arguments)
        .arg(target)
        .output()
        .expect("failed to run `mount`");
    assert!(
        output.status.success(),
        "`mount {} {}` failed: {}. These tests mount a small tmpfs to fill up and need root \
         or CAP_SYS_ADMIN on Linux",
        arguments.join(" "),
        target.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// 64 samples of 32 features in 4 classes.
fn data() -> (Array2<f32>, Array1<f32>) {
    let x = Array2::from_shape_fn((64, 32), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
    let y = Array1::from_shape_fn(64, |i| (i % 4) as f32);
    (x, y)
}

/// Returns a 32 → 128 → 4 classifier, whose full checkpoint with Adam's moments is about
/// 60 KB.
fn model() -> Sequential {
    let mut model = Sequential::new([32])
        .seed(21)
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dropout::new(0.2))
        .add(Dense::new(4).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn options(epochs: usize) -> FitOptions<'static> {
    FitOptions::new().epochs(epochs).batch_size(16).verbose(0)
}

/// Returns the weights of an undisturbed run of `epochs` epochs.
fn reference_weights(epochs: usize) -> Weights {
    let (x, y) = data();
    let mut model = model();
    model.fit(&x, &y, &options(epochs), &mut []).unwrap();
    model.get_weights()
}

/// Records the weights at the end of each epoch.
fn weight_recorder(record: Rc<RefCell<Vec<Weights>>>) -> LambdaCallback {
    LambdaCallback::new().on_epoch_end(move |_, ctx, _| record.borrow_mut().push(ctx.weights()))
}

/// Fills the file system of `dir` with a file of zeros, then frees `free_bytes` of it
/// (rounded up to whole pages by tmpfs), and returns the file's path.
fn fill_disk(dir: &Path, free_bytes: u64) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(NO_SPACE) => break,
            Err(error) => panic!("filling {} failed: {error}", filler.display()),
        }
    }
    let length = file.metadata().unwrap().len();
    file.set_len(length.saturating_sub(free_bytes)).unwrap();
    filler
}

/// Fills the disk at `dir` when epoch `epoch` (0-based) begins, leaving `free_bytes`. The
/// files of the epoch before, backups included, are written by then.
fn fill_before_epoch(dir: &Path, epoch: usize, free_bytes: u64) -> LambdaCallback {
    let dir = dir.to_path_buf();
    LambdaCallback::new().on_epoch_begin(move |current, _, _| {
        if current == epoch {
            fill_disk(&dir, free_bytes);
        }
    })
}

fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

fn assert_io_error(error: &TrainError, path: &Path, kind: ErrorKind) {
    match error {
        TrainError::Io {
            path: found,
            source,
            ..
        } => {
            assert_eq!(found, path, "{error}");
            assert_eq!(source.kind(), kind, "{error}");
        }
        other => panic!(
            "expected an I/O error for {}, got {other:?}",
            path.display()
        ),
    }
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

// ---- checkpoints ----

/// ModelCheckpoint saves to one path every epoch. The disk fills when epoch 1 begins, so the
/// save of epoch 1 fails part way through its temporary file.
#[test]
fn checkpoint_on_full_disk_keeps_previous_file() {
    let disk = SmallDisk::mount(512);
    let (x, y) = data();
    let path = disk.path().join("model.safetensors");
    let mut checkpoint = ModelCheckpoint::new(path.to_string_lossy());
    let mut filler = fill_before_epoch(disk.path(), 1, 16 * 1024);
    let recorded = Rc::new(RefCell::new(Vec::new()));
    let mut recorder = weight_recorder(Rc::clone(&recorded));
    let mut model = model();
    let error = model
        .fit(
            &x,
            &y,
            &options(4),
            &mut [&mut recorder, &mut checkpoint, &mut filler],
        )
        .unwrap_err();

    assert_io_error(&error, &path, ErrorKind::StorageFull);
    let saved = Sequential::load(&path).expect("the checkpoint of epoch 0 still loads");
    assert_eq!(saved.get_weights(), recorded.borrow()[0]);
    assert_eq!(saved.completed_epochs(), 1);
    assert!(temporary_files(disk.path()).is_empty());

    // The failed save changed nothing: the model is where an undisturbed run is after two
    // epochs, and continuing it gives the undisturbed run's weights bit for bit.
    assert_eq!(model.completed_epochs(), 2);
    assert_eq!(model.get_weights(), reference_weights(2));
    let options = options(4).initial_epoch(model.completed_epochs());
    model.fit(&x, &y, &options, &mut []).unwrap();
    assert_eq!(model.get_weights(), reference_weights(4));
}

#[test]
fn save_on_full_disk_reports_path() {
    let disk = SmallDisk::mount(256);
    let path = disk.path().join("weights.safetensors");
    let mut model = model();
    model.save_weights(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    fill_disk(disk.path(), 0);
    let (x, y) = data();
    model.fit(&x, &y, &options(1), &mut []).unwrap();

    let error = model.save_weights(&path).unwrap_err();
    assert_io_error(&error, &path, ErrorKind::StorageFull);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(temporary_files(disk.path()).is_empty());
    let error = model.save(disk.path().join("new.safetensors")).unwrap_err();
    assert_io_error(
        &error,
        &disk.path().join("new.safetensors"),
        ErrorKind::StorageFull,
    );
    assert!(!disk.path().join("new.safetensors").exists());
}

/// BackupAndRestore's backup of epoch 1 fails on the full disk. The backup of epoch 0
/// survives, and once space is free again the same `fit` call resumes from it and ends with
/// an undisturbed run's weights.
#[test]
fn backup_on_full_disk_resumes_from_previous() {
    let disk = SmallDisk::mount(512);
    let (x, y) = data();
    let backup_dir = disk.path().join("backup");
    let backup_path = backup_dir.join(BACKUP_FILE_NAME);
    let mut backup = BackupAndRestore::new(&backup_dir);
    let mut filler = fill_before_epoch(disk.path(), 1, 16 * 1024);
    let error = model()
        .fit(&x, &y, &options(4), &mut [&mut filler, &mut backup])
        .unwrap_err();

    assert_io_error(&error, &backup_path, ErrorKind::StorageFull);
    let checkpoint = Checkpoint::read(&backup_path).expect("the backup of epoch 0 survives");
    assert_eq!(checkpoint.epoch(), Some(1));
    assert!(temporary_files(&backup_dir).is_empty());

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let mut backup = BackupAndRestore::new(&backup_dir);
    let mut no_filler = LambdaCallback::new();
    let mut resumed = model();
    resumed
        .fit(&x, &y, &options(4), &mut [&mut no_filler, &mut backup])
        .unwrap();
    assert_eq!(resumed.get_weights(), reference_weights(4));
    assert!(!backup_path.exists(), "a finished run deletes its backup");
}

/// The file system turns read-only after epoch 1: the next save fails with EROFS and the
/// path, and the checkpoint of epoch 1 stays readable.
#[test]
fn checkpoint_on_read_only_remount() {
    let disk = SmallDisk::mount(512);
    let (x, y) = data();
    let path = disk.path().join("model.safetensors");
    let mut checkpoint = ModelCheckpoint::new(path.to_string_lossy());
    let root = disk.path().to_path_buf();
    let mut freeze = LambdaCallback::new().on_epoch_end(move |epoch, _, _| {
        if epoch == 1 {
            run_mount(&["-o", "remount,ro"], &root);
        }
    });
    let error = model()
        .fit(&x, &y, &options(4), &mut [&mut checkpoint, &mut freeze])
        .unwrap_err();

    assert_io_error(&error, &path, ErrorKind::ReadOnlyFilesystem);
    let saved = Sequential::load(&path).unwrap();
    assert_eq!(saved.completed_epochs(), 2);
}

// ---- CSV logs ----

/// A CSV log whose next row crosses into a page that the full disk cannot give: the error
/// names the log, and the rows written before stay intact, without a partial row.
#[test]
fn csv_log_on_full_disk_keeps_whole_rows() {
    let disk = SmallDisk::mount(256);
    let (x, y) = data();
    let path = disk.path().join("log.csv");
    // An existing log that ends 10 bytes before a page boundary, so the next row fits only
    // in part into the page the file already has.
    let header = "epoch,accuracy,loss\n";
    let mut existing = String::from(header);
    while existing.len() < 4096 - 10 - 20 {
        existing.push_str("0,0.25,1.375\n");
    }
    existing.push_str(&"9".repeat(4096 - 10 - 1 - existing.len()));
    existing.push('\n');
    assert_eq!(existing.len(), 4096 - 10);
    std::fs::write(&path, &existing).unwrap();
    fill_disk(disk.path(), 0);

    let mut logger = CsvLogger::new(&path).append(true);
    let error = model()
        .fit(&x, &y, &options(2), &mut [&mut logger])
        .unwrap_err();

    assert_io_error(&error, &path, ErrorKind::StorageFull);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), existing);
}

/// The disk of a new log fills when epoch 2 begins. Rows still fit into the page the file
/// already has, until one needs a new page: that row fails and is removed again, so the file
/// ends with the last whole row.
#[test]
fn csv_log_rows_before_failure_survive() {
    let disk = SmallDisk::mount(256);
    let (x, y) = data();
    let path = disk.path().join("log.csv");
    let mut logger = CsvLogger::new(&path);
    let mut filler = fill_before_epoch(disk.path(), 2, 0);
    let history_rows = Rc::new(RefCell::new(Vec::new()));
    let rows = Rc::clone(&history_rows);
    let log_path = path.clone();
    let mut reader = LambdaCallback::new().on_epoch_end(move |_, _, _| {
        rows.borrow_mut()
            .push(std::fs::read_to_string(&log_path).unwrap());
    });
    let error = model()
        .fit(
            &x,
            &y,
            &options(200),
            &mut [&mut logger, &mut reader, &mut filler],
        )
        .unwrap_err();

    assert_io_error(&error, &path, ErrorKind::StorageFull);
    let text = std::fs::read_to_string(&path).unwrap();
    let last_good = history_rows.borrow().last().cloned().unwrap();
    assert_eq!(text, last_good, "the file ends with the last whole row");
    assert!(text.ends_with('\n'));
}

// ---- TensorBoard event files ----

/// The disk fills when epoch 1 begins: a write in epoch 1 fails with the event file's
/// path, and every record of epoch 0 stays readable. A record that was cut short may follow
/// them; TensorBoard's reader stops there.
#[test]
fn event_file_on_full_disk_keeps_earlier_records() {
    let disk = SmallDisk::mount(256);
    let (x, y) = data();
    let log_dir = disk.path().join("logs");
    let mut tensorboard = TensorBoard::new(&log_dir).histogram_freq(1);
    let synced_length = Rc::new(RefCell::new(0u64));
    let length = Rc::clone(&synced_length);
    let train_dir = log_dir.join("train");
    let mut measure = LambdaCallback::new().on_epoch_end(move |_, _, _| {
        let file = event_file(&train_dir);
        *length.borrow_mut() = std::fs::metadata(file).unwrap().len();
    });
    let mut filler = fill_before_epoch(disk.path(), 1, 0);
    let error = model()
        .fit(
            &x,
            &y,
            &options(3),
            &mut [&mut tensorboard, &mut measure, &mut filler],
        )
        .unwrap_err();

    let file = event_file(&log_dir.join("train"));
    assert_io_error(&error, &file, ErrorKind::StorageFull);
    let synced = *synced_length.borrow();
    let whole_records = match grit::tensorboard::read_events(&file) {
        Ok(_) => std::fs::metadata(&file).unwrap().len(),
        Err(grit::tensorboard::TensorBoardError::CorruptRecord { offset, .. }) => offset,
        Err(other) => panic!("the event file does not read: {other}"),
    };
    assert!(
        whole_records >= synced,
        "a record of epoch 0 is damaged: records end at {whole_records}, epoch 0 at {synced}"
    );
    // Epoch 0's records read back on their own: the model config and the epoch scalars.
    let bytes = std::fs::read(&file).unwrap();
    let copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(copy.path(), &bytes[..synced as usize]).unwrap();
    let events = grit::tensorboard::read_events(copy.path()).unwrap();
    assert!(events.len() > 3, "{events:?}");
}

fn event_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}
