//! The soak test: one long `fit` with every callback on and a full checkpoint every epoch.
//!
//! It trains for `GRIT_SOAK_MINUTES` minutes (default 30), then checks that
//! - the peak resident memory of the last epoch is within 5% of the second epoch's,
//! - the number of open file descriptors did not grow,
//! - every checkpoint written, one per epoch, loads, and the best-only checkpoint loads,
//! - the CSV log has one row per epoch and BackupAndRestore kept a backup during the run.
//!
//! It is ignored in the normal suite. Run it with
//! `GRIT_SOAK_MINUTES=3 cargo test --release --test soak -- --ignored --nocapture`; the last
//! lines it prints are the numbers that `docs/reliability.md` records. Linux only: it reads
//! the peak memory from `/proc/self/status` and resets it through `/proc/self/clear_refs`.

#![cfg(target_os = "linux")]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use grit::prelude::*;
use grit::tensor::Rng;
use ndarray::{Array1, Array2};

/// Per-epoch measurements.
#[derive(Debug, Clone, Copy, Default)]
struct EpochStats {
    /// Peak resident set size during the epoch, in KiB (`VmHWM` after a reset at its start).
    peak_rss_kib: u64,
    /// Resident set size at the end of the epoch, in KiB.
    rss_kib: u64,
    /// Open file descriptors at the end of the epoch.
    open_files: usize,
    seconds: f64,
}

/// Reads a `kB` field of `/proc/self/status`, such as `VmHWM`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/status has no {field} line"))
}

/// Resets the process's peak resident set size (`VmHWM`) to its current size.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("failed to reset VmHWM");
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// 131072 samples of 128 features; the label is the arg max of a fixed linear map, so the
/// model can learn it.
fn data() -> (Array2<f32>, Array1<f32>) {
    let mut rng = Rng::new(99);
    let x = Array2::from_shape_fn((131072, 128), |_| rng.uniform(-1.0, 1.0));
    let map = Array2::from_shape_fn((128, 10), |_| rng.uniform(-1.0, 1.0));
    let scores = x.dot(&map);
    let y = Array1::from_shape_fn(131072, |i| {
        let row = scores.row(i);
        let mut best = 0;
        for (class, &score) in row.iter().enumerate() {
            if score > row[best] {
                best = class;
            }
        }
        best as f32
    });
    (x, y)
}

