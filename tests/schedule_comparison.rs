//! Schedule comparisons on a fixed MNIST subset: decays against a constant rate that is too
//! high, the ranking against each run's History, identical runs, per-run callbacks, and the
//! errors that name the offending run or setting.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use grit::optim::LearningRate;
use grit::prelude::*;
use grit::train::callbacks::Weights;
use grit::train::compare::{
    CompareError, ComparisonReport, RunReport, ScheduleComparison, SchedulePer, ScheduleRun,
    compare_schedules,
};
use ndarray::{Array1, s};

/// Training samples: the first 2000 MNIST training images.
const TRAIN_SAMPLES: usize = 2000;
/// Validation samples: the first 1000 MNIST test images.
const VALIDATION_SAMPLES: usize = 1000;
const BATCH_SIZE: usize = 32;
const EPOCHS: usize = 6;
/// Plain SGD at this rate oscillates on this model: the loss stops falling.
const HIGH_RATE: f32 = 1.0;

struct Subset {
    x: ScaledU8,
    y: Array1<u8>,
    validation_x: ScaledU8,
    validation_y: Array1<u8>,
}

fn mnist_dir() -> PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

fn subset() -> &'static Subset {
    static SUBSET: OnceLock<Subset> = OnceLock::new();
    SUBSET.get_or_init(|| {
        let data = Mnist::load(mnist_dir())
            .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
        Subset {
            x: data.train_images.take(TRAIN_SAMPLES),
            y: data.train_labels.slice(s![..TRAIN_SAMPLES]).to_owned(),
            validation_x: data.test_images.take(VALIDATION_SAMPLES),
            validation_y: data.test_labels.slice(s![..VALIDATION_SAMPLES]).to_owned(),
        }
    })
}

fn steps_per_epoch() -> u64 {
    TRAIN_SAMPLES.div_ceil(BATCH_SIZE) as u64
}

/// Builds a 784-64-10 network with plain SGD at `learning_rate`.
fn build_mlp(learning_rate: LearningRate) -> grit::train::Result<Sequential> {
    let mut model = Sequential::new([28, 28])
        .seed(1)
        .add(Flatten::new())
        .add(Dense::new(64).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model.compile(
        Sgd::new(learning_rate),
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        [Metric::Accuracy],
    )?;
    Ok(model)
}

fn fit_options(epochs: usize) -> FitOptions<'static> {
    let data = subset();
    FitOptions::new()
        .epochs(epochs)
        .batch_size(BATCH_SIZE)
        .validation_data(&data.validation_x, &data.validation_y)
        .validation_batch_size(500)
        .verbose(0)
}

/// Compares the constant rate, a per-epoch step decay and a per-step cosine decay, all starting
/// at [`HIGH_RATE`], once for all the tests that read the same report.
fn high_rate_report() -> &'static ComparisonReport {
    static REPORT: OnceLock<ComparisonReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let total_steps = steps_per_epoch() * EPOCHS as u64;
        let runs = [
            ScheduleRun::per_epoch("constant", Constant::new(HIGH_RATE).unwrap()),
            ScheduleRun::per_epoch("step decay", StepDecay::at(HIGH_RATE, 0.1, [2, 4]).unwrap()),
            ScheduleRun::per_step("cosine", CosineDecay::new(HIGH_RATE, total_steps).unwrap()),
        ];
        let data = subset();
        let report = ScheduleComparison::new(runs)
            .run(build_mlp, &data.x, &data.y, || fit_options(EPOCHS))
            .unwrap();
        println!("{}", report.to_markdown());
        for run in &report.runs {
            println!(
                "{:<10} val_loss by epoch {:?}",
                run.name,
                run.history.values("val_loss")
            );
        }
        report
    })
}

fn best_of(report: &ComparisonReport, name: &str) -> f64 {
    let run = report
        .run(name)
        .unwrap_or_else(|| panic!("no run named {name:?}"));
    run.best_value
        .unwrap_or_else(|| panic!("run {name:?} has no finite val_loss"))
}

#[test]
fn decays_beat_high_constant_rate() {
    let report = high_rate_report();
    let constant = best_of(report, "constant");
    let step = best_of(report, "step decay");
    let cosine = best_of(report, "cosine");
    println!("best val_loss: constant {constant:.4}, step decay {step:.4}, cosine {cosine:.4}");
    assert!(
        step < constant,
        "step decay {step} is not below constant {constant}"
    );
    assert!(
        cosine < constant,
        "cosine {cosine} is not below constant {constant}"
    );
    assert_eq!(
        report.runs.last().map(|run| run.name.as_str()),
        Some("constant")
    );
}

