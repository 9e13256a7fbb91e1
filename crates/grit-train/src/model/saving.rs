//! Saving and loading models: weights-only and full checkpoints, rebuilding a model from its
//! config, and the training state that full checkpoints and backups hold.

use std::path::Path;

use grit_nn::layer_from_config;
use grit_optim::optimizer_from_config;
use grit_tensor::Rng;
use serde_json::Value;

use super::{Compiled, Sequential};
use crate::callbacks::Weights;
use crate::checkpoint::{
    self, CallbackState, Checkpoint, CheckpointKind, CompiledState, Contents, OPTIMIZER_PREFIX,
    TrainingState,
};
use crate::{Result, TrainError};

impl Sequential {
    /// Writes a full checkpoint to `path` (a `.safetensors` file): the weights, the model
    /// config, and, once compiled, the loss, metrics, optimizer config and optimizer state,
    /// with the RNG state and the epoch and step counters. [`Sequential::load`] rebuilds the
    /// model from it, and a `fit` with [`crate::FitOptions::initial_epoch`] set to
    /// [`Sequential::completed_epochs`] continues the run.
    ///
    /// The file is written to a temporary file in the same folder, synced and renamed, so
    /// `path` never contains a partial checkpoint. Missing folders are created.
    ///
    /// # Errors
    /// [`TrainError::InvalidArgument`] when the model is not built, [`TrainError::Io`] when
    /// the file cannot be written, and [`TrainError::Checkpoint`] when `path` is a folder.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.require_built("save")?;
        let state = self.training_state(None);
        checkpoint::write(path.as_ref(), &self.config(), Contents::Full(&state))
    }

    /// Writes the weights and the model config to `path`, as [`Sequential::save`] does but
    /// without the compile settings, the optimizer state and the training counters.
    ///
    /// # Errors
    /// As [`Sequential::save`].
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        self.require_built("save_weights")?;
        let weights = self.get_weights();
        checkpoint::write(path.as_ref(), &self.config(), Contents::Weights(&weights))
    }

    /// Rebuilds a model from a checkpoint: the layers from the model config, then the weights,
    /// and for a full checkpoint of a compiled model the optimizer, loss and metrics with the
    /// optimizer's state, the RNG state and [`Sequential::completed_epochs`].
    ///
    /// # Errors
    /// The errors of [`Checkpoint::read`], and [`TrainError::Checkpoint`] when the model or
    /// optimizer config cannot be rebuilt or a tensor is missing.
    pub fn load(path: impl AsRef<Path>) -> Result<Sequential> {
        Sequential::from_checkpoint(&Checkpoint::read(path)?)
    }

    /// Rebuilds a model from a checkpoint already read, as [`Sequential::load`] does from a
    /// file.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when the model or optimizer config cannot be rebuilt or a
    /// tensor is missing.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Sequential> {
        let rebuild_error = |what: &str, error: String| TrainError::Checkpoint {
            path: checkpoint.path().to_path_buf(),
            message: format!("the {what} cannot be rebuilt: {error}"),
        };
        let mut model = Sequential::from_config(checkpoint.model_config())
            .map_err(|error| rebuild_error("model config", error.to_string()))?;
        model
            .build()
            .map_err(|error| rebuild_error("model config", error.to_string()))?;
        if checkpoint.kind() == CheckpointKind::Weights {
            model.load_checked_weights(checkpoint)?;
            return Ok(model);
        }
        if let Some((loss, metrics, optimizer_config)) = checkpoint.compile_settings() {
            let optimizer = optimizer_from_config(optimizer_config)
                .map_err(|error| rebuild_error("optimizer config", error.to_string()))?;
            model.compiled = Some(Compiled {
                optimizer,
                loss,
                metrics: metrics.to_vec(),
            });
        }
        model.restore_training_state(checkpoint)?;
        Ok(model)
    }

    /// Replaces the weights with those of a checkpoint of either kind, building the model
    /// first if needed. Optimizer tensors in the file are ignored.
    ///
    /// # Errors
    /// The errors of [`Checkpoint::read`]. [`TrainError::CheckpointMismatch`] names the first
    /// weight, in model order, whose shape differs, with both shapes.
    /// [`TrainError::Checkpoint`] reports a weight of the model that the file lacks, or one in
    /// the file that the model does not have. Nothing changes on error.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let checkpoint = Checkpoint::read(path)?;
        self.build()?;
        self.load_checked_weights(&checkpoint)
    }

    /// Creates an unbuilt model from the JSON that [`Sequential::config`] returned.
    ///
    /// # Errors
    /// [`TrainError::InvalidArgument`] for a config that is not a `Sequential` config, and
    /// [`TrainError::Layer`] for a layer config that cannot be rebuilt.
    pub fn from_config(config: &Value) -> Result<Sequential> {
        let invalid = |expected: &str| TrainError::InvalidArgument {
            name: "config",
            value: config.to_string().chars().take(200).collect(),
            expected: expected.to_string(),
        };
        if config.get("class_name").and_then(Value::as_str) != Some("Sequential") {
            return Err(invalid("a config with `\"class_name\": \"Sequential\"`"));
        }
        let inner = config
            .get("config")
            .ok_or_else(|| invalid("a `config` object"))?;
        let input_shape: Vec<usize> = inner
            .get("input_shape")
            .cloned()
            .and_then(|value| serde_json::from_value(value).ok())
            .ok_or_else(|| invalid("`input_shape` as an array of sizes"))?;
        let seed = inner
            .get("seed")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("`seed` as a non-negative integer"))?;
        let layers = inner
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("`layers` as an array of layer configs"))?;
        let mut model = Sequential::new(input_shape).seed(seed);
        for layer in layers {
            model.push(layer_from_config(layer)?);
        }
        Ok(model)
    }

    /// Returns the absolute index of the epoch after the last one `fit` completed (0 before
    /// any), which is the epoch to run next. Loading a full checkpoint restores it, and
    /// passing it to [`crate::FitOptions::initial_epoch`] continues the run.
    pub fn completed_epochs(&self) -> usize {
        self.completed_epochs
    }

    /// Captures what a full checkpoint stores besides the model config.
    pub(crate) fn training_state(&self, callbacks: Option<Vec<CallbackState>>) -> TrainingState {
        TrainingState {
            weights: self.get_weights(),
            epoch: self.completed_epochs,
            rng: self.rng.state(),
            compiled: self.compiled.as_ref().map(|compiled| CompiledState {
                loss: compiled.loss,
                metrics: compiled.metrics.clone(),
                optimizer_config: compiled.optimizer.config(),
                optimizer_state: compiled.optimizer.state(),
            }),
            callbacks,
        }
    }

    /// Writes `state`, captured earlier by [`Sequential::training_state`], as a full
    /// checkpoint.
    pub(crate) fn write_training_state(&self, path: &Path, state: &TrainingState) -> Result<()> {
        checkpoint::write(path, &self.config(), Contents::Full(state))
    }

    /// Restores weights, optimizer state, RNG state and the epoch counter from a full
    /// checkpoint, after checking all of them against the model. Nothing changes on error.
    pub(crate) fn restore_training_state(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let invalid = |message: String| TrainError::Checkpoint {
            path: checkpoint.path().to_path_buf(),
            message,
        };
        let (Some(epoch), Some(rng)) = (checkpoint.epoch(), checkpoint.rng_state()) else {
            return Err(invalid(
                "this is a weights-only checkpoint, but restoring training needs a full \
                 checkpoint, as `save` and BackupAndRestore write"
                    .into(),
            ));
        };
        self.build()?;
        let weights = self.checked_weights(checkpoint)?;
        let trainable_shapes: Vec<Vec<usize>> = self
            .layers
            .iter_mut()
            .flat_map(|layer| layer.trainable_params())
            .map(|param| param.value.shape().to_vec())
            .collect();
        if let Some(compiled) = self.compiled.as_mut() {
            let Some(saved) = checkpoint.compiled_state() else {
                return Err(invalid(
                    "the file contains no optimizer state, so training cannot continue exactly. \
                     it was written before the model was compiled"
                        .into(),
                ));
            };
            let saved_name = saved.optimizer_config.get("name").and_then(Value::as_str);
            if saved_name != Some(compiled.optimizer.name()) {
                return Err(invalid(format!(
                    "the file holds the state of optimizer {}, but the model is compiled with \
                     `{}`",
                    saved_name.map_or("(unnamed)".to_string(), |name| format!("`{name}`")),
                    compiled.optimizer.name()
                )));
            }
            check_slots(checkpoint, &saved.optimizer_state.slots, &trainable_shapes)?;
            let previous = compiled.optimizer.state();
            if let Err(error) = compiled.optimizer.load_state(saved.optimizer_state) {
                compiled
                    .optimizer
                    .load_state(previous)
                    .expect("the optimizer's own state loads back");
                return Err(invalid(format!(
                    "the optimizer state cannot be loaded: {error}"
                )));
            }
        }
        self.set_weights(&weights)?;
        self.rng = Rng::from_state(rng);
        self.completed_epochs = epoch;
        Ok(())
    }

    /// Sets the checkpoint's weights after checking them against the model.
    fn load_checked_weights(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let weights = self.checked_weights(checkpoint)?;
        self.set_weights(&weights)
    }

    /// Returns the checkpoint's weights in the model's order, after checking that the file
    /// contains exactly the model's weights with the model's shapes.
    fn checked_weights(&self, checkpoint: &Checkpoint) -> Result<Weights> {
        let invalid = |message: String| TrainError::Checkpoint {
            path: checkpoint.path().to_path_buf(),
            message,
        };
        let mut weights = Vec::new();
        let mut model_names = Vec::new();
        for layer in &self.layers {
            for (weight, value) in layer.weights() {
                let name = format!("{}/{weight}", layer.name());
                let Some(saved) = checkpoint.tensors().get(&name) else {
                    return Err(invalid(format!(
                        "the file has no tensor `{name}` for the model's weight of shape {:?}. \
                         the file's weights are {}",
                        value.shape(),
                        checkpoint.weight_names().join(", ")
                    )));
                };
                if saved.shape() != value.shape() {
                    return Err(TrainError::CheckpointMismatch {
                        path: checkpoint.path().to_path_buf(),
                        name,
                        expected: value.shape().to_vec(),
                        found: saved.shape().to_vec(),
                    });
                }
                weights.push((name.clone(), saved.clone()));
                model_names.push(name);
            }
        }
        if let Some(extra) = checkpoint
            .weight_names()
            .iter()
            .find(|name| !model_names.contains(name))
        {
            return Err(invalid(format!(
                "the file contains weight `{extra}`, which the model does not have. The model's \
                 weights are {}",
                model_names.join(", ")
            )));
        }
        Ok(weights)
    }

    fn require_built(&self, action: &'static str) -> Result<()> {
        if self.built {
            Ok(())
        } else {
            Err(TrainError::InvalidArgument {
                name: "model",
                value: "not built".into(),
                expected: format!("a built model: call `build` or `compile` before `{action}`"),
            })
        }
    }
}

/// Checks that every optimizer slot `<slot>/<i>` names one of the model's trainable weights
/// and has its shape.
fn check_slots(
    checkpoint: &Checkpoint,
    slots: &[(String, grit_tensor::Tensor)],
    trainable_shapes: &[Vec<usize>],
) -> Result<()> {
    for (slot, tensor) in slots {
        let name = format!("{OPTIMIZER_PREFIX}{slot}");
        let index = slot
            .rsplit_once('/')
            .and_then(|(_, index)| index.parse::<usize>().ok());
        let Some(expected) = index.and_then(|index| trainable_shapes.get(index)) else {
            return Err(TrainError::Checkpoint {
                path: checkpoint.path().to_path_buf(),
                message: format!(
                    "optimizer tensor `{name}` does not name one of the model's {} trainable \
                     weights by index",
                    trainable_shapes.len()
                ),
            });
        };
        if tensor.shape() != expected.as_slice() {
            return Err(TrainError::CheckpointMismatch {
                path: checkpoint.path().to_path_buf(),
                name,
                expected: expected.clone(),
                found: tensor.shape().to_vec(),
            });
        }
    }
    Ok(())
}
