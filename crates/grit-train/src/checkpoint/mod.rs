//! The checkpoint file: one safetensors file holding a model's weights, and for a full
//! checkpoint its optimizer state and training position, with JSON metadata.
//!
//! - Tensors are f32, little-endian, in Keras's layout, named `<layer>/<weight>`
//!   (`dense_1/kernel` is inputs × units). A full checkpoint adds the optimizer's slots as
//!   `optimizer/<slot>/<i>` (`optimizer/m/0` is Adam's first moment of the model's first
//!   trainable weight).
//! - The metadata (a string map) contains the format name and version, the library version,
//!   a SHA-256 checksum of everything else and the model config as JSON. A full checkpoint
//!   adds the compile settings, the epoch, the global step and the RNG state, and a backup
//!   adds the callbacks' states.
//!
//! Files are written atomically (a temporary file in the same folder, synced and renamed),
//! and reading checks the structure, the format, the version and the checksum before anything
//! reaches a model. `docs/file-formats.md` in the repository describes the layout for other
//! tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use grit_nn::{Loss, Metric};
use grit_optim::OptimizerState;
use grit_tensor::{RngState, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::callbacks::Weights;
use crate::{Result, TrainError};

mod file;

/// The value of the `format` metadata key of every grit checkpoint.
pub const FORMAT_NAME: &str = "grit.checkpoint";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The prefix of the optimizer's tensors in a full checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer/";

/// The metadata keys.
pub(crate) mod keys {
    pub(crate) const FORMAT: &str = "format";
    pub(crate) const FORMAT_VERSION: &str = "format_version";
    pub(crate) const GRIT_VERSION: &str = "grit_version";
    pub(crate) const SHA256: &str = "sha256";
    pub(crate) const KIND: &str = "kind";
    pub(crate) const MODEL_CONFIG: &str = "model_config";
    pub(crate) const WEIGHT_NAMES: &str = "weight_names";
    pub(crate) const EPOCH: &str = "epoch";
    pub(crate) const GLOBAL_STEP: &str = "global_step";
    pub(crate) const RNG_STATE: &str = "rng_state";
    pub(crate) const COMPILE_CONFIG: &str = "compile_config";
    pub(crate) const OPTIMIZER_CONFIG: &str = "optimizer_config";
    pub(crate) const CALLBACKS: &str = "callbacks";
}

/// The kind of checkpoint: weights only, or the full training state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// The weights and the model config, as [`crate::Sequential::save_weights`] writes.
    Weights,
    /// The weights, the model config, the compile settings with the optimizer's state, the
    /// epoch, the global step and the RNG state, as [`crate::Sequential::save`] and
    /// [`crate::callbacks::BackupAndRestore`] write.
    Full,
}

impl CheckpointKind {
    fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Weights => "weights",
            CheckpointKind::Full => "full",
        }
    }
}

/// A callback's saved state in a backup, with the callback's position and name in the list
/// that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CallbackState {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) state: Value,
}

/// The settings of `compile` and the optimizer's state.
#[derive(Debug, Clone)]
pub(crate) struct CompiledState {
    pub(crate) loss: Loss,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) optimizer_config: Value,
    pub(crate) optimizer_state: OptimizerState,
}

/// The contents of a full checkpoint besides the model config.
#[derive(Debug, Clone)]
pub(crate) struct TrainingState {
    pub(crate) weights: Weights,
    /// The number of epochs completed, which is the index of the epoch to run next.
    pub(crate) epoch: usize,
    pub(crate) rng: RngState,
    pub(crate) compiled: Option<CompiledState>,
    /// Present in backups only.
    pub(crate) callbacks: Option<Vec<CallbackState>>,
}

/// The contents to write besides the model config.
pub(crate) enum Contents<'a> {
    Weights(&'a Weights),
    Full(&'a TrainingState),
}

/// Writes a checkpoint atomically. The module documentation describes the layout.
pub(crate) fn write(path: &Path, model_config: &Value, contents: Contents<'_>) -> Result<()> {
    let (kind, weights) = match &contents {
        Contents::Weights(weights) => (CheckpointKind::Weights, *weights),
        Contents::Full(state) => (CheckpointKind::Full, &state.weights),
    };
    let weight_names: Vec<&str> = weights.iter().map(|(name, _)| name.as_str()).collect();
    let mut metadata = BTreeMap::new();
    metadata.insert(keys::KIND.to_string(), kind.as_str().to_string());
    metadata.insert(keys::MODEL_CONFIG.to_string(), model_config.to_string());
    metadata.insert(
        keys::WEIGHT_NAMES.to_string(),
        json!(weight_names).to_string(),
    );
    let mut tensors: Vec<(String, &Tensor)> = weights
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor))
        .collect();

    if let Contents::Full(state) = contents {
        let rng = json!({"seed": state.rng.seed, "word_pos": state.rng.word_pos.to_string()});
        metadata.insert(keys::EPOCH.to_string(), state.epoch.to_string());
        metadata.insert(keys::RNG_STATE.to_string(), rng.to_string());
        let global_step = state
            .compiled
            .as_ref()
            .map_or(0, |compiled| compiled.optimizer_state.iterations);
        metadata.insert(keys::GLOBAL_STEP.to_string(), global_step.to_string());
        if let Some(compiled) = &state.compiled {
            let compile = json!({"loss": compiled.loss, "metrics": compiled.metrics});
            metadata.insert(keys::COMPILE_CONFIG.to_string(), compile.to_string());
            metadata.insert(
                keys::OPTIMIZER_CONFIG.to_string(),
                compiled.optimizer_config.to_string(),
            );
            for (slot, tensor) in &compiled.optimizer_state.slots {
                tensors.push((format!("{OPTIMIZER_PREFIX}{slot}"), tensor));
            }
        }
        if let Some(callbacks) = &state.callbacks {
            metadata.insert(keys::CALLBACKS.to_string(), json!(callbacks).to_string());
        }
    }
    let bytes = file::encode(path, metadata, &tensors)?;
    file::write_atomically(path, &bytes)
}