/// Returns the first epoch with the lowest finite value of `val_loss` in a run's History.
fn lowest_val_loss(run: &RunReport) -> Option<(f64, usize)> {
    let mut lowest: Option<(f64, usize)> = None;
    for (&epoch, logs) in run.history.epochs().iter().zip(run.history.logs()) {
        let value = logs["val_loss"];
        if value.is_finite() && lowest.is_none_or(|(best, _)| value < best) {
            lowest = Some((value, epoch));
        }
    }
    lowest
}

#[test]
fn ranking_matches_histories() {
    let report = high_rate_report();
    assert_eq!(report.monitor, "val_loss");
    assert_eq!(report.runs.len(), 3);
    for run in &report.runs {
        let (value, epoch) = lowest_val_loss(run).expect("a finite val_loss");
        assert_eq!(run.best_value, Some(value), "best value of {:?}", run.name);
        assert_eq!(run.best_epoch, Some(epoch), "best epoch of {:?}", run.name);
        assert_eq!(
            run.history.epochs(),
            (0..EPOCHS).collect::<Vec<_>>().as_slice()
        );
        let updates = steps_per_epoch() as usize * EPOCHS;
        assert_eq!(
            run.learning_rates.len(),
            updates,
            "updates of {:?}",
            run.name
        );
        assert_eq!(run.first_step, 0);
        assert_eq!(run.final_learning_rate, run.learning_rates.last().copied());
        let last_update = match run.per {
            SchedulePer::Step => updates as u64 - 1,
            SchedulePer::Epoch => EPOCHS as u64 - 1,
        };
        let expected_final = run.schedule.learning_rate(last_update);
        assert_eq!(
            run.final_learning_rate,
            Some(expected_final),
            "{:?}",
            run.name
        );
        // The logged rate is the optimizer's at epoch end: the rate of the next update.
        let logged = run.history.values("learning_rate");
        assert_eq!(logged.len(), EPOCHS, "{:?}", run.name);
        for (epoch, &rate) in logged.iter().enumerate() {
            let updates_so_far = steps_per_epoch() * (epoch as u64 + 1);
            let step = match run.per {
                SchedulePer::Step => updates_so_far,
                SchedulePer::Epoch => epoch as u64,
            };
            let expected = run.schedule.learning_rate(step);
            assert_eq!(
                rate as f32, expected,
                "{:?} logged for epoch {epoch}",
                run.name
            );
        }
        assert!(run.wall_time.as_secs_f64() > 0.0);
    }
    for pair in report.runs.windows(2) {
        assert!(
            pair[0].best_value <= pair[1].best_value,
            "{:?} ranks above {:?}",
            pair[0].name,
            pair[1].name
        );
    }
    assert_eq!(
        report.best().map(|run| run.name.as_str()),
        Some(report.runs[0].name.as_str())
    );

    let markdown = report.to_markdown();
    let rows: Vec<&str> = markdown.lines().skip(2).collect();
    assert_eq!(rows.len(), report.runs.len(), "{markdown}");
    for (rank, (row, run)) in rows.iter().zip(&report.runs).enumerate() {
        let expected_start = format!("| {} | {} | ", rank + 1, run.name);
        assert!(
            row.starts_with(&expected_start),
            "row {row:?} for {:?}",
            run.name
        );
    }
}

#[test]
fn per_epoch_rates_follow_epochs() {
    let report = high_rate_report();
    let run = report.run("step decay").unwrap();
    assert_eq!(run.per, SchedulePer::Epoch);
    let per_epoch = steps_per_epoch() as usize;
    for (epoch, rates) in run.learning_rates.chunks(per_epoch).enumerate() {
        let expected = HIGH_RATE
            * 0.1_f32.powi(match epoch {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            });
        for (batch, &rate) in rates.iter().enumerate() {
            let difference = (rate - expected).abs();
            assert!(
                difference <= 1e-6 * expected,
                "epoch {epoch} batch {batch}: rate {rate}, expected {expected}"
            );
        }
    }
}

