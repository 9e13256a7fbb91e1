//! Kill and resume: training with BackupAndRestore runs in a child process (this test binary,
//! started again on one ignored test), which is killed with SIGKILL in the middle of an epoch
//! after a backup exists. The same `fit` call in this process then resumes from the backup and
//! must end with the weights of an uninterrupted run, bit for bit, and with the same best-model
//! files from ModelCheckpoint.
#![cfg(unix)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use grit::prelude::*;
use grit::train::Context;
use grit::train::callbacks::BACKUP_FILE_NAME;
use grit::train::checkpoint::Checkpoint;
use ndarray::{Array1, s};

/// The environment variable that makes `child_training_run` train, in this folder.
const CHILD_DIR: &str = "GRIT_RESUME_CHILD_DIR";
/// The environment variable that makes the child pause at a batch (`epoch,batch`, 0-based).
const CHILD_PAUSE: &str = "GRIT_RESUME_CHILD_PAUSE";
/// What the child prints once paused.
const PAUSED: &str = "child paused in the middle of an epoch";
/// SIGKILL's number on Linux and macOS.
const SIGKILL: i32 = 9;

const EPOCHS: usize = 7;

fn mnist_dir() -> PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

/// Stops the child at one batch: prints [`PAUSED`] and sleeps until killed.
struct PauseAt {
    epoch: usize,
    batch: usize,
    current_epoch: usize,
}

impl Callback for PauseAt {
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
        if (self.current_epoch, batch) == (self.epoch, self.batch) {
            println!("{PAUSED}");
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Ok(())
    }
}

/// Slows the child down so that a kill at an arbitrary moment lands inside an epoch.
struct Throttle;

impl Callback for Throttle {
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        std::thread::sleep(Duration::from_millis(4));
        Ok(())
    }
}

