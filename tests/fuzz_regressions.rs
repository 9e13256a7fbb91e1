//! Replays the fuzz seed corpus (`fuzz/corpus/<target>/`) and the saved failure inputs
//! (`fuzz/regressions/<target>/`) through the entry points that the fuzz targets call, so the
//! normal test suite catches a parser that panics on any of them.
//!
//! A file whose name starts with `valid-` must be accepted and one starting with `invalid-`
//! must be rejected with an error. Any other file, such as an input the fuzzer added to the
//! corpus, must only not panic. `docs/reliability.md` describes the targets.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod fuzz_entry;

use fuzz_entry::Outcome;

/// Replays every input of `target`, checks each against its name and returns the number of
/// inputs that must be accepted and rejected.
fn replay(target: &str, entry: fn(&[u8]) -> Outcome) -> (usize, usize) {
    let mut accepted = 0;
    let mut rejected = 0;
    let mut failures = Vec::new();
    for path in inputs(target) {
        let data = std::fs::read(&path).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| entry(&data)));
        let name = path.display();
        match (outcome, expected_outcome(&path)) {
            (Err(_), _) => failures.push(format!("{name}: panicked")),
            (Ok(Err(error)), Some(true)) => {
                failures.push(format!("{name}: rejected, expected accepted: {error}"));
            }
            (Ok(Ok(())), Some(false)) => {
                failures.push(format!("{name}: accepted, expected an error"));
            }
            (Ok(_), Some(true)) => accepted += 1,
            (Ok(_), Some(false)) => rejected += 1,
            (Ok(_), None) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (accepted, rejected)
}

/// Lists the files of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`. The
/// regressions folder is absent while no fault was found.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut paths = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
}

/// Returns `Some(true)` for a `valid-…` file, `Some(false)` for an `invalid-…` one and `None`
/// for other names.
fn expected_outcome(path: &Path) -> Option<bool> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("valid-") {
        Some(true)
    } else if name.starts_with("invalid-") {
        Some(false)
    } else {
        None
    }
}

#[test]
fn idx_inputs_replay() {
    let (accepted, rejected) = replay("idx", fuzz_entry::idx);
    assert!(accepted >= 4, "only {accepted} valid IDX seeds");
    assert!(rejected >= 3, "only {rejected} invalid IDX seeds");
}

#[test]
fn checkpoint_inputs_replay() {
    let (accepted, rejected) = replay("checkpoint", fuzz_entry::checkpoint);
    assert!(accepted >= 4, "only {accepted} valid checkpoint seeds");
    assert!(rejected >= 4, "only {rejected} invalid checkpoint seeds");
}

#[test]
fn model_config_inputs_replay() {
    let (accepted, rejected) = replay("model_config", fuzz_entry::model_config);
    assert!(accepted >= 5, "only {accepted} valid config seeds");
    assert!(rejected >= 2, "only {rejected} invalid config seeds");
}

/// Writes the seed corpus under `fuzz/corpus/`. Run it after a change to a file format
/// with `cargo test --release --test fuzz_regressions -- --ignored`, and commit the files.
#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn regenerate_seed_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    write_idx_seeds(&corpus.join("idx"));
    write_checkpoint_seeds(&corpus.join("checkpoint"));
    write_model_config_seeds(&corpus.join("model_config"));
}

/// Writes `data` after the fuzz input's mode byte.
fn write_seed(folder: &Path, name: &str, mode: u8, data: &[u8]) {
    std::fs::create_dir_all(folder).unwrap();
    let mut bytes = vec![mode];
    bytes.extend_from_slice(data);
    std::fs::write(folder.join(name), bytes).unwrap();
}

