//! Entry points of the fuzz targets, one per parser of outside bytes.
//!
//! Each function takes the fuzzer's raw input, feeds it to grit and returns `Ok(())` when the
//! input was accepted (and, for a model, built and run forward) or `Err` with grit's error
//! message. A panic, a hang or an oversized allocation is a bug. The targets in
//! `fuzz_targets/` call these functions, and `tests/fuzz_regressions.rs` in the main workspace
//! includes this file to replay the seed corpus and the saved failure inputs the same way.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use grit_data::parse_idx;
use grit_nn::layer_from_config;
use grit_optim::{optimizer_from_config, schedule_from_config};
use grit_train::Sequential;
use grit_train::checkpoint::Checkpoint;
use ndarray::{ArrayD, IxDyn};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The result of one input: `Err` contains the error message grit returned.
pub type Outcome = Result<(), String>;

/// The name that errors give to the input.
const SOURCE: &str = "fuzz-input";

/// Feeds `data` to [`parse_idx`]. The first byte selects the mode: when it is odd, the rest
/// is gzip-compressed first, so the decompressor reads valid gzip streams around fuzzed IDX
/// bytes. When it is even, the rest goes to the parser as it is, which reaches the
/// decompressor too when it starts with gzip's magic bytes.
pub fn idx(data: &[u8]) -> Outcome {
    let (mode, rest) = split_mode(data);
    let wrapped = mode & 1 == 1;
    let input = if wrapped { gzip(rest) } else { rest.to_vec() };
    let array = parse_idx(&input, SOURCE).map_err(|error| error.to_string())?;

    // The IDX bytes are the 4-byte magic number, 4 bytes per dimension and the elements.
    let idx_bytes = if wrapped { rest } else { &input };
    if !idx_bytes.starts_with(&[0x1f, 0x8b]) {
        let elements: usize = array.shape().iter().product();
        let expected_len = 4 + 4 * array.shape().len() + elements * array.dtype().size();
        assert_eq!(
            idx_bytes.len(),
            expected_len,
            "parse_idx accepted {} bytes for shape {:?} of {}",
            idx_bytes.len(),
            array.shape(),
            array.dtype()
        );
    }
    Ok(())
}

/// Feeds a checkpoint built from `data` to [`Checkpoint::from_bytes`], and when it parses,
/// rebuilds the model with [`Sequential::from_checkpoint`] and runs it forward.
///
/// The first byte selects the mode. Its value modulo 3 selects how the checkpoint bytes are
/// made, and the next bit selects the base checkpoint for modes 1 and 2: a full checkpoint
/// of a compiled model, or a weights-only one.
/// - 0: the rest of `data` is the checkpoint.
/// - 1: the rest patches the base, see [`patch`]. The checksum is left as it was, so this
///   mode tests the checks of the safetensors structure and of the checksum.
/// - 2: the rest edits the base's metadata and tensors, see [`edit_and_sign`], and the
///   checksum is computed again, so the edits reach the checks behind the checksum and the
///   model rebuild.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let (mode, rest) = split_mode(data);
    let base = if (mode / 3) & 1 == 0 {
        base_checkpoint(FULL_SEED)
    } else {
        base_checkpoint(WEIGHTS_SEED)
    };
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => patch(base, rest),
        _ => edit_and_sign(base, rest),
    };
    let checkpoint = Checkpoint::from_bytes(&bytes, format!("{SOURCE}.safetensors"))
        .map_err(|error| error.to_string())?;
    if !within_fuzz_budget(checkpoint.model_config()) {
        return Ok(());
    }
    let mut model = Sequential::from_checkpoint(&checkpoint).map_err(|error| error.to_string())?;
    run_forward(&mut model)
}

