use std::collections::{BTreeMap, HashMap};

use grit_nn::Dense;
use grit_optim::Adam;
use ndarray::array;
use safetensors::tensor::{Dtype, TensorView};

use super::*;
use crate::Sequential;

fn trained_model() -> Sequential {
    let mut model = Sequential::new([2])
        .seed(3)
        .add(Dense::new(3))
        .add(Dense::new(1));
    model
        .compile(
            Adam::new(0.01),
            Loss::MeanSquaredError,
            [Metric::MeanAbsoluteError],
        )
        .unwrap();
    let x = array![[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.5]];
    let y = array![[1.0f32], [1.0], [0.0], [0.5]];
    let options = crate::FitOptions::new().epochs(2).batch_size(2).verbose(0);
    model.fit(&x, &y, &options, &mut []).unwrap();
    model
}

/// Encodes `tensors` with exactly `metadata` plus a valid checksum, bypassing `encode`'s keys.
fn craft(
    metadata: BTreeMap<String, String>,
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
) -> Vec<u8> {
    let mut metadata = metadata;
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by_key(|(name, ..)| *name);
    let checksum = file::checksum(
        &metadata,
        sorted
            .into_iter()
            .map(|(name, dtype, shape, data)| (*name, *dtype, shape.as_slice(), data.as_slice())),
    );
    metadata.insert(keys::SHA256.into(), checksum);
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    let metadata: HashMap<String, String> = metadata.into_iter().collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn weights_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        (keys::FORMAT.to_string(), FORMAT_NAME.to_string()),
        (keys::FORMAT_VERSION.to_string(), "1".to_string()),
        (keys::GRIT_VERSION.to_string(), "0.1.0".to_string()),
        (keys::KIND.to_string(), "weights".to_string()),
        (
            keys::MODEL_CONFIG.to_string(),
            Sequential::new([2]).add(Dense::new(1)).config().to_string(),
        ),
        (
            keys::WEIGHT_NAMES.to_string(),
            r#"["dense/kernel","dense/bias"]"#.to_string(),
        ),
    ])
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn read_bytes(bytes: &[u8]) -> Result<Checkpoint> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.safetensors");
    std::fs::write(&path, bytes).unwrap();
    Checkpoint::read(&path)
}

#[track_caller]
fn assert_invalid(result: Result<Checkpoint>, expected: &str) {
    match result {
        Ok(_) => panic!("expected an error containing {expected:?}, the file was accepted"),
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains(expected),
                "expected {expected:?} in: {message}"
            );
        }
    }
}

#[test]
fn full_checkpoint_metadata_and_tensors() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();

    let checkpoint = Checkpoint::read(&path).unwrap();
    assert_eq!(checkpoint.kind(), CheckpointKind::Full);
    assert_eq!(checkpoint.epoch(), Some(2));
    assert_eq!(checkpoint.global_step(), Some(4));
    assert_eq!(
        checkpoint.weight_names(),
        [
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias"
        ]
    );

    let keys: Vec<&str> = checkpoint.metadata().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "compile_config",
            "epoch",
            "format",
            "format_version",
            "global_step",
            "grit_version",
            "kind",
            "model_config",
            "optimizer_config",
            "rng_state",
            "sha256",
            "weight_names"
        ]
    );
    assert_eq!(checkpoint.metadata()["format"], "grit.checkpoint");
    assert_eq!(checkpoint.metadata()["format_version"], "1");
    assert_eq!(checkpoint.model_config(), &model.config());

    let names: Vec<&str> = checkpoint.tensors().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "dense/bias",
            "dense/kernel",
            "dense_1/bias",
            "dense_1/kernel",
            "optimizer/m/0",
            "optimizer/m/1",
            "optimizer/m/2",
            "optimizer/m/3",
            "optimizer/v/0",
            "optimizer/v/1",
            "optimizer/v/2",
            "optimizer/v/3",
        ]
    );
    assert_eq!(checkpoint.tensors()["dense/kernel"].shape(), &[2, 3]);
    assert_eq!(checkpoint.tensors()["optimizer/v/2"].shape(), &[3, 1]);
    for (name, value) in model.get_weights() {
        assert_eq!(checkpoint.tensors()[&name], value, "{name}");
    }

    let state = checkpoint.training_state().unwrap();
    assert_eq!(state.rng, model.rng().state());
    let compiled = state.compiled.unwrap();
    assert_eq!(compiled.optimizer_state, model.optimizer().unwrap().state());
    assert_eq!(compiled.loss, Loss::MeanSquaredError);
    assert_eq!(compiled.metrics, vec![Metric::MeanAbsoluteError]);
}

#[test]
fn saving_twice_gives_identical_bytes() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    model.save(&first).unwrap();
    model.save(&second).unwrap();
    let bytes = std::fs::read(&first).unwrap();
    assert_eq!(bytes, std::fs::read(&second).unwrap());
    // The metadata comes first with its keys sorted, and grit still reads the file.
    let header_length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_length]).unwrap();
    assert!(
        header.starts_with("{\"__metadata__\":{\"compile_config\":"),
        "{header}"
    );
    assert_eq!(Checkpoint::read(&first).unwrap().epoch(), Some(2));
}