fn idx_header(dtype: u8, dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, dtype, dims.len() as u8];
    for dim in dims {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write_idx_seeds(folder: &Path) {
    // Modes: 0 passes the bytes as they are, 1 gzip-compresses them first.
    let mut u8_raw = idx_header(0x08, &[2, 3]);
    u8_raw.extend_from_slice(&[0, 1, 2, 127, 128, 255]);
    write_seed(folder, "valid-u8-raw", 0, &u8_raw);
    write_seed(folder, "valid-u8-gzip-file", 0, &gzip(&u8_raw));
    let mut f32_raw = idx_header(0x0D, &[2]);
    f32_raw.extend_from_slice(&1.5f32.to_be_bytes());
    f32_raw.extend_from_slice(&(-2.0f32).to_be_bytes());
    write_seed(folder, "valid-f32-wrapped", 1, &f32_raw);
    write_seed(
        folder,
        "valid-i16-empty-axis",
        0,
        &idx_header(0x0B, &[0, 4]),
    );

    // 65536 · 65536 = 2^32 one-byte images declared, 3 bytes present.
    let mut huge_claim = idx_header(0x08, &[65536, 65536]);
    huge_claim.extend_from_slice(&[1, 2, 3]);
    write_seed(folder, "invalid-huge-claim", 0, &huge_claim);
    write_seed(folder, "invalid-huge-claim-wrapped", 1, &huge_claim);
    let compressed = gzip(&u8_raw);
    write_seed(
        folder,
        "invalid-gzip-cut",
        0,
        &compressed[..compressed.len() / 2],
    );
    write_seed(
        folder,
        "invalid-trailing-byte",
        0,
        &[u8_raw.as_slice(), &[9]].concat(),
    );
}

fn write_checkpoint_seeds(folder: &Path) {
    use grit::data::xor;
    use grit::train::prelude::*;

    let dir = tempfile::tempdir().unwrap();
    let (x, y) = xor();
    let mut full = Sequential::new([2])
        .seed(3)
        .add(Dense::new(3).activation(Activation::Tanh))
        .add(Dense::new(1).activation(Activation::Sigmoid));
    full.compile(
        Adam::new(0.05),
        Loss::BINARY_CROSSENTROPY,
        [Metric::Accuracy],
    )
    .unwrap();
    let options = FitOptions::new().epochs(1).batch_size(2).verbose(0);
    full.fit(&x, &y, &options, &mut []).unwrap();
    full.save(dir.path().join("full.safetensors")).unwrap();
    let full_bytes = std::fs::read(dir.path().join("full.safetensors")).unwrap();
    write_seed(folder, "valid-full", 0, &full_bytes);

    let mut weights = Sequential::new([4, 4])
        .seed(4)
        .add(Reshape::new([4, 4, 1]))
        .add(Conv2D::new(2, (3, 3)))
        .add(Flatten::new())
        .add(Dense::new(2));
    weights.build().unwrap();
    weights
        .save_weights(dir.path().join("weights.safetensors"))
        .unwrap();
    let weights_bytes = std::fs::read(dir.path().join("weights.safetensors")).unwrap();
    write_seed(folder, "valid-weights", 0, &weights_bytes);

    // Mode 2 edits the full checkpoint and signs it again, mode 5 does so for the weights-only
    // checkpoint. Without edits, the result must load.
    write_seed(folder, "valid-resigned-full", 2, &[]);
    write_seed(folder, "valid-resigned-weights", 5, &[]);

    // Mode 1 patches the full checkpoint in 3-byte groups: a big-endian offset and a byte.
    let last = full_bytes.len() - 1;
    let offset = u16::try_from(last).unwrap().to_be_bytes();
    let flipped = full_bytes[last] ^ 0xFF;
    write_seed(
        folder,
        "invalid-checksum",
        1,
        &[offset[0], offset[1], flipped],
    );
    let half = u16::try_from(full_bytes.len() / 2).unwrap().to_be_bytes();
    write_seed(folder, "invalid-truncated", 1, &half);

    // An edit is an op byte and its argument. Op 4·k sets metadata key k: 3 is `kind`, 4 is
    // `model_config`.
    write_seed(folder, "invalid-unknown-kind", 2, b"\x0cnonsense");
    let mut huge_dense = full.config();
    huge_dense["config"]["layers"][0]["config"]["units"] = serde_json::json!(1_000_000_000_000u64);
    let huge_dense = huge_dense.to_string();
    write_seed(
        folder,
        "invalid-dense-10e12-units",
        2,
        &[b"\x10".as_slice(), huge_dense.as_bytes()].concat(),
    );
}

fn write_model_config_seeds(folder: &Path) {
    use grit::optim::schedules::{
        Constant, CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay,
        LinearWarmup, OneCycle, PiecewiseConstantDecay, PolynomialDecay, StepDecay,
    };
    use grit::optim::{LearningRateSchedule, Optimizer};
    use grit::train::prelude::*;

    let write_json = |name: &str, value: &serde_json::Value| {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(folder.join(name), value.to_string()).unwrap();
    };
    let dense = Sequential::new([2, 3])
        .add(Flatten::new())
        .add(Dense::new(4).activation(Activation::Relu))
        .add(Dropout::new(0.25))
        .add(Dense::new(2).activation(Activation::Softmax));
    write_json("valid-dense.json", &dense.config());
    let conv = Sequential::new([6, 6, 1])
        .add(Conv2D::new(2, (3, 3)).padding(Padding::Same))
        .add(BatchNormalization::new())
        .add(MaxPooling2D::new().pool_size((2, 2)))
        .add(AveragePooling2D::new().pool_size((1, 1)))
        .add(GlobalAveragePooling2D::new())
        .add(Dense::new(3));
    write_json("valid-conv.json", &conv.config());
    write_json("valid-adam.json", &Adam::new(1e-3).config());
    let sgd = Sgd::new(ExponentialDecay::new(0.1, 10, 0.5).unwrap())
        .momentum(0.9)
        .nesterov(true);
    write_json("valid-sgd-scheduled.json", &sgd.config());

    let schedules: Vec<Box<dyn LearningRateSchedule>> = vec![
        Box::new(Constant::new(0.01).unwrap()),
        Box::new(CosineDecay::new(0.1, 100).unwrap().warmup(0.2, 10).unwrap()),
        Box::new(CosineDecayRestarts::new(0.1, 20).unwrap()),
        Box::new(InverseTimeDecay::new(0.1, 10, 0.5).unwrap()),
        Box::new(LinearWarmup::new(PolynomialDecay::new(0.1, 50).unwrap(), 5, 0.0).unwrap()),
        Box::new(OneCycle::new(0.1, 100).unwrap()),
        Box::new(PiecewiseConstantDecay::new(vec![10, 20], vec![0.1, 0.01, 0.001]).unwrap()),
        Box::new(StepDecay::at(0.1, 0.5, [5, 15]).unwrap()),
        Box::new(StepDecay::every(0.1, 0.5, 10).unwrap()),
    ];
    for (index, schedule) in schedules.iter().enumerate() {
        let config = serde_json::json!({"schedule": schedule.name(), "config": schedule.config()});
        let name = schedule.name();
        write_json(&format!("valid-schedule-{index}-{name}.json"), &config);
    }

    write_json("valid-dense-layer.json", &Dense::new(5).config());
    write_json("valid-conv2d-layer.json", &Conv2D::new(2, (3, 3)).config());
    write_json("valid-reshape-layer.json", &Reshape::new([-1, 2]).config());
    let activation = ActivationLayer::new(Activation::Softmax);
    write_json("valid-activation-layer.json", &activation.config());

    let mut huge = dense.config();
    huge["config"]["layers"][1]["config"]["units"] = serde_json::json!(1_000_000_000_000u64);
    write_json("invalid-dense-10e12-units.json", &huge);
    std::fs::write(folder.join("invalid-not-json"), b"{\"class_name\": ").unwrap();
}
