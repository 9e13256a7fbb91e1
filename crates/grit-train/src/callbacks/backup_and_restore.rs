use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::save_freq::BatchCounter;
use super::{Callback, Context, Logs, RunInfo, SaveFrequency};
use crate::checkpoint::{CallbackState, Checkpoint, TrainingState};
use crate::model::Sequential;
use crate::{Result, TrainError};

const NAME: &str = "BackupAndRestore";

/// The name of the backup file inside the backup folder.
pub const BACKUP_FILE_NAME: &str = "latest.safetensors";

/// Backs up the whole training state so that a killed run, started again with the same
/// `fit` call, continues where it stopped (Keras's `BackupAndRestore`).
///
/// A backup is a full checkpoint, `latest.safetensors` in the backup folder: weights,
/// optimizer state, RNG state, the epoch to resume from and the state of every callback in
/// the list ([`Callback::state`]). At `on_train_begin`, an existing backup restores the
/// model's weights, optimizer and RNG. Each callback's state follows once every callback's
/// `on_train_begin` has run, and training continues at the saved epoch. A resumed run with
/// the same data, callbacks and settings ends with weights bit-identical to a run that was
/// never interrupted, because the data order, dropout masks, optimizer moments, schedule
/// positions and callback states all continue from the backup. This is true only for
/// callbacks whose [`Callback::state`] covers everything they carry between epochs.
///
/// When backups happen:
/// - [`SaveFrequency::Epoch`] (the default): after every epoch, once every callback's
///   `on_epoch_end` has run. A callback that fails during `on_epoch_end` therefore leaves the
///   previous epoch's backup in place, and that epoch runs again on resume.
/// - [`SaveFrequency::Batches`]`(n)`: every `n` training batches, counted across epochs. As
///   in Keras, such a backup resumes at the start of the epoch it was made in. To make the
///   replayed epoch identical, the backup contains the state from the start of that epoch, not
///   the state after batch `n`, so the work of that epoch's finished batches is redone. At
///   most one backup is written per epoch, as later ones would hold the same state.
///
/// With `delete_checkpoint` (the default), the backup file is deleted when training ends
/// normally, and the folder too when nothing else is left in it. After an error the backup
/// stays, ready for the next run.
///
/// ```no_run
/// use grit_train::callbacks::{BackupAndRestore, SaveFrequency};
///
/// let backup = BackupAndRestore::new("runs/mnist/backup").save_freq(SaveFrequency::Epoch);
/// ```
pub struct BackupAndRestore {
    backup_dir: PathBuf,
    save_freq: SaveFrequency,
    delete_checkpoint: bool,
    counter: BatchCounter,
    requested_this_epoch: bool,
}

impl BackupAndRestore {
    /// Backs up to `<backup_dir>/latest.safetensors` after every epoch and deletes the backup
    /// when training ends normally.
    pub fn new(backup_dir: impl Into<PathBuf>) -> Self {
        BackupAndRestore {
            backup_dir: backup_dir.into(),
            save_freq: SaveFrequency::Epoch,
            delete_checkpoint: true,
            counter: BatchCounter::default(),
            requested_this_epoch: false,
        }
    }

    /// Sets how often to back up.
    pub fn save_freq(mut self, save_freq: SaveFrequency) -> Self {
        self.save_freq = save_freq;
        self
    }

    /// Sets whether the backup is deleted when training ends normally.
    pub fn delete_checkpoint(mut self, delete: bool) -> Self {
        self.delete_checkpoint = delete;
        self
    }

    /// Returns the backup file's path.
    pub fn backup_path(&self) -> PathBuf {
        self.backup_dir.join(BACKUP_FILE_NAME)
    }

    /// Deletes the backup file, temporary files that a killed write left, and the folder
    /// when it is then empty.
    fn delete_backup(&self) -> Result<()> {
        let path = self.backup_path();
        if path.exists() {
            fs::remove_file(&path).map_err(|source| TrainError::Io {
                action: "failed to delete the backup",
                path: path.clone(),
                source,
            })?;
        }
        let temporary_prefix = format!(".{BACKUP_FILE_NAME}.");
        if let Ok(entries) = fs::read_dir(&self.backup_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(&temporary_prefix) && name.ends_with(".tmp") {
                    if let Err(error) = fs::remove_file(entry.path()) {
                        log::warn!(
                            "{NAME}: failed to delete {}: {error}",
                            entry.path().display()
                        );
                    }
                }
            }
        }
        // Other files in the folder are the user's, so only an empty folder is removed.
        let _ = fs::remove_dir(&self.backup_dir);
        Ok(())
    }
}