/// Parses `data` as JSON and feeds it to the config parser that its shape selects: a
/// `"class_name": "Sequential"` object to [`Sequential::from_config`] (then build and a
/// forward pass), another `class_name` to [`layer_from_config`], a `schedule` key to
/// [`schedule_from_config`], and anything else to [`optimizer_from_config`]. Every config
/// that is accepted must also accept its own `config()` output unchanged.
pub fn model_config(data: &[u8]) -> Outcome {
    let value: Value = serde_json::from_slice(data).map_err(|error| error.to_string())?;
    let class_name = value.get("class_name").and_then(Value::as_str);
    if class_name == Some("Sequential") {
        sequential_config(&value)
    } else if class_name.is_some() {
        let layer = layer_from_config(&value).map_err(|error| error.to_string())?;
        let config = layer.config();
        let rebuilt = layer_from_config(&config)
            .unwrap_or_else(|error| panic!("layer config {config} does not load back: {error}"));
        assert_eq!(
            rebuilt.config(),
            config,
            "layer config changes on a round trip"
        );
        Ok(())
    } else if let Some(name) = value.get("schedule").and_then(Value::as_str) {
        let config = value.get("config").unwrap_or(&Value::Null);
        let schedule = schedule_from_config(name, config).map_err(|error| error.to_string())?;
        for step in [0, 1, 2, 10, 1_000, 1 << 40, u64::MAX] {
            let _ = schedule.learning_rate(step);
        }
        let config = schedule.config();
        let rebuilt = schedule_from_config(schedule.name(), &config)
            .unwrap_or_else(|error| panic!("schedule config {config} does not load back: {error}"));
        assert_eq!(
            rebuilt.config(),
            config,
            "schedule config changes on a round trip"
        );
        Ok(())
    } else {
        let optimizer = optimizer_from_config(&value).map_err(|error| error.to_string())?;
        let config = optimizer.config();
        let rebuilt = optimizer_from_config(&config).unwrap_or_else(|error| {
            panic!("optimizer config {config} does not load back: {error}")
        });
        assert_eq!(
            rebuilt.config(),
            config,
            "optimizer config changes on a round trip"
        );
        Ok(())
    }
}

fn sequential_config(value: &Value) -> Outcome {
    let mut model = Sequential::from_config(value).map_err(|error| error.to_string())?;
    if !within_fuzz_budget(value) {
        return Ok(());
    }
    model.build().map_err(|error| error.to_string())?;
    run_forward(&mut model)?;
    let config = model.config();
    let rebuilt = Sequential::from_config(&config)
        .unwrap_or_else(|error| panic!("model config {config} does not load back: {error}"));
    assert_eq!(
        rebuilt.config(),
        config,
        "model config changes on a round trip"
    );
    Ok(())
}

/// The largest number of values per sample that a fuzzed model is run on.
const MAX_SAMPLE_VALUES: u64 = 1024;

/// The largest number of layers that a fuzzed model is built with.
const MAX_LAYERS: usize = 8;

/// The largest integer in a layer config that a fuzzed model is built with, below
/// [`HUGE_INTEGER`].
const MAX_SMALL_INTEGER: u64 = 16;

/// A layer integer from this value up either makes a weight or an activation exceed grit's
/// limit of [`grit_nn::MAX_TENSOR_VALUES`] values, which building must reject before
/// allocating, or is a stride or pooling window, which sizes no tensor. So the fuzzer builds
/// such models too.
const HUGE_INTEGER: u64 = grit_nn::MAX_TENSOR_VALUES as u64;

