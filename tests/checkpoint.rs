//! Saving and loading models through the public API: identical predictions after a round
//! trip, errors for another architecture and for damaged files, and continuing a run from a
//! full checkpoint.

use std::path::Path;

use grit::prelude::*;
use grit::train::checkpoint::{Checkpoint, CheckpointKind};
use ndarray::{Array1, Array2};

fn data() -> (Array2<f32>, Array1<u8>) {
    let x = Array2::from_shape_fn((96, 6), |(i, j)| ((i * 7 + j * 5) % 13) as f32 / 13.0);
    let y = Array1::from_shape_fn(96, |i| ((i * 7) % 13 % 3) as u8);
    (x, y)
}

fn classifier(hidden: usize) -> Sequential {
    Sequential::new([6])
        .seed(11)
        .add(Dense::new(hidden).activation(Activation::Relu))
        .add(Dense::new(3).activation(Activation::Softmax))
}

fn compiled_classifier(hidden: usize) -> Sequential {
    let mut model = classifier(hidden);
    let schedule = ExponentialDecay::new(0.01, 5, 0.8).unwrap();
    model
        .compile(
            Adam::new(schedule),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn options(epochs: usize) -> FitOptions<'static> {
    FitOptions::new()
        .epochs(epochs)
        .batch_size(16)
        .validation_split(0.25)
        .verbose(0)
}

fn bits(model: &Sequential) -> Vec<(String, Vec<u32>)> {
    model
        .get_weights()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn save_load_predict_identical() {
    let (x, y) = data();
    let mut model = compiled_classifier(8);
    model.fit(&x, &y, &options(3), &mut []).unwrap();
    let expected = model.predict(&x, 32).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let full = dir.path().join("model.safetensors");
    model.save(&full).unwrap();
    let mut loaded = Sequential::load(&full).unwrap();
    assert_eq!(loaded.predict(&x, 32).unwrap(), expected);
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.completed_epochs(), 3);
    assert_eq!(loaded.loss(), model.loss());
    assert_eq!(loaded.metrics(), model.metrics());
    let (original, restored) = (model.optimizer().unwrap(), loaded.optimizer().unwrap());
    assert_eq!(restored.config(), original.config());
    assert_eq!(restored.state(), original.state());
    assert_eq!(loaded.rng().state(), model.rng().state());

    let weights = dir.path().join("weights.safetensors");
    model.save_weights(&weights).unwrap();
    let mut rebuilt = Sequential::load(&weights).unwrap();
    assert_eq!(rebuilt.predict(&x, 32).unwrap(), expected);
    assert!(
        rebuilt.optimizer().is_none(),
        "a weights file holds no optimizer"
    );

    let mut fresh = classifier(8);
    fresh.load_weights(&weights).unwrap();
    assert_eq!(fresh.predict(&x, 32).unwrap(), expected);
    let mut from_full = classifier(8);
    from_full.load_weights(&full).unwrap();
    assert_eq!(from_full.predict(&x, 32).unwrap(), expected);
}

#[test]
fn other_architecture_names_layer_and_shapes() {
    let mut model = compiled_classifier(8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save_weights(&path).unwrap();

    let mut wider = classifier(16);
    wider.build().unwrap();
    let before = bits(&wider);
    let error = wider.load_weights(&path).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrainError::CheckpointMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("`dense/kernel`"), "{message}");
    assert!(message.contains("[6, 8]"), "{message}");
    assert!(message.contains("[6, 16]"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
    assert_eq!(bits(&wider), before, "a failed load changes nothing");

    let mut deeper = Sequential::new([6])
        .add(Dense::new(8).activation(Activation::Relu))
        .add(Dense::new(3))
        .add(Dense::new(3));
    let message = deeper.load_weights(&path).unwrap_err().to_string();
    assert!(message.contains("no tensor `dense_2/kernel`"), "{message}");

    let mut shallower = Sequential::new([6]).add(Dense::new(8));
    let message = shallower.load_weights(&path).unwrap_err().to_string();
    assert!(
        message.contains("contains weight `dense_1/kernel`"),
        "{message}"
    );

    model
        .fit(&data().0, &data().1, &options(1), &mut [])
        .unwrap();
    let full = dir.path().join("full.safetensors");
    model.save(&full).unwrap();
    let mut sgd = classifier(8);
    sgd.compile(Sgd::new(0.1), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [])
        .unwrap();
    let mut backup = grit::train::callbacks::BackupAndRestore::new(dir.path().join("backup"));
    std::fs::create_dir_all(dir.path().join("backup")).unwrap();
    std::fs::copy(&full, backup.backup_path()).unwrap();
    let (x, y) = data();
    let message = sgd
        .fit(&x, &y, &options(2), &mut [&mut backup])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("optimizer `Adam`") && message.contains("`SGD`"),
        "{message}"
    );
}

/// Saves a small model's weights and returns the file's bytes.
fn saved_bytes(path: &Path) -> Vec<u8> {
    let mut model = compiled_classifier(4);
    model.build().unwrap();
    model.save(path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = saved_bytes(&path);
    for length in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..length]).unwrap();
        let message = Sequential::load(&path).unwrap_err().to_string();
        assert!(
            message.contains("truncated or corrupt"),
            "cut to {length}: {message}"
        );
        let mut model = classifier(4);
        assert!(model.load_weights(&path).is_err(), "cut to {length}");
    }
}