#[test]
fn weights_checkpoint_has_no_training_state() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    model.save_weights(&path).unwrap();
    let checkpoint = Checkpoint::read(&path).unwrap();
    assert_eq!(checkpoint.kind(), CheckpointKind::Weights);
    assert_eq!(checkpoint.epoch(), None);
    assert_eq!(checkpoint.tensors().len(), 4);
    assert!(!checkpoint.metadata().contains_key("optimizer_config"));
    assert!(checkpoint.training_state().is_none());
}

#[test]
fn every_flipped_bit_is_an_error() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for mask in [0x01u8, 0x80] {
        for position in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= mask;
            std::fs::write(&path, &corrupt).unwrap();
            assert!(
                Checkpoint::read(&path).is_err(),
                "flipping byte {position} of {} with {mask:#04x} went unnoticed",
                bytes.len()
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save_weights(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for length in 0..bytes.len() {
        std::fs::write(&path, &bytes[..length]).unwrap();
        assert!(
            Checkpoint::read(&path).is_err(),
            "a file cut to {length} of {} bytes was accepted",
            bytes.len()
        );
    }
}

#[test]
fn crafted_valid_file_reads() {
    let bytes = craft(
        weights_metadata(),
        &[
            (
                "dense/kernel",
                Dtype::F32,
                vec![2, 1],
                f32_bytes(&[1.0, 2.0]),
            ),
            ("dense/bias", Dtype::F32, vec![1], f32_bytes(&[0.5])),
        ],
    );
    let checkpoint = read_bytes(&bytes).unwrap();
    assert_eq!(
        checkpoint.tensors()["dense/kernel"],
        array![[1.0f32], [2.0]].into_dyn()
    );
}

#[test]
fn other_format_is_rejected() {
    let mut metadata = weights_metadata();
    metadata.insert(keys::FORMAT.into(), "pytorch".into());
    assert_invalid(read_bytes(&craft(metadata, &[])), "the format is `pytorch`");
    let mut metadata = weights_metadata();
    metadata.remove(keys::FORMAT);
    assert_invalid(read_bytes(&craft(metadata, &[])), "not written by grit");
}

#[test]
fn newer_version_is_rejected() {
    let mut metadata = weights_metadata();
    metadata.insert(keys::FORMAT_VERSION.into(), "2".into());
    assert_invalid(
        read_bytes(&craft(metadata, &[])),
        "format version `2` is not supported",
    );
}

#[test]
fn other_dtype_is_rejected() {
    let bytes = craft(
        weights_metadata(),
        &[
            ("dense/kernel", Dtype::F64, vec![2, 1], vec![0; 16]),
            ("dense/bias", Dtype::F32, vec![1], f32_bytes(&[0.5])),
        ],
    );
    assert_invalid(read_bytes(&bytes), "`dense/kernel` has dtype F64");
}

#[test]
fn missing_metadata_is_named() {
    let mut metadata = weights_metadata();
    metadata.remove(keys::MODEL_CONFIG);
    assert_invalid(read_bytes(&craft(metadata, &[])), "no `model_config` key");
    let mut metadata = weights_metadata();
    metadata.insert(keys::KIND.into(), "full".into());
    let bytes = craft(
        metadata,
        &[
            (
                "dense/kernel",
                Dtype::F32,
                vec![2, 1],
                f32_bytes(&[1.0, 2.0]),
            ),
            ("dense/bias", Dtype::F32, vec![1], f32_bytes(&[0.5])),
        ],
    );
    assert_invalid(read_bytes(&bytes), "no `epoch` key");
}

#[test]
fn listed_weight_without_tensor_is_rejected() {
    let bytes = craft(
        weights_metadata(),
        &[(
            "dense/kernel",
            Dtype::F32,
            vec![2, 1],
            f32_bytes(&[1.0, 2.0]),
        )],
    );
    assert_invalid(read_bytes(&bytes), "lists `dense/bias`");
}

#[test]
fn plain_safetensors_file_is_rejected() {
    let data = f32_bytes(&[1.0]);
    let view = TensorView::new(Dtype::F32, vec![1], &data).unwrap();
    let bytes = safetensors::serialize([("x", view)], None).unwrap();
    assert_invalid(read_bytes(&bytes), "not written by grit");
}

#[test]
fn write_replaces_atomically_and_leaves_no_temporary_file() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/model.safetensors");
    model.save(&path).unwrap();
    model.save_weights(&path).unwrap();
    assert_eq!(
        Checkpoint::read(&path).unwrap().kind(),
        CheckpointKind::Weights
    );
    let files: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["model.safetensors"]);
}

#[test]
fn folder_path_is_rejected() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let error = model.save(dir.path()).unwrap_err().to_string();
    assert!(error.contains("is a folder"), "{error}");
}