/// A checkpoint read from a file and verified: structure, format name and version, checksum,
/// dtypes and the metadata that its kind requires.
///
/// ```no_run
/// use grit_train::checkpoint::{Checkpoint, CheckpointKind};
///
/// let checkpoint = Checkpoint::read("runs/backup/latest.safetensors")?;
/// if checkpoint.kind() == CheckpointKind::Full {
///     println!("resumes at epoch {:?}", checkpoint.epoch());
/// }
/// for (name, tensor) in checkpoint.tensors() {
///     println!("{name}: {:?}", tensor.shape());
/// }
/// # Ok::<(), grit_train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    kind: CheckpointKind,
    metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, Tensor>,
    model_config: Value,
    weight_names: Vec<String>,
    training: Option<TrainingMetadata>,
}

/// The metadata of a full checkpoint, parsed.
#[derive(Debug, Clone)]
struct TrainingMetadata {
    epoch: usize,
    global_step: u64,
    rng: RngState,
    compile: Option<(Loss, Vec<Metric>, Value)>,
    callbacks: Option<Vec<CallbackState>>,
}

/// The `compile_config` metadata value.
#[derive(Deserialize)]
struct CompileConfig {
    loss: Loss,
    metrics: Vec<Metric>,
}

impl Checkpoint {
    /// Reads and verifies the checkpoint at `path`.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be read, and [`TrainError::Checkpoint`] for a
    /// truncated or corrupt file, another format, an unsupported format version, a tensor that
    /// is not f32, or missing or malformed metadata.
    pub fn read(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
            action: "failed to read the checkpoint",
            path: path.to_path_buf(),
            source,
        })?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Parses and verifies a checkpoint held in memory, as [`Checkpoint::read`] does for a
    /// file. `path` names the input in errors and becomes [`Checkpoint::path`].
    ///
    /// # Errors
    /// The errors of [`Checkpoint::read`] except [`TrainError::Io`].
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let decoded = file::decode(path, bytes)?;
        let metadata = Metadata {
            path,
            map: &decoded.metadata,
        };
        let kind = match metadata.required(keys::KIND)? {
            "weights" => CheckpointKind::Weights,
            "full" => CheckpointKind::Full,
            other => {
                return Err(metadata.invalid(format!(
                    "unknown kind `{other}`, expected `weights` or `full`"
                )));
            }
        };
        let model_config = metadata.json(keys::MODEL_CONFIG)?;
        let weight_names: Vec<String> = metadata.parse_json(keys::WEIGHT_NAMES)?;
        for name in &weight_names {
            if !decoded.tensors.contains_key(name) {
                return Err(metadata.invalid(format!(
                    "`{}` lists `{name}`, but the file has no such tensor",
                    keys::WEIGHT_NAMES
                )));
            }
        }
        let training = match kind {
            CheckpointKind::Weights => None,
            CheckpointKind::Full => Some(TrainingMetadata::parse(&metadata)?),
        };
        Ok(Checkpoint {
            path: path.to_path_buf(),
            kind,
            metadata: decoded.metadata,
            tensors: decoded.tensors,
            model_config,
            weight_names,
            training,
        })
    }

    /// Returns the file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns what the checkpoint contains.
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// Returns every metadata entry, checksum included.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Returns every tensor by name, optimizer slots included, sorted by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// Returns the names of the model's weights in the model's order.
    pub fn weight_names(&self) -> &[String] {
        &self.weight_names
    }

    /// Returns the model config, as [`crate::Sequential::config`] returned it.
    pub fn model_config(&self) -> &Value {
        &self.model_config
    }

    /// Returns the number of epochs completed when a full checkpoint was written, which is
    /// the 0-based index of the epoch to run next. `None` for a weights-only checkpoint.
    pub fn epoch(&self) -> Option<usize> {
        self.training.as_ref().map(|training| training.epoch)
    }

    /// Returns the number of optimizer updates made when a full checkpoint was written.
    /// `None` for a weights-only checkpoint.
    pub fn global_step(&self) -> Option<u64> {
        self.training.as_ref().map(|training| training.global_step)
    }

    /// Returns the callback states of a backup.
    pub(crate) fn callback_states(&self) -> Option<&[CallbackState]> {
        self.training.as_ref()?.callbacks.as_deref()
    }

    /// Returns the RNG state of a full checkpoint.
    pub(crate) fn rng_state(&self) -> Option<RngState> {
        self.training.as_ref().map(|training| training.rng)
    }

    /// Returns the loss, metrics and optimizer config of a full checkpoint of a compiled
    /// model.
    pub(crate) fn compile_settings(&self) -> Option<(Loss, &[Metric], &Value)> {
        let (loss, metrics, optimizer_config) = self.training.as_ref()?.compile.as_ref()?;
        Some((*loss, metrics.as_slice(), optimizer_config))
    }

    /// Returns the compile settings and the optimizer state of a full checkpoint of a
    /// compiled model.
    pub(crate) fn compiled_state(&self) -> Option<CompiledState> {
        let training = self.training.as_ref()?;
        let (loss, metrics, optimizer_config) = self.compile_settings()?;
        let slots = self
            .tensors
            .iter()
            .filter_map(|(name, tensor)| {
                let slot = name.strip_prefix(OPTIMIZER_PREFIX)?;
                Some((slot.to_string(), tensor.clone()))
            })
            .collect();
        let learning_rate = optimizer_config
            .get("learning_rate")
            .and_then(Value::as_f64)
            .map(|rate| rate as f32);
        Some(CompiledState {
            loss,
            metrics: metrics.to_vec(),
            optimizer_config: optimizer_config.clone(),
            optimizer_state: OptimizerState {
                iterations: training.global_step,
                learning_rate,
                slots,
            },
        })
    }

    /// Returns the training state of a full checkpoint.
    #[cfg(test)]
    pub(crate) fn training_state(&self) -> Option<TrainingState> {
        let training = self.training.as_ref()?;
        let weights = self
            .weight_names
            .iter()
            .map(|name| (name.clone(), self.tensors[name].clone()))
            .collect();
        Some(TrainingState {
            weights,
            epoch: training.epoch,
            rng: training.rng,
            compiled: self.compiled_state(),
            callbacks: training.callbacks.clone(),
        })
    }
}