#[test]
fn flipped_byte_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = saved_bytes(&path);
    // One position in the length prefix, the JSON header, and the first and last tensor bytes.
    let header_length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for position in [
        0,
        40,
        8 + header_length / 2,
        8 + header_length,
        bytes.len() - 1,
    ] {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0x10;
        std::fs::write(&path, &corrupt).unwrap();
        let error = Sequential::load(&path).unwrap_err();
        assert!(
            matches!(error, TrainError::Checkpoint { .. }),
            "byte {position}: {error}"
        );
    }
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    std::fs::write(&path, &corrupt).unwrap();
    let message = Sequential::load(&path).unwrap_err().to_string();
    assert!(message.contains("checksum does not match"), "{message}");
}

#[test]
fn missing_file_names_path() {
    let message = Sequential::load("no/such/model.safetensors")
        .unwrap_err()
        .to_string();
    assert!(message.contains("no/such/model.safetensors"), "{message}");
}

/// A run of 6 epochs equals 3 epochs, a full save, a load and 3 more epochs with
/// `initial_epoch(3)`: data order, optimizer moments and the schedule all continue.
#[test]
fn initial_epoch_continues_loaded_run() {
    let (x, y) = data();
    let mut uninterrupted = compiled_classifier(8);
    uninterrupted.fit(&x, &y, &options(6), &mut []).unwrap();

    let mut first = compiled_classifier(8);
    first.fit(&x, &y, &options(3), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epoch3.safetensors");
    first.save(&path).unwrap();
    drop(first);

    let mut resumed = Sequential::load(&path).unwrap();
    let checkpoint = Checkpoint::read(&path).unwrap();
    assert_eq!(checkpoint.kind(), CheckpointKind::Full);
    assert_eq!(checkpoint.global_step(), Some(3 * 5));
    let epoch = resumed.completed_epochs();
    assert_eq!(epoch, 3);
    let history = resumed
        .fit(&x, &y, &options(6).initial_epoch(epoch), &mut [])
        .unwrap();
    assert_eq!(history.epochs(), [3, 4, 5]);
    assert_eq!(
        resumed.optimizer().unwrap().iterations(),
        uninterrupted.optimizer().unwrap().iterations()
    );
    assert_eq!(bits(&resumed), bits(&uninterrupted));
}

#[test]
fn unbuilt_model_cannot_be_saved() {
    let model = classifier(4);
    let dir = tempfile::tempdir().unwrap();
    let message = model
        .save(dir.path().join("model.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("call `build` or `compile`"), "{message}");
}

/// Trains `build()` for 4 epochs straight, and again for 2 epochs that are saved, loaded and
/// continued for 2 more. Asserts that the loaded model predicts as the saved one and ends
/// with the uninterrupted run's weights, and returns the checkpoint for further checks.
fn assert_resume_matches_uninterrupted(
    build: impl Fn() -> Sequential,
    x: &ndarray::Array4<f32>,
    y: &Array1<u8>,
) -> Checkpoint {
    let options = |epochs| FitOptions::new().epochs(epochs).batch_size(8).verbose(0);
    let mut uninterrupted = build();
    uninterrupted.fit(x, y, &options(4), &mut []).unwrap();

    let mut first = build();
    first.fit(x, y, &options(2), &mut []).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    first.save(&path).unwrap();

    let mut loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.predict(x, 5).unwrap(), first.predict(x, 5).unwrap());
    loaded
        .fit(x, y, &options(4).initial_epoch(2), &mut [])
        .unwrap();
    assert_eq!(bits(&loaded), bits(&uninterrupted));
    Checkpoint::read(&path).unwrap()
}

/// A convolutional model with batch normalization and dropout: Keras's weight names and
/// layouts, a full round trip, and a continued run that matches an uninterrupted one.
#[test]
fn convolutional_model_round_trip() {
    let x = ndarray::Array4::from_shape_fn((24, 6, 6, 1), |(i, r, c, _)| {
        ((i * 3 + r * 5 + c * 7) % 10) as f32 / 10.0
    });
    let y = Array1::from_shape_fn(24, |i| (i % 3) as u8);
    let build = || {
        let mut model = Sequential::new([6, 6, 1])
            .seed(8)
            .add(Conv2D::new(2, (3, 3)).activation(Activation::Relu))
            .add(BatchNormalization::new())
            .add(MaxPooling2D::new())
            .add(Flatten::new())
            .add(Dropout::new(0.2))
            .add(Dense::new(3).activation(Activation::Softmax));
        model
            .compile(
                Adam::new(0.01),
                Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
                [Metric::Accuracy],
            )
            .unwrap();
        model
    };
    let checkpoint = assert_resume_matches_uninterrupted(build, &x, &y);
    let shapes: Vec<(&str, &[usize])> = checkpoint
        .weight_names()
        .iter()
        .map(|name| (name.as_str(), checkpoint.tensors()[name].shape()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("conv2d/kernel", &[3, 3, 1, 2][..]),
            ("conv2d/bias", &[2][..]),
            ("batch_normalization/gamma", &[2][..]),
            ("batch_normalization/beta", &[2][..]),
            ("batch_normalization/moving_mean", &[2][..]),
            ("batch_normalization/moving_variance", &[2][..]),
            ("dense/kernel", &[8, 3][..]),
            ("dense/bias", &[3][..]),
        ]
    );
}

/// A convolution that computes the pooling after it: a model loaded from a checkpoint pools
/// inside its convolution again and continues as the uninterrupted run does.
#[test]
fn pooling_convolution_resumes_exactly() {
    let x = ndarray::Array4::from_shape_fn((24, 8, 8, 1), |(i, r, c, _)| {
        ((i * 7 + r * 3 + c * 5) % 11) as f32 / 11.0
    });
    let y = Array1::from_shape_fn(24, |i| (i % 3) as u8);
    let build = || {
        let mut model = Sequential::new([8, 8, 1])
            .seed(5)
            .add(Conv2D::new(3, (3, 3)).activation(Activation::Relu))
            .add(MaxPooling2D::new())
            .add(Flatten::new())
            .add(Dropout::new(0.2))
            .add(Dense::new(3).activation(Activation::Softmax));
        model
            .compile(Adam::new(0.01), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [])
            .unwrap();
        model
    };
    let checkpoint = assert_resume_matches_uninterrupted(build, &x, &y);
    assert_eq!(checkpoint.weight_names().len(), 4);
}