/// Trains a 784-32-10 MLP on 1200 MNIST images (15 batches per epoch after the split) with
/// Adam on an exponential decay, EarlyStopping, a best-only ModelCheckpoint in
/// `<dir>/best` and a BackupAndRestore in `<dir>/backup`. `extra` comes last in the list.
fn train(dir: &Path, extra: Option<&mut dyn Callback>) -> Sequential {
    let data = Mnist::load(mnist_dir())
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
    let x = data.train_images.take(1200);
    let y: Array1<u8> = data.train_labels.slice(s![..1200]).to_owned();

    let mut model = Sequential::new([28, 28])
        .seed(7)
        .add(Flatten::new())
        .add(Dense::new(32).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    let schedule = ExponentialDecay::new(3e-3, 10, 0.9).unwrap();
    model
        .compile(
            Adam::new(schedule),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();

    let mut early_stopping = EarlyStopping::new("val_loss").patience(2).min_delta(0.01);
    let template = dir.join("best/{epoch:02d}-{val_loss:.4f}.safetensors");
    let mut checkpoint = ModelCheckpoint::new(template.to_string_lossy())
        .monitor("val_accuracy")
        .save_best_only(true);
    let mut backup = BackupAndRestore::new(dir.join("backup"));

    let options = FitOptions::new()
        .epochs(EPOCHS)
        .batch_size(64)
        .validation_split(0.2)
        .verbose(0);
    let mut callbacks: Vec<&mut dyn Callback> =
        vec![&mut early_stopping, &mut checkpoint, &mut backup];
    if let Some(extra) = extra {
        callbacks.push(extra);
    }
    model.fit(&x, &y, &options, &mut callbacks).unwrap();
    model
}

fn bits(model: &Sequential) -> Vec<(String, Vec<u32>)> {
    model
        .get_weights()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs as the child process: trains in `$GRIT_RESUME_CHILD_DIR`, pausing where
/// `$GRIT_RESUME_CHILD_PAUSE` names, or else slowed down, until the parent kills it.
#[test]
#[ignore = "runs only as the child process of the kill-and-resume tests"]
fn child_training_run() {
    let dir = std::env::var_os(CHILD_DIR)
        .map(PathBuf::from)
        .expect("started by the kill-and-resume tests, which set GRIT_RESUME_CHILD_DIR");
    match std::env::var(CHILD_PAUSE) {
        Ok(pause) => {
            let (epoch, batch) = pause.split_once(',').expect("`epoch,batch`");
            let mut pause = PauseAt {
                epoch: epoch.parse().unwrap(),
                batch: batch.parse().unwrap(),
                current_epoch: 0,
            };
            train(&dir, Some(&mut pause));
        }
        Err(_) => {
            train(&dir, Some(&mut Throttle));
        }
    }
}

/// Starts this test binary on `child_training_run` in `dir`.
fn spawn_child(dir: &Path, pause: Option<(usize, usize)>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_training_run", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env_remove(CHILD_PAUSE)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some((epoch, batch)) = pause {
        command.env(CHILD_PAUSE, format!("{epoch},{batch}"));
    }
    command.spawn().expect("failed to start the child process")
}

/// Kills the child with SIGKILL and checks that the signal ended it.
fn kill(mut child: Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the child must die by SIGKILL, not end on its own: {status}"
    );
}

/// Returns the backup's epoch, when a backup exists.
fn backup_epoch(dir: &Path) -> Option<usize> {
    let path = dir.join("backup").join(BACKUP_FILE_NAME);
    if !path.exists() {
        return None;
    }
    Some(Checkpoint::read(&path).unwrap().epoch().unwrap())
}

/// Checks that resuming in `dir` matches the uninterrupted run in `reference`.
fn assert_resume_matches(dir: &Path, reference: &Path, uninterrupted: &Sequential) {
    let resumed = train(dir, None);
    assert_eq!(bits(&resumed), bits(uninterrupted));
    assert_eq!(
        resumed.optimizer().unwrap().state(),
        uninterrupted.optimizer().unwrap().state()
    );
    assert_eq!(resumed.completed_epochs(), uninterrupted.completed_epochs());
    assert!(
        !dir.join("backup").exists(),
        "the backup is deleted at the end"
    );
    assert_eq!(
        file_names(&dir.join("best")),
        file_names(&reference.join("best")),
        "ModelCheckpoint saved the same best epochs"
    );
}

#[test]
fn kill_mid_epoch_and_resume() {
    let reference = tempfile::tempdir().unwrap();
    let uninterrupted = train(reference.path(), None);
    assert!(
        uninterrupted.completed_epochs() >= 4,
        "the run should pass the pause point"
    );

    // Paused at batch 8 of 15 in epoch 3: the backup from the end of epoch 2 exists.
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), Some((3, 8)));
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if line.contains(PAUSED) {
                let _ = sender.send(());
            }
        }
    });
    if receiver.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        panic!(
            "the child did not reach the pause point: {:?}",
            child.wait()
        );
    }
    assert_eq!(
        backup_epoch(dir.path()),
        Some(3),
        "backups of epochs 0 to 2"
    );
    kill(child);
    assert_resume_matches(dir.path(), reference.path(), &uninterrupted);
}

/// The child runs freely (slowed to about 60 ms per epoch) and dies at whatever it is doing
/// once the backup of epoch 2 exists, possibly while writing the next backup.
#[test]
fn kill_at_arbitrary_moment_and_resume() {
    let reference = tempfile::tempdir().unwrap();
    let uninterrupted = train(reference.path(), None);

    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), None);
    let started = Instant::now();
    while backup_epoch(dir.path()).is_none_or(|epoch| epoch < 2) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before it was killed: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no backup of epoch 2 after 300 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(child);
    let epoch = backup_epoch(dir.path()).unwrap();
    assert!(epoch >= 2, "backup of epoch {epoch}");
    assert_resume_matches(dir.path(), reference.path(), &uninterrupted);
}