impl TrainingMetadata {
    fn parse(metadata: &Metadata<'_>) -> Result<Self> {
        let epoch = metadata.number(keys::EPOCH)?;
        let global_step = metadata.number(keys::GLOBAL_STEP)?;
        let rng = metadata.json(keys::RNG_STATE)?;
        let rng = match (
            rng.get("seed").and_then(Value::as_u64),
            rng.get("word_pos")
                .and_then(Value::as_str)
                .and_then(|text| text.parse::<u128>().ok()),
        ) {
            (Some(seed), Some(word_pos)) => RngState { seed, word_pos },
            _ => {
                return Err(metadata.invalid(format!(
                    "`{}` is {rng}, expected {{\"seed\": <integer>, \"word_pos\": \"<integer>\"}}",
                    keys::RNG_STATE
                )));
            }
        };
        let compile = match (
            metadata.map.contains_key(keys::COMPILE_CONFIG),
            metadata.map.contains_key(keys::OPTIMIZER_CONFIG),
        ) {
            (false, false) => None,
            (true, true) => {
                let compile: CompileConfig = metadata.parse_json(keys::COMPILE_CONFIG)?;
                let optimizer = metadata.json(keys::OPTIMIZER_CONFIG)?;
                Some((compile.loss, compile.metrics, optimizer))
            }
            _ => {
                return Err(metadata.invalid(format!(
                    "`{}` and `{}` must be both present or both absent",
                    keys::COMPILE_CONFIG,
                    keys::OPTIMIZER_CONFIG
                )));
            }
        };
        let callbacks = if metadata.map.contains_key(keys::CALLBACKS) {
            Some(metadata.parse_json(keys::CALLBACKS)?)
        } else {
            None
        };
        Ok(TrainingMetadata {
            epoch,
            global_step,
            rng,
            compile,
            callbacks,
        })
    }
}

/// Metadata being parsed, for errors that name the file and the key.
struct Metadata<'a> {
    path: &'a Path,
    map: &'a BTreeMap<String, String>,
}

impl Metadata<'_> {
    fn invalid(&self, message: String) -> TrainError {
        TrainError::Checkpoint {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn required(&self, key: &str) -> Result<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.invalid(format!("the metadata has no `{key}` key")))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let text = self.required(key)?;
        text.parse()
            .map_err(|_| self.invalid(format!("`{key}` is `{text}`, expected an integer")))
    }

    fn json(&self, key: &str) -> Result<Value> {
        self.parse_json(key)
    }

    fn parse_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let text = self.required(key)?;
        serde_json::from_str(text)
            .map_err(|error| self.invalid(format!("`{key}` is not valid: {error}")))
    }
}

#[cfg(test)]
mod tests;