#[test]
fn report_files_name_every_run() {
    let report = high_rate_report();
    let folder = tempfile::tempdir().unwrap();
    let markdown_path = folder.path().join("report.md");
    let svg_path = folder.path().join("chart.svg");
    report.write_markdown(&markdown_path).unwrap();
    report.write_svg(&svg_path).unwrap();
    let markdown = std::fs::read_to_string(&markdown_path).unwrap();
    assert_eq!(markdown, report.to_markdown());
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains("validation loss per epoch"));
    for (rank, run) in report.runs.iter().enumerate() {
        let legend = format!("{}. {}", rank + 1, run.name);
        assert!(
            svg.contains(&legend),
            "the chart has no legend entry {legend:?}"
        );
    }
    let files = std::fs::read_dir(folder.path()).unwrap().count();
    assert_eq!(files, 2, "temporary files are renamed away");
}

/// What the observer callback saw at the start of each run.
#[derive(Debug, Clone, PartialEq)]
struct FirstBatch {
    weights: Weights,
    loss: f64,
}

/// Records each run's weights at train begin and the loss of its first batch, which is computed
/// before the first update and so depends only on the initial weights and the batch order.
struct FirstBatchObserver<'a> {
    run: String,
    seen: &'a Mutex<BTreeMap<String, FirstBatch>>,
    weights: Option<Weights>,
}

impl Callback for FirstBatchObserver<'_> {
    fn on_train_begin(&mut self, ctx: &mut Context, _logs: &mut Logs) -> grit::train::Result<()> {
        self.weights = Some(ctx.weights());
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        _ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit::train::Result<()> {
        if batch == 0 && self.weights.is_some() {
            let first = FirstBatch {
                weights: self.weights.take().unwrap_or_default(),
                loss: logs["loss"],
            };
            self.seen.lock().unwrap().insert(self.run.clone(), first);
        }
        Ok(())
    }
}

fn small_options() -> FitOptions<'static> {
    FitOptions::new()
        .epochs(3)
        .batch_size(BATCH_SIZE)
        .validation_split(0.2)
        .verbose(0)
}

/// Two runs of each schedule, plus a differently scheduled run, on the first 640 samples.
fn fairness_runs() -> Vec<ScheduleRun> {
    let cosine = CosineDecay::new(0.3, 48).unwrap();
    let step = StepDecay::at(0.3, 0.5, [1]).unwrap();
    vec![
        ScheduleRun::per_step("cosine a", cosine),
        ScheduleRun::per_step("cosine b", cosine),
        ScheduleRun::per_epoch("step a", step.clone()),
        ScheduleRun::per_epoch("step b", step),
        ScheduleRun::per_epoch("constant", Constant::new(0.05).unwrap()),
    ]
}

#[test]
fn same_schedule_gives_identical_runs() {
    let data = subset();
    let x = data.x.take(640);
    let y: Array1<u8> = data.y.slice(s![..640]).to_owned();
    // Each call seeds differently, so only the comparison's copy of the first model's weights
    // and generator makes the runs start alike.
    let calls = AtomicU64::new(0);
    let build_varied = |learning_rate: LearningRate| {
        let mut model = Sequential::new([28, 28])
            .seed(100 + calls.fetch_add(1, Ordering::SeqCst))
            .add(Flatten::new())
            .add(Dense::new(32).activation(Activation::Relu))
            .add(Dense::new(10).activation(Activation::Softmax));
        model.compile(
            Sgd::new(learning_rate),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )?;
        Ok(model)
    };
    let seen = Mutex::new(BTreeMap::new());
    let compare = |threads: usize| {
        ScheduleComparison::new(fairness_runs())
            .max_threads(threads)
            .callbacks(|run| {
                let observer = FirstBatchObserver {
                    run: run.to_string(),
                    seen: &seen,
                    weights: None,
                };
                vec![Box::new(observer) as Box<dyn Callback + '_>]
            })
            .run(build_varied, &x, &y, small_options)
            .unwrap()
    };
    let parallel = compare(2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "one reference model and five runs"
    );
    let first_batches = std::mem::take(&mut *seen.lock().unwrap());
    // Restart the seeds, so the second comparison's reference model is the first one's.
    calls.store(0, Ordering::SeqCst);
    let sequential = compare(1);

    for (a, b) in [("cosine a", "cosine b"), ("step a", "step b")] {
        let run_a = parallel.run(a).unwrap();
        let run_b = parallel.run(b).unwrap();
        println!("{a}: val_loss {:?}", run_a.history.values("val_loss"));
        assert_eq!(run_a.history, run_b.history, "histories of {a:?} and {b:?}");
        assert_eq!(
            run_a.learning_rates, run_b.learning_rates,
            "rates of {a:?} and {b:?}"
        );
        assert_eq!(run_a.best_value, run_b.best_value);
        assert_eq!(run_a.best_epoch, run_b.best_epoch);
    }

    let reference = &first_batches["constant"];
    assert_eq!(first_batches.len(), 5);
    for (name, first) in &first_batches {
        assert_eq!(
            first.weights, reference.weights,
            "initial weights of {name:?}"
        );
        assert_eq!(first.loss, reference.loss, "first batch loss of {name:?}");
    }

    let names = |report: &ComparisonReport| -> Vec<String> {
        report.runs.iter().map(|run| run.name.clone()).collect()
    };
    assert_eq!(
        names(&parallel),
        names(&sequential),
        "ranking with 2 threads and 1"
    );
    for run in &parallel.runs {
        let alone = sequential.run(&run.name).unwrap();
        assert_eq!(
            run.history, alone.history,
            "{:?} with 2 threads and 1",
            run.name
        );
        assert_eq!(run.learning_rates, alone.learning_rates);
    }
}

#[test]
fn each_run_gets_own_csv_log() {
    let data = subset();
    let x = data.x.take(320);
    let y: Array1<u8> = data.y.slice(s![..320]).to_owned();
    let folder = tempfile::tempdir().unwrap();
    let runs = [
        ScheduleRun::per_step("exponential", ExponentialDecay::new(0.1, 10, 0.5).unwrap()),
        ScheduleRun::per_epoch("constant", Constant::new(0.1).unwrap()),
    ];
    let report = ScheduleComparison::new(runs)
        .callbacks(|run| {
            let path = folder.path().join(format!("{run}.csv"));
            vec![Box::new(CsvLogger::new(path)) as Box<dyn Callback>]
        })
        .run(build_mlp, &x, &y, small_options)
        .unwrap();
    for run in &report.runs {
        let csv = std::fs::read_to_string(folder.path().join(format!("{}.csv", run.name))).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "header and three epochs for {:?}: {csv}",
            run.name
        );
        assert!(
            lines[0].contains("learning_rate"),
            "{:?}: {}",
            run.name,
            lines[0]
        );
    }
}