fn model() -> Sequential {
    let mut model = Sequential::new([128])
        .seed(5)
        .add(Dense::new(256).activation(Activation::Relu))
        .add(BatchNormalization::new())
        .add(Dropout::new(0.2))
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn soak_duration() -> Duration {
    let minutes: f64 = match std::env::var("GRIT_SOAK_MINUTES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("GRIT_SOAK_MINUTES = {text:?} is not a number")),
        Err(_) => 30.0,
    };
    assert!(
        minutes > 0.0,
        "GRIT_SOAK_MINUTES = {minutes} must be above 0"
    );
    Duration::from_secs_f64(minutes * 60.0)
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
#[ignore = "a long run: GRIT_SOAK_MINUTES=3 cargo test --release --test soak -- --ignored"]
fn soak_every_callback() {
    let duration = soak_duration();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let backup_dir = dir.path().join("backup");
    let csv = dir.path().join("training.csv");
    let (x, y) = data();
    let mut model = model();

    let mut scheduler = LearningRateScheduler::new(|_, rate| rate);
    let mut terminate = TerminateOnNaN::new();
    let mut early_stopping = EarlyStopping::new("val_loss")
        .patience(1_000_000)
        .restore_best_weights(true);
    let mut plateau = ReduceLROnPlateau::new("val_loss").patience(5).min_lr(1e-6);
    let mut every_epoch = ModelCheckpoint::new(
        checkpoints
            .join("epoch-{epoch:05d}-{val_loss:.4f}.safetensors")
            .to_string_lossy(),
    );
    let best = dir.path().join("best.safetensors");
    let mut best_only = ModelCheckpoint::new(best.to_string_lossy())
        .monitor("val_loss")
        .save_best_only(true);
    let mut logger = CsvLogger::new(&csv);
    let mut tensorboard = TensorBoard::new(dir.path().join("logs"))
        .histogram_freq(1)
        .update_freq(UpdateFreq::Batches(50));
    let mut backup = BackupAndRestore::new(&backup_dir);

    let stats = Rc::new(RefCell::new(Vec::<EpochStats>::new()));
    let backups_seen = Rc::new(RefCell::new(0usize));
    let started = Instant::now();
    let epoch_started = Rc::new(RefCell::new(Instant::now()));
    let (begin_clock, end_clock) = (Rc::clone(&epoch_started), Rc::clone(&epoch_started));
    let (recorded, seen) = (Rc::clone(&stats), Rc::clone(&backups_seen));
    let backup_path = backup.backup_path();
    let mut monitor = LambdaCallback::new()
        .on_epoch_begin(move |_, _, _| {
            reset_peak_rss();
            *begin_clock.borrow_mut() = Instant::now();
        })
        .on_epoch_end(move |epoch, ctx, _| {
            // The backup of the previous epoch is on disk while this epoch ends.
            if epoch > 0 && backup_path.is_file() {
                *seen.borrow_mut() += 1;
            }
            recorded.borrow_mut().push(EpochStats {
                peak_rss_kib: status_kib("VmHWM"),
                rss_kib: status_kib("VmRSS"),
                open_files: open_files(),
                seconds: end_clock.borrow().elapsed().as_secs_f64(),
            });
            if started.elapsed() >= duration {
                ctx.stop_training();
            }
        });

    let options = FitOptions::new()
        .epochs(1_000_000)
        .batch_size(128)
        .validation_split(0.1)
        .verbose(0);
    let history = model
        .fit(
            &x,
            &y,
            &options,
            &mut [
                &mut scheduler,
                &mut terminate,
                &mut early_stopping,
                &mut plateau,
                &mut every_epoch,
                &mut best_only,
                &mut logger,
                &mut tensorboard,
                &mut backup,
                &mut monitor,
            ],
        )
        .unwrap();
    let elapsed = started.elapsed();

    let epochs = history.epochs().len();
    let stats = stats.borrow().clone();
    assert!(
        epochs >= 3,
        "the run must last at least 3 epochs to compare memory: it ran {epochs}"
    );
    assert_eq!(stats.len(), epochs);

    let files = checkpoint_files(&checkpoints);
    assert_eq!(files.len(), epochs, "one checkpoint per epoch");
    for file in &files {
        let loaded = Sequential::load(file)
            .unwrap_or_else(|error| panic!("{} does not load: {error}", file.display()));
        assert!(loaded.completed_epochs() >= 1);
    }
    Sequential::load(&best).expect("the best-only checkpoint loads");
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count();
    assert_eq!(rows, epochs + 1, "a header and one row per epoch");
    assert_eq!(
        *backups_seen.borrow(),
        epochs - 1,
        "a backup after every epoch"
    );
    assert!(
        !backup_path_exists(&backup_dir),
        "the finished run deletes its backup"
    );

    let second = stats[1];
    let last = stats[epochs - 1];
    let growth = last.peak_rss_kib as f64 / second.peak_rss_kib as f64 - 1.0;
    let mean_epoch = stats.iter().map(|s| s.seconds).sum::<f64>() / epochs as f64;
    println!(
        "soak: {epochs} epochs in {:.1} min ({mean_epoch:.2} s per epoch), {} checkpoints \
         loaded, final val_loss {:.4}, val_accuracy {:.4}",
        elapsed.as_secs_f64() / 60.0,
        files.len() + 1,
        history.last("val_loss").unwrap(),
        history.last("val_accuracy").unwrap(),
    );
    println!(
        "soak: peak RSS epoch 2 {} KiB, last epoch {} KiB ({:+.2}%), RSS at the end {} KiB, \
         open files {} then {}",
        second.peak_rss_kib,
        last.peak_rss_kib,
        growth * 100.0,
        last.rss_kib,
        second.open_files,
        last.open_files,
    );
    assert!(
        growth.abs() <= 0.05,
        "peak RSS of the last epoch ({} KiB) is not within 5% of the second epoch's ({} KiB)",
        last.peak_rss_kib,
        second.peak_rss_kib
    );
    assert!(
        last.open_files <= second.open_files,
        "open file descriptors grew from {} to {}",
        second.open_files,
        last.open_files
    );
}

fn backup_path_exists(backup_dir: &Path) -> bool {
    backup_dir
        .join(grit::train::callbacks::BACKUP_FILE_NAME)
        .exists()
}
