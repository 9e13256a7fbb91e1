//! The progress display writes plain lines, without control characters, when standard
//! output is not a terminal.

use std::process::Command;

use grit::prelude::*;

const CHILD: &str = "GRIT_PROGRESS_CHILD";

/// Runs the test `name` of this binary in a child process with `role` set in its environment
/// and its output piped (so not a terminal), and returns what it printed.
fn run_in_child(name: &str, role: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(role, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs in two roles: the parent re-runs this test in a child process with its output piped
/// (so not a terminal) and checks what the child printed; the child trains with verbose 1.
#[test]
fn progress_without_terminal_is_plain() {
    if std::env::var_os(CHILD).is_some() {
        let (x, y) = grit::data::xor();
        let mut model = Sequential::new([2]).add(Dense::new(1).activation(Activation::Sigmoid));
        model
            .compile(Sgd::new(0.1), Loss::BINARY_CROSSENTROPY, [Metric::Accuracy])
            .unwrap();
        let mut scheduler = LearningRateScheduler::new(|_, rate| rate).verbose(1);
        let options = FitOptions::new()
            .epochs(2)
            .batch_size(2)
            .validation_split(0.5);
        model.fit(&x, &y, &options, &mut [&mut scheduler]).unwrap();
        return;
    }
    let stdout = run_in_child("progress_without_terminal_is_plain", CHILD);
    assert!(
        !stdout.chars().any(|c| c == '\u{1b}' || c == '\r'),
        "control characters in {stdout:?}"
    );
    let epoch_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Epoch ") && l.contains(" - "))
        .collect();
    assert_eq!(epoch_lines.len(), 2, "{stdout}");
    assert!(epoch_lines[0].starts_with("Epoch 1/2 - "), "{stdout}");
    for key in [
        "accuracy: ",
        "learning_rate: ",
        "loss: ",
        "val_accuracy: ",
        "val_loss: ",
    ] {
        assert!(
            epoch_lines[1].contains(key),
            "missing {key} in {}",
            epoch_lines[1]
        );
    }
    assert!(
        stdout.contains("Epoch 1: LearningRateScheduler setting learning rate to 0.1."),
        "{stdout}"
    );
}

const QUIET_CHILD: &str = "GRIT_QUIET_CHILD";
const FIT_BEGINS: &str = "-- fit begins --";
const FIT_ENDS: &str = "-- fit ends --";

/// With `verbose(0)` and callbacks at their default verbosity, a run that EarlyStopping ends
/// on a NaN loss prints nothing. The parent runs this test again in a child process and
/// reads what the child printed.
#[test]
fn quiet_early_stop_prints_nothing() {
    if std::env::var_os(QUIET_CHILD).is_some() {
        let x = ndarray::array![[f32::NAN], [1.0]];
        let y = ndarray::array![[0.0f32], [1.0]];
        let mut model = Sequential::new([1]).add(Dense::new(1));
        model
            .compile(Sgd::new(0.1), Loss::MeanSquaredError, [])
            .unwrap();
        let mut stop = EarlyStopping::new("loss");
        let options = FitOptions::new().epochs(3).batch_size(2).verbose(0);
        println!("{FIT_BEGINS}");
        let history = model.fit(&x, &y, &options, &mut [&mut stop]).unwrap();
        println!("{FIT_ENDS}");
        assert_eq!(history.values("loss").len(), 1);
        assert!(history.values("loss")[0].is_nan());
        return;
    }
    let stdout = run_in_child("quiet_early_stop_prints_nothing", QUIET_CHILD);
    let start = stdout
        .find(FIT_BEGINS)
        .expect("the child prints a line before fit");
    let end = stdout
        .find(FIT_ENDS)
        .expect("the child prints a line after fit");
    let printed = stdout[start + FIT_BEGINS.len()..end].trim();
    assert!(printed.is_empty(), "fit printed {printed:?}");
}