#[test]
fn monitor_accuracy_ranks_highest_first() {
    let data = subset();
    let x = data.x.take(320);
    let y: Array1<u8> = data.y.slice(s![..320]).to_owned();
    let runs = [
        ScheduleRun::per_epoch("tiny", Constant::new(1e-4).unwrap()),
        ScheduleRun::per_epoch("useful", Constant::new(0.1).unwrap()),
    ];
    let report = ScheduleComparison::new(runs)
        .monitor("val_accuracy", Mode::Auto)
        .run(build_mlp, &x, &y, small_options)
        .unwrap();
    println!("{}", report.to_markdown());
    assert_eq!(report.direction, grit::nn::Direction::Max);
    let values: Vec<f64> = report
        .runs
        .iter()
        .filter_map(|run| run.best_value)
        .collect();
    assert_eq!(values.len(), 2);
    assert!(values[0] >= values[1], "{values:?}");
    assert_eq!(report.runs[0].name, "useful");
}

// ---- errors ----

fn tiny_data() -> (ndarray::Array2<f32>, ndarray::Array2<f32>) {
    let x = ndarray::Array2::from_shape_fn((16, 1), |(i, _)| i as f32 / 16.0);
    let y = x.mapv(|v| 2.0 * v + 1.0);
    (x, y)
}

fn build_line(learning_rate: LearningRate) -> grit::train::Result<Sequential> {
    let mut model = Sequential::new([1]).seed(3).add(Dense::new(1));
    model.compile(Sgd::new(learning_rate), Loss::MeanSquaredError, [])?;
    Ok(model)
}

fn tiny_options() -> FitOptions<'static> {
    FitOptions::new()
        .epochs(2)
        .batch_size(4)
        .validation_split(0.25)
        .verbose(0)
}

fn constant_run(name: &str) -> ScheduleRun {
    ScheduleRun::per_epoch(name, Constant::new(0.1).unwrap())
}

#[test]
fn compare_schedules_uses_defaults() {
    let (x, y) = tiny_data();
    let runs = [
        constant_run("constant"),
        ScheduleRun::per_step("decay", ExponentialDecay::new(0.1, 4, 0.5).unwrap()),
    ];
    let report = compare_schedules(build_line, &x, &y, tiny_options, runs).unwrap();
    assert_eq!(report.monitor, "val_loss");
    assert_eq!(report.direction, grit::nn::Direction::Min);
    assert_eq!(report.runs.len(), 2);
    for run in &report.runs {
        assert_eq!(run.history.values("val_loss").len(), 2, "{:?}", run.name);
        assert!(run.best_value.is_some(), "{:?}", run.name);
    }
}

