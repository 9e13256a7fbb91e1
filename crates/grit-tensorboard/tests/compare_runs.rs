//! A schedule comparison that gives each run a TensorBoard callback with `.run_name(run)`:
//! every run writes its own subfolder of one log directory, with its own learning-rate curve.

use std::fs;
use std::path::{Path, PathBuf};

use grit_optim::LearningRate;
use grit_optim::schedules::{ExponentialDecay, StepDecay};
use grit_tensorboard::proto::event;
use grit_tensorboard::proto::summary::value;
use grit_tensorboard::{TRAIN_DIR, TensorBoard, VALIDATION_DIR, read_events};
use grit_train::compare::{ScheduleComparison, ScheduleRun};
use grit_train::prelude::*;
use ndarray::Array2;

fn line_data() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((20, 1), |(i, _)| i as f32 / 20.0);
    let y = x.mapv(|v| 2.0 * v + 1.0);
    (x, y)
}

fn build_line(learning_rate: LearningRate) -> grit_train::Result<Sequential> {
    let mut model = Sequential::new([1]).seed(3).add(Dense::new(1));
    model.compile(Sgd::new(learning_rate), Loss::MeanSquaredError, [])?;
    Ok(model)
}

/// Returns the only event file in `dir`.
fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("failed to list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("tfevents"))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "event files in {}: {files:?}",
        dir.display()
    );
    files[0].clone()
}

/// Returns the `(step, value)` points of the scalar `tag` in the event file of `dir`.
fn scalar_points(dir: &Path, tag: &str) -> Vec<(i64, f32)> {
    let mut points = Vec::new();
    for event in read_events(event_file(dir)).unwrap() {
        let Some(event::What::Summary(summary)) = event.what else {
            continue;
        };
        for summary_value in summary.value.iter().filter(|v| v.tag == tag) {
            let Some(value::Value::Tensor(tensor)) = &summary_value.value else {
                panic!("tag {tag} has no tensor");
            };
            points.push((event.step, tensor.float_val[0]));
        }
    }
    points
}

#[test]
fn each_run_writes_own_folder() {
    let (x, y) = line_data();
    let logs = tempfile::tempdir().unwrap();
    let runs = [
        ScheduleRun::per_step("exponential", ExponentialDecay::new(0.1, 5, 0.5).unwrap()),
        ScheduleRun::per_epoch("step decay", StepDecay::at(0.1, 0.1, [2]).unwrap()),
    ];
    let report = ScheduleComparison::new(runs)
        .callbacks(|run| {
            let tensorboard = TensorBoard::new(logs.path()).run_name(run);
            vec![Box::new(tensorboard) as Box<dyn Callback>]
        })
        .run(build_line, &x, &y, || {
            FitOptions::new()
                .epochs(3)
                .batch_size(5)
                .validation_split(0.25)
                .verbose(0)
        })
        .unwrap();

    for run in &report.runs {
        let run_dir = logs.path().join(&run.name);
        let train = run_dir.join(TRAIN_DIR);
        event_file(&run_dir.join(VALIDATION_DIR));
        let rates = scalar_points(&train, "epoch_learning_rate");
        let expected: Vec<(i64, f32)> = run
            .history
            .values("learning_rate")
            .iter()
            .enumerate()
            .map(|(epoch, &rate)| (epoch as i64, rate as f32))
            .collect();
        assert_eq!(rates.len(), 3, "{:?}", run.name);
        assert_eq!(rates, expected, "learning rates of {:?}", run.name);
    }
    let exponential = scalar_points(
        &logs.path().join("exponential").join(TRAIN_DIR),
        "epoch_learning_rate",
    );
    let step_decay = scalar_points(
        &logs.path().join("step decay").join(TRAIN_DIR),
        "epoch_learning_rate",
    );
    assert_ne!(
        exponential, step_decay,
        "each folder has its own run's curve"
    );
}