/// Decides whether the fuzzer builds the model of `config`, a `Sequential` config, within
/// the memory and time it has for one input.
///
/// A 30-byte config can rightly ask for gigabytes of weights, which the allocation limit
/// would report as a fault. So the fuzzer builds only small models: up to
/// [`MAX_SAMPLE_VALUES`] input values per sample, up to [`MAX_LAYERS`] layers, and layer
/// integers (units, filters, kernel sizes, ...) up to [`MAX_SMALL_INTEGER`]. Models with an
/// integer of [`HUGE_INTEGER`] or more are built too, because grit must reject those with an
/// error.
fn within_fuzz_budget(config: &Value) -> bool {
    let inner = &config["config"];
    let input_values = inner["input_shape"].as_array().and_then(|axes| {
        axes.iter()
            .try_fold(1u64, |product, axis| product.checked_mul(axis.as_u64()?))
    });
    let small_input = input_values.is_some_and(|values| values <= MAX_SAMPLE_VALUES);
    let huge_input = inner["input_shape"].as_array().is_some_and(|axes| {
        axes.iter()
            .any(|axis| axis.as_u64().is_some_and(|size| size >= HUGE_INTEGER))
    });
    if !small_input && !huge_input {
        return false;
    }
    let Some(layers) = inner["layers"].as_array() else {
        return true;
    };
    layers.len() <= MAX_LAYERS
        && layers.iter().all(|layer| {
            integers_within(&layer["config"], &mut |size| {
                size <= MAX_SMALL_INTEGER || size >= HUGE_INTEGER
            })
        })
}

/// Applies `accept` to the magnitude of every integer in `value`, except random seeds,
/// which set no size.
fn integers_within(value: &Value, accept: &mut impl FnMut(u64) -> bool) -> bool {
    match value {
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(size), _) => accept(size),
            (None, Some(negative)) => accept(negative.unsigned_abs()),
            // A float sets no size.
            (None, None) => true,
        },
        Value::Array(items) => items.iter().all(|item| integers_within(item, accept)),
        Value::Object(fields) => fields
            .iter()
            .filter(|(key, _)| key.as_str() != "seed")
            .all(|(_, item)| integers_within(item, accept)),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// Runs a built model on a batch of two samples of zeros when its input is small enough,
/// and checks the output's shape.
fn run_forward(model: &mut Sequential) -> Outcome {
    let input_values: Option<u64> = model
        .input_shape()
        .iter()
        .try_fold(1u64, |product, &axis| product.checked_mul(axis as u64));
    if input_values.is_none_or(|values| values > MAX_SAMPLE_VALUES) {
        return Ok(());
    }
    let mut shape = vec![2];
    shape.extend_from_slice(model.input_shape());
    let input = ArrayD::<f32>::zeros(IxDyn(&shape));
    let output = model
        .predict(&input, 2)
        .map_err(|error| error.to_string())?;
    let mut expected = vec![2];
    expected.extend_from_slice(model.output_shape().expect("predict builds the model"));
    assert_eq!(output.shape(), expected.as_slice(), "predict output shape");
    Ok(())
}

/// Splits the mode byte off the input. An empty input has mode 0 and no rest.
fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) => (mode, rest),
        None => (0, data),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// A seed of the checkpoint corpus: mode byte 0 and a full checkpoint of a compiled model,
/// written by grit's `Sequential::save`.
const FULL_SEED: &[u8] = include_bytes!("../corpus/checkpoint/valid-full");

/// A seed of the checkpoint corpus: mode byte 0 and a weights-only checkpoint, written by
/// grit's `Sequential::save_weights`.
const WEIGHTS_SEED: &[u8] = include_bytes!("../corpus/checkpoint/valid-weights");

