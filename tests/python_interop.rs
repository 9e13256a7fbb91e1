//! Interoperability: a checkpoint of the MNIST MLP opens with Python's `safetensors` and
//! `numpy` (the workspace's `.venv`, which `scripts/test.sh` creates), with the documented
//! names, shapes and metadata, and a numpy forward pass over its weights gives grit's
//! predictions. `scripts/check_checkpoint.py` does the Python side.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use grit::prelude::*;
use ndarray::{Array1, s};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-5;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns `.venv/bin/python`, failing with the setup command when it is missing.
fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh, which creates the virtual environment with \
         safetensors and numpy from scripts/requirements.txt",
        python.display()
    );
    python
}

fn mnist() -> Mnist {
    let dir = std::env::var_os("GRIT_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("datasets"))
        .join("mnist");
    Mnist::load(dir)
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"))
}

/// Builds the 784-128-10 MLP and trains it for one epoch on 2000 images.
fn trained_mlp(data: &Mnist) -> Sequential {
    let mut model = Sequential::new([28, 28])
        .seed(42)
        .add(Flatten::new())
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let x = data.train_images.take(2000);
    let y: Array1<u8> = data.train_labels.slice(s![..2000]).to_owned();
    let options = FitOptions::new().epochs(1).batch_size(100).verbose(0);
    model.fit(&x, &y, &options, &mut []).unwrap();
    model
}

/// Writes the expectations file for `scripts/check_checkpoint.py`.
fn write_expectations(
    path: &Path,
    metadata: Value,
    tensors: Value,
    data: &Mnist,
    model: &mut Sequential,
) {
    let images = data.test_images.take(16);
    let predictions = model.predict(&images, 8).unwrap();
    let inputs = images.to_f32();
    let rows = |values: Vec<f32>, width: usize| -> Vec<Vec<f32>> {
        values.chunks(width).map(|row| row.to_vec()).collect()
    };
    let expectations = json!({
        "metadata": metadata,
        "metadata_keys": ["format", "format_version", "grit_version", "kind", "model_config",
                          "weight_names", "sha256"],
        "tensors": tensors,
        "inputs": rows(inputs.iter().copied().collect(), 784),
        "predictions": rows(predictions.iter().copied().collect(), 10),
        "tolerance": TOLERANCE,
    });
    std::fs::write(path, expectations.to_string()).unwrap();
}

fn run_checker(checkpoint: &Path, expectations: &Path) -> Output {
    let script = workspace_root().join("scripts/check_checkpoint.py");
    Command::new(venv_python())
        .arg(&script)
        .arg(checkpoint)
        .arg(expectations)
        .output()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", script.display()))
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn numpy_reads_mnist_checkpoint() {
    let data = mnist();
    let mut model = trained_mlp(&data);
    let dir = tempfile::tempdir().unwrap();

    let weights = json!({
        "dense/kernel": [784, 128],
        "dense/bias": [128],
        "dense_1/kernel": [128, 10],
        "dense_1/bias": [10],
    });
    let mut full_tensors = weights.clone();
    for slot in ["m", "v"] {
        for (index, shape) in [vec![784, 128], vec![128], vec![128, 10], vec![10]]
            .into_iter()
            .enumerate()
        {
            full_tensors[format!("optimizer/{slot}/{index}")] = json!(shape);
        }
    }

    let full = dir.path().join("mnist.safetensors");
    model.save(&full).unwrap();
    let expectations = dir.path().join("full.json");
    let metadata = json!({"format": "grit.checkpoint", "format_version": "1", "kind": "full",
                          "epoch": "1", "global_step": "20"});
    write_expectations(&expectations, metadata, full_tensors, &data, &mut model);
    let output = run_checker(&full, &expectations);
    assert!(output.status.success(), "{}", describe(&output));
    print!("{}", String::from_utf8_lossy(&output.stdout));

    let weights_only = dir.path().join("mnist.weights.safetensors");
    model.save_weights(&weights_only).unwrap();
    let expectations = dir.path().join("weights.json");
    let metadata = json!({"format": "grit.checkpoint", "format_version": "1", "kind": "weights"});
    write_expectations(&expectations, metadata, weights, &data, &mut model);
    let output = run_checker(&weights_only, &expectations);
    assert!(output.status.success(), "{}", describe(&output));
}

/// The checker fails on predictions that differ by more than the tolerance and on a
/// damaged checksum, so a passing run means something.
#[test]
fn checker_reports_mismatches() {
    let data = mnist();
    let mut model = trained_mlp(&data);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnist.weights.safetensors");
    model.save_weights(&path).unwrap();
    let tensors = json!({"dense/kernel": [784, 128], "dense/bias": [128],
                         "dense_1/kernel": [128, 10], "dense_1/bias": [10]});
    let expectations = dir.path().join("weights.json");
    write_expectations(
        &expectations,
        json!({"kind": "weights"}),
        tensors,
        &data,
        &mut model,
    );

    let mut shifted: Value =
        serde_json::from_str(&std::fs::read_to_string(&expectations).unwrap()).unwrap();
    let first = shifted["predictions"][0][0].as_f64().unwrap();
    shifted["predictions"][0][0] = json!(first + 1e-3);
    let shifted_path = dir.path().join("shifted.json");
    std::fs::write(&shifted_path, shifted.to_string()).unwrap();
    let output = run_checker(&path, &shifted_path);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("predictions differ"),
        "{}",
        describe(&output)
    );

    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let output = run_checker(&path, &expectations);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("sha256"),
        "{}",
        describe(&output)
    );
}