#[test]
fn empty_comparison_is_rejected() {
    let (x, y) = tiny_data();
    let error = ScheduleComparison::new([])
        .run(build_line, &x, &y, tiny_options)
        .unwrap_err();
    assert!(matches!(error, CompareError::NoRuns), "{error}");
}

#[test]
fn duplicate_name_is_rejected() {
    let (x, y) = tiny_data();
    let runs = [
        constant_run("base"),
        constant_run("other"),
        constant_run("base"),
    ];
    let error = ScheduleComparison::new(runs)
        .run(build_line, &x, &y, tiny_options)
        .unwrap_err();
    assert!(
        matches!(&error, CompareError::DuplicateName(name) if name == "base"),
        "{error}"
    );
    assert!(error.to_string().contains("\"base\""), "{error}");
}

#[test]
fn blank_name_is_rejected() {
    let (x, y) = tiny_data();
    let error = ScheduleComparison::new([constant_run(" ")])
        .run(build_line, &x, &y, tiny_options)
        .unwrap_err();
    assert!(
        matches!(error, CompareError::InvalidRunName { .. }),
        "{error}"
    );
}

#[test]
fn zero_threads_is_rejected() {
    let (x, y) = tiny_data();
    let error = ScheduleComparison::new([constant_run("base")])
        .max_threads(0)
        .run(build_line, &x, &y, tiny_options)
        .unwrap_err();
    assert!(error.to_string().contains("max_threads = 0"), "{error}");
}

#[test]
fn unlogged_monitor_names_run() {
    let (x, y) = tiny_data();
    let without_validation = || FitOptions::new().epochs(2).batch_size(4).verbose(0);
    let error = ScheduleComparison::new([constant_run("base")])
        .run(build_line, &x, &y, without_validation)
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, CompareError::Run { .. }), "{message}");
    assert!(message.contains("\"base\""), "{message}");
    assert!(message.contains("`val_loss`"), "{message}");
}

#[test]
fn uncompiled_model_is_rejected() {
    let (x, y) = tiny_data();
    let uncompiled = |_: LearningRate| Ok(Sequential::new([1]).add(Dense::new(1)));
    let error = ScheduleComparison::new([constant_run("base")])
        .run(uncompiled, &x, &y, tiny_options)
        .unwrap_err();
    assert!(
        matches!(&error, CompareError::NotCompiled { run } if run == "base"),
        "{error}"
    );
}

#[test]
fn builder_error_names_run() {
    let (x, y) = tiny_data();
    let failing = |_: LearningRate| {
        let mut model = Sequential::new([1]).add(Dense::new(1));
        model.compile(Sgd::new(-1.0), Loss::MeanSquaredError, [])?;
        Ok(model)
    };
    let error = ScheduleComparison::new([constant_run("negative")])
        .run(failing, &x, &y, tiny_options)
        .unwrap_err();
    assert!(
        matches!(&error, CompareError::Build { run, .. } if run == "negative"),
        "{error}"
    );
}

#[test]
fn changing_architecture_is_rejected() {
    let (x, y) = tiny_data();
    let calls = AtomicU64::new(0);
    let growing = |learning_rate: LearningRate| {
        let units = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            1
        } else {
            2
        };
        let mut model = Sequential::new([1])
            .add(Dense::new(units))
            .add(Dense::new(1));
        model.compile(Sgd::new(learning_rate), Loss::MeanSquaredError, [])?;
        Ok(model)
    };
    let error = ScheduleComparison::new([constant_run("wider")])
        .run(growing, &x, &y, tiny_options)
        .unwrap_err();
    assert!(
        matches!(&error, CompareError::WeightsMismatch { run, .. } if run == "wider"),
        "{error}"
    );
}

#[test]
fn panicking_callback_names_run() {
    let (x, y) = tiny_data();
    let runs = [constant_run("calm"), constant_run("panics")];
    let error = ScheduleComparison::new(runs)
        .max_threads(1)
        .callbacks(|run| {
            if run == "panics" {
                let callback = LambdaCallback::new().on_epoch_end(|_, _, _| panic!("callback bug"));
                vec![Box::new(callback) as Box<dyn Callback>]
            } else {
                Vec::new()
            }
        })
        .run(build_line, &x, &y, tiny_options)
        .unwrap_err();
    match &error {
        CompareError::Panicked { run, message } => {
            assert_eq!(run, "panics");
            assert_eq!(message, "callback bug");
        }
        other => panic!("expected a panic error, got {other}"),
    }
}