fn base_checkpoint(seed: &'static [u8]) -> &'static [u8] {
    &seed[1..]
}

/// Applies patches to a copy of `base`. `patches` is read in 3-byte groups, each a
/// big-endian 16-bit offset (taken modulo the length) and the byte to write there. A final
/// group of 2 bytes is an offset at which the copy is cut, and a final single byte is
/// ignored.
fn patch(base: &[u8], patches: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    let mut groups = patches.chunks(3);
    for group in &mut groups {
        match *group {
            [high, low, value] => {
                let offset = usize::from(u16::from_be_bytes([high, low])) % bytes.len();
                bytes[offset] = value;
            }
            [high, low] => {
                let offset = usize::from(u16::from_be_bytes([high, low])) % bytes.len();
                bytes.truncate(offset);
            }
            _ => {}
        }
    }
    bytes
}

/// The metadata keys of a grit checkpoint that [`edit_and_sign`] edits, as
/// `docs/file-formats.md` lists them.
const METADATA_KEYS: [&str; 12] = [
    "format",
    "format_version",
    "grit_version",
    "kind",
    "model_config",
    "weight_names",
    "epoch",
    "global_step",
    "rng_state",
    "compile_config",
    "optimizer_config",
    "callbacks",
];

/// The metadata key whose value is the checksum.
const CHECKSUM_KEY: &str = "sha256";

/// Edits the metadata and tensors of `base`, a valid checkpoint, and encodes the result as
/// a safetensors file with a correct checksum.
///
/// `edits` is split at 0xFF bytes. In each part, the first byte `op` selects an edit and the
/// rest is its argument. With `k = op / 4`:
/// - `op % 4 == 0`: sets metadata key `k` of [`METADATA_KEYS`] to the argument as UTF-8 text,
///   with invalid sequences replaced;
/// - `op % 4 == 1`: removes metadata key `k`;
/// - `op % 4 == 2`: removes tensor `k` (by position in name order);
/// - `op % 4 == 3`: gives tensor `k` a new shape, one axis per argument byte (at most 3,
///   each up to 15), with zeros as data.
fn edit_and_sign(base: &[u8], edits: &[u8]) -> Vec<u8> {
    let file = SafeTensors::deserialize(base).expect("the base checkpoint is valid");
    let (_, header) = SafeTensors::read_metadata(base).expect("the base checkpoint is valid");
    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let tensor = (view.dtype(), view.shape().to_vec(), view.data().to_vec());
            (name, tensor)
        })
        .collect();

    for part in edits.split(|&byte| byte == 0xFF) {
        let Some((&op, argument)) = part.split_first() else {
            continue;
        };
        let k = usize::from(op / 4);
        match op % 4 {
            0 => {
                let key = METADATA_KEYS[k % METADATA_KEYS.len()];
                let value = String::from_utf8_lossy(argument).into_owned();
                metadata.insert(key.to_string(), value);
            }
            1 => {
                metadata.remove(METADATA_KEYS[k % METADATA_KEYS.len()]);
            }
            2 => {
                let index = k % tensors.len().max(1);
                if let Some(name) = tensors.keys().nth(index).cloned() {
                    tensors.remove(&name);
                }
            }
            _ => {
                let index = k % tensors.len().max(1);
                if let Some(tensor) = tensors.values_mut().nth(index) {
                    let shape: Vec<usize> = argument
                        .iter()
                        .take(3)
                        .map(|&axis| usize::from(axis % 16))
                        .collect();
                    let values: usize = shape.iter().product();
                    *tensor = (Dtype::F32, shape, vec![0; 4 * values]);
                }
            }
        }
    }

    metadata.insert(CHECKSUM_KEY.to_string(), checksum(&metadata, &tensors));
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            let view = TensorView::new(*dtype, shape.clone(), data)
                .expect("the data length matches the shape");
            (name.clone(), view)
        })
        .collect();
    let metadata = metadata.into_iter().collect();
    safetensors::serialize(views, Some(metadata)).expect("encoding to memory cannot fail")
}

/// Computes a checkpoint's checksum as `docs/file-formats.md` defines it: the hex SHA-256
/// over `key\0value\0` for each metadata entry but the checksum, sorted by key, then
/// `name\0dtype\0shape\0data` for each tensor, sorted by name, with the shape as
/// comma-separated decimals.
fn checksum(
    metadata: &BTreeMap<String, String>,
    tensors: &BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in metadata {
        if key == CHECKSUM_KEY {
            continue;
        }
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    for (name, (dtype, shape, data)) in tensors {
        let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(format!("{dtype:?}").as_bytes());
        hasher.update([0]);
        hasher.update(shape.join(",").as_bytes());
        hasher.update([0]);
        hasher.update(data);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