impl Callback for BackupAndRestore {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&mut self, _run: &RunInfo) -> Result<()> {
        if self.backup_dir.as_os_str().is_empty() {
            return Err(TrainError::InvalidCallback {
                callback: NAME,
                message: "the backup folder path is empty. Pass the folder to keep the backup in"
                    .into(),
            });
        }
        if self.backup_dir.is_file() {
            return Err(TrainError::InvalidCallback {
                callback: NAME,
                message: format!(
                    "the backup folder {} is a file. Pass a folder path",
                    self.backup_dir.display()
                ),
            });
        }
        self.save_freq.validate(NAME)
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(json!({ "batches_since_save": self.counter.since_save }))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.counter.since_save = state
            .get("batches_since_save")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TrainError::InvalidCallback {
                callback: NAME,
                message: format!("saved state {state} is not a {NAME} state"),
            })? as usize;
        Ok(())
    }

    fn on_train_begin(&mut self, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        if matches!(self.save_freq, SaveFrequency::Batches(_)) {
            ctx.keep_epoch_start_state();
        }
        let path = self.backup_path();
        if !path.exists() {
            return Ok(());
        }
        let checkpoint = Checkpoint::read(&path)?;
        ctx.model_mut().restore_training_state(&checkpoint)?;
        let epoch = checkpoint
            .epoch()
            .expect("restore_training_state accepts full checkpoints only");
        log::info!(
            "{NAME}: restored {}, resuming at epoch {}",
            path.display(),
            epoch + 1
        );
        ctx.resume_at_epoch(epoch);
        let states = checkpoint.callback_states().unwrap_or_default().to_vec();
        ctx.restore_callback_states(path, states);
        Ok(())
    }

    fn on_epoch_begin(
        &mut self,
        _epoch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> Result<()> {
        self.requested_this_epoch = false;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> Result<()> {
        if let SaveFrequency::Batches(every) = self.save_freq {
            if self.counter.tick(every) && !self.requested_this_epoch {
                ctx.request_backup(self.backup_path());
                self.requested_this_epoch = true;
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        if self.save_freq == SaveFrequency::Epoch {
            ctx.request_backup(self.backup_path());
        }
        Ok(())
    }

    fn on_train_end(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        if self.delete_checkpoint {
            self.delete_backup()?;
        }
        Ok(())
    }
}

/// Backup requests between callbacks and the fit loop, which writes backups when a hook has
/// run on every callback, so that every callback's state in the backup is final.
#[derive(Default)]
pub(crate) struct BackupRequests {
    /// The path of the backup that a callback requested during the current hook.
    pub(crate) requested: Option<PathBuf>,
    /// Whether batch-level backups need the state at the start of each epoch.
    pub(crate) keep_epoch_start: bool,
    /// The state at the start of the current epoch, when kept.
    epoch_start: Option<TrainingState>,
    /// Callback states of a restored backup and its path, applied after `on_train_begin`.
    pub(crate) restore: Option<(PathBuf, Vec<CallbackState>)>,
}

impl BackupRequests {
    /// Keeps the state at the start of an epoch when batch-level backups need it. The loop
    /// calls it before `on_epoch_begin`.
    pub(crate) fn at_epoch_start(
        &mut self,
        model: &Sequential,
        callback_states: impl FnOnce() -> Vec<CallbackState>,
    ) {
        if self.keep_epoch_start {
            self.epoch_start = Some(model.training_state(Some(callback_states())));
        }
    }

    /// Writes a backup requested during a batch hook: the state at the start of the epoch.
    pub(crate) fn after_batch(&mut self, model: &Sequential) -> Result<()> {
        let Some(path) = self.requested.take() else {
            return Ok(());
        };
        let state = self
            .epoch_start
            .as_ref()
            .ok_or_else(|| TrainError::Callback {
                callback: NAME.into(),
                message: "a backup was requested during an epoch, but the state at the start of \
                      the epoch was not kept. Call `keep_epoch_start_state` in on_train_begin"
                    .into(),
            })?;
        model.write_training_state(&path, state)
    }

    /// Writes a backup requested during `on_epoch_end`: the state after the epoch.
    pub(crate) fn after_epoch(
        &mut self,
        model: &Sequential,
        callback_states: impl FnOnce() -> Vec<CallbackState>,
    ) -> Result<()> {
        let Some(path) = self.requested.take() else {
            return Ok(());
        };
        let state = model.training_state(Some(callback_states()));
        model.write_training_state(&path, &state)
    }
}

/// Checks that saved callback states match the callbacks of this run, by position and name,
/// in both directions. `current` lists `(name, has_state)` for every callback in order.
pub(crate) fn check_callback_states(
    path: &Path,
    saved: &[CallbackState],
    current: &[(String, bool)],
) -> Result<()> {
    let mismatch = |detail: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!(
            "the backup was written by a fit call with other callbacks ({detail}). Resume with \
             the same callbacks in the same order, or delete the backup to start over"
        ),
    };
    for entry in saved {
        match current.get(entry.index) {
            Some((name, true)) if *name == entry.name => {}
            Some((name, _)) => {
                return Err(mismatch(format!(
                    "position {} held {} then and holds {name} now",
                    entry.index, entry.name
                )));
            }
            None => {
                return Err(mismatch(format!(
                    "position {} held {} then and is empty now",
                    entry.index, entry.name
                )));
            }
        }
    }
    for (index, (name, has_state)) in current.iter().enumerate() {
        if *has_state && !saved.iter().any(|entry| entry.index == index) {
            return Err(mismatch(format!(
                "{name} at position {index} has no saved state"
            )));
        }
    }
    Ok(())
}
