//! Callback scenarios from Keras's own tests, ported through `fit`, plus the faults grit
//! handles beyond Keras. Monitored sequences are driven exactly by a `LambdaCallback` placed
//! before the callback under test, which overwrites the key in the epoch logs.

use std::cell::RefCell;
use std::rc::Rc;

use grit::prelude::*;
use grit::train::callbacks::Weights;
use ndarray::{Array1, Array2};

fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 1), |(i, _)| i as f32 / n as f32);
    let y = x.mapv(|v| 2.0 * v + 1.0);
    (x, y)
}

fn model(learning_rate: f32) -> Sequential {
    let mut model = Sequential::new([1]).seed(7).add(Dense::new(1));
    model
        .compile(
            Sgd::new(learning_rate),
            Loss::MeanSquaredError,
            [Metric::MeanAbsoluteError],
        )
        .unwrap();
    model
}

fn quiet(epochs: usize) -> FitOptions<'static> {
    FitOptions::new().epochs(epochs).batch_size(4).verbose(0)
}

/// Overwrites `key` in each epoch's logs with `values[epoch]`.
fn feed(key: &'static str, values: Vec<f64>) -> LambdaCallback {
    LambdaCallback::new().on_epoch_end(move |epoch, _ctx, logs| {
        logs.insert(key.to_string(), values[epoch]);
    })
}

/// Sets every weight to the epoch index at the end of each epoch, so restored weights show
/// which epoch they came from.
fn tag_weights() -> LambdaCallback {
    LambdaCallback::new().on_epoch_end(|epoch, ctx, _logs| {
        let tagged: Weights = ctx
            .weights()
            .into_iter()
            .map(|(n, w)| (n, w.mapv(|_| epoch as f32)))
            .collect();
        ctx.set_weights(&tagged).unwrap();
    })
}

fn weight_tag(model: &Sequential) -> f32 {
    model.get_weights()[0].1.iter().copied().next().unwrap()
}

// ---- EarlyStopping ----

/// Keras's `test_early_stopping_patience`: losses [10, 9, 8, 9, 8.9, ...] stop at epoch
/// max(patience, 1) + 2.
#[test]
fn early_stopping_patience() {
    let losses = vec![10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5];
    for patience in 0..4usize {
        let (x, y) = data(8);
        let mut model = model(0.01);
        let mut feeder = feed("loss", losses.clone());
        let mut early = EarlyStopping::new("loss").patience(patience);
        let history = model
            .fit(&x, &y, &quiet(9), &mut [&mut feeder, &mut early])
            .unwrap();
        let expected = patience.max(1) + 2;
        assert_eq!(early.stopped_epoch(), expected, "patience {patience}");
        assert_eq!(history.epochs().len(), expected + 1, "patience {patience}");
    }
}

/// Keras's restore test (a): val_loss [0.2, 0.15, 0.1, 0.11, 0.12], patience 2.
#[test]
fn early_stopping_restores_best_epoch() {
    let (x, y) = data(10);
    let mut model = model(0.01);
    let mut tagger = tag_weights();
    let mut feeder = feed("val_loss", vec![0.2, 0.15, 0.1, 0.11, 0.12, 0.13, 0.14]);
    let mut early = EarlyStopping::new("val_loss")
        .patience(2)
        .restore_best_weights(true);
    let options = quiet(7).validation_split(0.2);
    let history = model
        .fit(
            &x,
            &y,
            &options,
            &mut [&mut tagger, &mut feeder, &mut early],
        )
        .unwrap();
    assert_eq!(history.epochs().len(), 5);
    assert_eq!(early.best_epoch(), 2);
    assert_eq!(weight_tag(&model), 2.0);
}

/// Keras's restore tests (b) and (c): a baseline that is never beaten, and a stop requested
/// by another callback; the best weights come back in both.
#[test]
fn early_stopping_baseline_and_foreign_stop() {
    let values = vec![0.9, 0.8, 0.7, 0.71, 0.72, 0.73];
    for stop_at in [None, Some(3usize)] {
        let (x, y) = data(10);
        let mut model = model(0.01);
        let mut tagger = tag_weights();
        let mut feeder = feed("val_loss", values.clone());
        let mut stopper = LambdaCallback::new().on_epoch_end(move |epoch, ctx, _| {
            if Some(epoch) == stop_at {
                ctx.stop_training();
            }
        });
        let mut early = EarlyStopping::new("val_loss")
            .patience(5)
            .baseline(0.5)
            .restore_best_weights(true);
        let options = quiet(6).validation_split(0.2);
        let mut callbacks: [&mut dyn Callback; 4] =
            [&mut tagger, &mut feeder, &mut stopper, &mut early];
        let history = model.fit(&x, &y, &options, &mut callbacks).unwrap();
        let expected_epochs = if stop_at.is_some() { 4 } else { 5 };
        assert_eq!(
            history.epochs().len(),
            expected_epochs,
            "stop at {stop_at:?}"
        );
        assert_eq!(weight_tag(&model), 2.0, "stop at {stop_at:?}");
    }
}

/// Keras's simulated cases: an equal value, min_delta, max mode, start_from_epoch, and a
/// baseline that keeps training going.
#[test]
fn early_stopping_simulated_cases() {
    struct Case {
        name: &'static str,
        key: &'static str,
        values: Vec<f64>,
        early: EarlyStopping,
        stopped_epoch: usize,
        epochs_run: usize,
    }
    let cases = vec![
        Case {
            name: "equal value is no improvement",
            key: "loss",
            values: vec![1.0, 1.0, 0.5],
            early: EarlyStopping::new("loss").patience(0),
            stopped_epoch: 1,
            epochs_run: 2,
        },
        Case {
            name: "min_delta",
            key: "loss",
            values: vec![1.0, 0.97, 0.5],
            early: EarlyStopping::new("loss").patience(1).min_delta(0.05),
            stopped_epoch: 1,
            epochs_run: 2,
        },
        Case {
            name: "max mode",
            key: "mean_absolute_error",
            values: vec![0.5, 0.6, 0.6, 0.59, 0.1],
            early: EarlyStopping::new("mean_absolute_error")
                .patience(1)
                .mode(Mode::Max),
            stopped_epoch: 2,
            epochs_run: 3,
        },
        Case {
            name: "start_from_epoch",
            key: "loss",
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            early: EarlyStopping::new("loss").patience(1).start_from_epoch(2),
            stopped_epoch: 3,
            epochs_run: 4,
        },
        Case {
            name: "baseline never beaten",
            key: "loss",
            values: vec![0.9, 0.8, 0.7, 0.65, 0.6, 0.55, 0.54, 0.53],
            early: EarlyStopping::new("loss").patience(2).baseline(0.5),
            stopped_epoch: 0,
            epochs_run: 8,
        },
    ];
    for mut case in cases {
        let (x, y) = data(8);
        let mut model = model(0.01);
        let epochs = case.values.len();
        let mut feeder = feed(case.key, case.values);
        let history = model
            .fit(&x, &y, &quiet(epochs), &mut [&mut feeder, &mut case.early])
            .unwrap();
        assert_eq!(
            case.early.stopped_epoch(),
            case.stopped_epoch,
            "{}",
            case.name
        );
        assert_eq!(history.epochs().len(), case.epochs_run, "{}", case.name);
    }
}

#[test]
fn early_stopping_best_in_max_mode() {
    let (x, y) = data(8);
    let mut model = model(0.01);
    let mut feeder = feed("mean_absolute_error", vec![0.5, 0.6, 0.6, 0.59]);
    let mut early = EarlyStopping::new("mean_absolute_error")
        .patience(1)
        .mode(Mode::Max);
    model
        .fit(&x, &y, &quiet(4), &mut [&mut feeder, &mut early])
        .unwrap();
    assert_eq!(early.best(), Some(0.6));
    assert_eq!(early.best_epoch(), 1);
    assert_eq!(early.wait(), 1);
}

/// A NaN never becomes the best value: unlike Keras, [nan, 1.0, 0.5, ...] keeps improving.
/// With check_finite (the default) the NaN stops training at once.
#[test]
fn early_stopping_non_finite_values() {
    let (x, y) = data(8);
    let mut model = model(0.01);
    let mut feeder = feed("loss", vec![f64::NAN, 1.0, 0.5, 0.4, 0.3]);
    let mut early = EarlyStopping::new("loss").patience(2).check_finite(false);
    let history = model
        .fit(&x, &y, &quiet(5), &mut [&mut feeder, &mut early])
        .unwrap();
    assert_eq!(history.epochs().len(), 5);
    assert_eq!(early.best(), Some(0.3));

    let mut feeder = feed("loss", vec![1.0, f64::NAN, f64::NAN, 0.5]);
    let mut early = EarlyStopping::new("loss").patience(2).check_finite(false);
    model
        .fit(&x, &y, &quiet(4), &mut [&mut feeder, &mut early])
        .unwrap();
    assert_eq!(early.stopped_epoch(), 2);
    assert_eq!(early.best(), Some(1.0));

    let mut tagger = tag_weights();
    let mut feeder = feed("loss", vec![0.5, 0.4, f64::INFINITY, 0.1]);
    let mut early = EarlyStopping::new("loss")
        .patience(5)
        .restore_best_weights(true);
    let history = model
        .fit(
            &x,
            &y,
            &quiet(4),
            &mut [&mut tagger, &mut feeder, &mut early],
        )
        .unwrap();
    assert_eq!(
        history.epochs().len(),
        3,
        "check_finite stops at the infinite value"
    );
    assert_eq!(early.stopped_epoch(), 2);
    assert_eq!(
        weight_tag(&model),
        1.0,
        "the best finite epoch's weights come back"
    );
    assert_eq!(
        history.values("loss")[2],
        f64::INFINITY,
        "History shows what happened"
    );
}

/// Keras's `test_early_stopping_reuse` and state reset: a second fit starts afresh.
#[test]
fn early_stopping_state_resets_each_fit() {
    let (x, y) = data(8);
    let mut model = model(0.01);
    let mut early = EarlyStopping::new("loss").patience(1);
    let mut feeder = feed("loss", vec![1.0, 2.0, 3.0]);
    model
        .fit(&x, &y, &quiet(3), &mut [&mut feeder, &mut early])
        .unwrap();
    assert_eq!(early.stopped_epoch(), 1);
    let mut feeder = feed("loss", vec![5.0, 4.0, 3.0]);
    let history = model
        .fit(&x, &y, &quiet(3), &mut [&mut feeder, &mut early])
        .unwrap();
    assert_eq!(history.epochs().len(), 3);
    assert_eq!(early.stopped_epoch(), 0);
    assert_eq!(early.best(), Some(3.0));
}

#[test]
fn monitor_typo_is_rejected_before_training() {
    let (x, y) = data(8);
    let mut model = model(0.01);
    let batches = Rc::new(RefCell::new(0));
    let counter = Rc::clone(&batches);
    let mut count =
        LambdaCallback::new().on_train_batch_end(move |_, _, _| *counter.borrow_mut() += 1);
    let mut early = EarlyStopping::new("val_los");
    let error = model
        .fit(
            &x,
            &y,
            &quiet(2).validation_split(0.25),
            &mut [&mut count, &mut early],
        )
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`val_los`"), "{message}");
    assert!(
        message.contains("val_loss") && message.contains("mean_absolute_error"),
        "{message}"
    );
    assert_eq!(*batches.borrow(), 0);

    let mut early = EarlyStopping::new("val_loss");
    let error = model.fit(&x, &y, &quiet(2), &mut [&mut early]).unwrap_err();
    assert!(error.to_string().contains("`val_loss`"), "{error}");

    let mut early = EarlyStopping::new("learning_rate");
    let mut scheduler = LearningRateScheduler::new(|_, rate| rate);
    let error = model
        .fit(&x, &y, &quiet(2), &mut [&mut scheduler, &mut early])
        .unwrap_err();
    assert!(
        error.to_string().contains("Mode::Min"),
        "auto mode cannot resolve learning_rate: {error}"
    );
}

// ---- LearningRateScheduler ----

/// Records the learning rate the optimizer uses at the first batch of each epoch.
fn record_rates(rates: Rc<RefCell<Vec<f32>>>) -> LambdaCallback {
    LambdaCallback::new().on_train_batch_begin(move |batch, ctx, _| {
        if batch == 0 {
            rates.borrow_mut().push(ctx.learning_rate());
        }
    })
}

/// Keras's L1, L3 and L5: one-argument form, a rate halved at both epoch starts from 0.03,
/// and `learning_rate` in History.
#[test]
fn scheduler_sets_and_logs_the_rate() {
    let (x, y) = data(8);
    let mut model = model(0.1);
    let mut scheduler = LearningRateScheduler::new(|epoch, _| 1.0 / (2.0 + epoch as f32));
    let history = model.fit(&x, &y, &quiet(1), &mut [&mut scheduler]).unwrap();
    assert_eq!(model.optimizer().unwrap().learning_rate(), 0.5);
    assert_eq!(history.values("learning_rate"), vec![0.5]);

    let mut model = Sequential::new([1]).add(Dense::new(1));
    model
        .compile(Adam::new(0.03), Loss::MeanSquaredError, [])
        .unwrap();
    let mut scheduler = LearningRateScheduler::new(|_, rate| rate / 2.0);
    let rates = Rc::new(RefCell::new(Vec::new()));
    let mut recorder = record_rates(Rc::clone(&rates));
    let history = model
        .fit(&x, &y, &quiet(2), &mut [&mut scheduler, &mut recorder])
        .unwrap();
    let final_rate = model.optimizer().unwrap().learning_rate();
    assert!((final_rate - 0.0075).abs() < 1e-9, "{final_rate}");
    let logged: Vec<f32> = history
        .values("learning_rate")
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(
        logged,
        *rates.borrow(),
        "the logged rate is the one the optimizer applied"
    );
}

/// The seed use case: a step decay that multiplies the rate by 0.1 at chosen epochs, with
/// `initial_epoch` continuing the schedule.
#[test]
fn scheduler_step_decay_with_initial_epoch() {
    let (x, y) = data(8);
    let mut model = model(0.1);
    let mut scheduler =
        LearningRateScheduler::from_schedule(StepDecay::at(0.1, 0.1, [2, 4]).unwrap());
    let rates = Rc::new(RefCell::new(Vec::new()));
    let mut recorder = record_rates(Rc::clone(&rates));
    let options = quiet(6).initial_epoch(1);
    let history = model
        .fit(&x, &y, &options, &mut [&mut scheduler, &mut recorder])
        .unwrap();
    assert_eq!(history.epochs(), &[1, 2, 3, 4, 5]);
    let expected = [
        0.1f32,
        0.1 * 0.1,
        0.1 * 0.1,
        0.1 * 0.1 * 0.1,
        0.1 * 0.1 * 0.1,
    ];
    let applied = rates.borrow().clone();
    for (got, want) in applied.iter().zip(expected) {
        assert!(
            (got - want).abs() < 1e-9,
            "applied {applied:?}, expected {expected:?}"
        );
    }
}

#[test]
fn scheduler_rejects_bad_rates_and_scheduled_optimizers() {
    let (x, y) = data(8);
    let mut model = model(0.1);
    let mut scheduler =
        LearningRateScheduler::new(|epoch, rate| if epoch == 1 { f32::NAN } else { rate });
    let error = model
        .fit(&x, &y, &quiet(3), &mut [&mut scheduler])
        .unwrap_err();
    assert!(error.to_string().contains("epoch 1"), "{error}");

    let mut scheduler = LearningRateScheduler::new(|_, _| -0.5);
    let error = model
        .fit(&x, &y, &quiet(1), &mut [&mut scheduler])
        .unwrap_err();
    assert!(error.to_string().contains("-0.5"), "{error}");

    let mut scheduled = Sequential::new([1]).add(Dense::new(1));
    let decay = ExponentialDecay::new(0.1, 10, 0.9).unwrap();
    scheduled
        .compile(Sgd::new(decay), Loss::MeanSquaredError, [])
        .unwrap();
    let mut scheduler = LearningRateScheduler::new(|_, rate| rate);
    let error = scheduled
        .fit(&x, &y, &quiet(1), &mut [&mut scheduler])
        .unwrap_err();
    assert!(error.to_string().contains("ExponentialDecay"), "{error}");
}

// ---- ReduceLROnPlateau ----

/// Keras's R1, R4 and R5 with real losses: min_delta so large that nothing improves.
#[test]
fn plateau_reductions_like_keras() {
    let cases = [
        // (patience, min_delta, min_lr, cooldown, epochs, final rate)
        (1usize, 100.0, 0.0f32, 0usize, 2usize, 0.01f32),
        (1, 10.0, 0.005, 0, 4, 0.005),
        (1, 100.0, 0.0, 2, 4, 0.001),
    ];
    for (patience, min_delta, min_lr, cooldown, epochs, expected) in cases {
        let (x, y) = data(10);
        let mut model = model(0.1);
        let mut plateau = ReduceLROnPlateau::new("loss")
            .factor(0.1)
            .patience(patience)
            .min_delta(min_delta)
            .min_lr(min_lr)
            .cooldown(cooldown);
        model
            .fit(&x, &y, &quiet(epochs), &mut [&mut plateau])
            .unwrap();
        let rate = model.optimizer().unwrap().learning_rate();
        assert!(
            (rate - expected).abs() < 1e-9,
            "cooldown {cooldown}, min_lr {min_lr}: rate {rate}, expected {expected}"
        );
    }
}

/// Keras's R8: the logged `learning_rate` is the rate in effect before this epoch's
/// reduction, and equals the rate the optimizer applied in that epoch.
#[test]
fn plateau_logs_the_rate_before_reduction() {
    let (x, y) = data(8);
    let mut model = model(0.1);
    let mut feeder = feed("loss", vec![1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5]);
    let mut plateau = ReduceLROnPlateau::new("loss").factor(0.5).patience(2);
    let rates = Rc::new(RefCell::new(Vec::new()));
    let mut recorder = record_rates(Rc::clone(&rates));
    let history = model
        .fit(
            &x,
            &y,
            &quiet(7),
            &mut [&mut feeder, &mut plateau, &mut recorder],
        )
        .unwrap();
    let logged: Vec<f32> = history
        .values("learning_rate")
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(logged, vec![0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025]);
    assert_eq!(logged, *rates.borrow());
}

#[test]
fn plateau_rejects_factor_of_one() {
    let (x, y) = data(8);
    let mut model = model(0.1);
    let mut plateau = ReduceLROnPlateau::new("loss").factor(1.0);
    let error = model
        .fit(&x, &y, &quiet(1), &mut [&mut plateau])
        .unwrap_err();
    assert!(error.to_string().contains("factor = 1"), "{error}");
}

// ---- CSVLogger ----

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Keras's V1 and V2: a tab separator, and appending a second run under one header.
#[test]
fn csv_logger_separator_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/training.tsv");
    let (x, y) = data(10);
    let mut model = model(0.1);
    let mut logger = CsvLogger::new(&path).separator('\t');
    let options = quiet(1).validation_split(0.2);
    model.fit(&x, &y, &options, &mut [&mut logger]).unwrap();
    let lines = read_lines(&path);
    assert_eq!(
        lines[0],
        "epoch\tloss\tmean_absolute_error\tval_loss\tval_mean_absolute_error"
    );
    assert_eq!(lines.len(), 2);

    let mut logger = CsvLogger::new(&path).separator('\t').append(true);
    model
        .fit(&x, &y, &quiet(2).validation_split(0.2), &mut [&mut logger])
        .unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines.iter().filter(|l| l.starts_with("epoch")).count(), 1);
    assert!(
        lines.iter().all(|l| l.matches('\t').count() == 4),
        "{lines:?}"
    );
}

#[test]
fn csv_logger_appends_under_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training.csv");
    let (x, y) = data(10);
    let mut model = model(0.1);
    let mut logger = CsvLogger::new(&path);
    let options = quiet(1).validation_split(0.2);
    model.fit(&x, &y, &options, &mut [&mut logger]).unwrap();
    let header = "epoch,loss,mean_absolute_error,val_loss,val_mean_absolute_error";
    assert_eq!(read_lines(&path)[0], header);

    // A run without validation writes `NA` in the `val_*` columns.
    let mut logger = CsvLogger::new(&path).append(true);
    model.fit(&x, &y, &quiet(1), &mut [&mut logger]).unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], header);
    let fields: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(fields.len(), 5, "{}", lines[2]);
    assert_eq!(fields[0], "0");
    assert_eq!(&fields[3..], ["NA", "NA"]);

    // A key that the header lacks stops the run before its row is written.
    let mut scheduler = LearningRateScheduler::new(|_, rate| rate);
    let mut logger = CsvLogger::new(&path).append(true);
    let error = model
        .fit(&x, &y, &quiet(1), &mut [&mut scheduler, &mut logger])
        .unwrap_err();
    assert!(error.to_string().contains("learning_rate"), "{error}");
    assert_eq!(read_lines(&path), lines);

    // So does a header that the separator does not split.
    let mut logger = CsvLogger::new(&path).separator(';').append(true);
    let error = model
        .fit(&x, &y, &quiet(1), &mut [&mut logger])
        .unwrap_err();
    assert!(error.to_string().contains("';'"), "{error}");
    assert_eq!(read_lines(&path), lines);
}

/// Keras's V3: with validation every third epoch, `val_*` columns exist from the first row
/// and hold `NA` where validation did not run.
#[test]
fn csv_logger_marks_missing_validation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training.csv");
    let (x, y) = data(10);
    let mut model = model(0.1);
    let mut logger = CsvLogger::new(&path);
    let options = quiet(5).validation_split(0.2).validation_freq(3);
    let history = model.fit(&x, &y, &options, &mut [&mut logger]).unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 6);
    let val_loss: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(3).unwrap().to_string())
        .collect();
    assert_eq!(val_loss[0], "NA");
    assert_eq!(val_loss[1], "NA");
    assert_eq!(val_loss[2], history.values("val_loss")[0].to_string());
    assert_eq!(val_loss[3], "NA");
    assert_eq!(history.values("val_loss").len(), 1);
}

/// Keras's V4: a diverging run stopped by TerminateOnNaN leaves a complete, parseable file
/// whose last row shows the non-finite loss.
#[test]
fn csv_logger_survives_an_early_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training.csv");
    let x = Array2::from_elem((8, 1), 1.0f32);
    let y = Array2::from_elem((8, 1), 1e20f32);
    let mut model = model(0.1);
    let mut terminate = TerminateOnNaN::new();
    let mut logger = CsvLogger::new(&path);
    let history = model
        .fit(&x, &y, &quiet(20), &mut [&mut terminate, &mut logger])
        .unwrap();
    assert_eq!(history.epochs().len(), 1);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "epoch,loss,mean_absolute_error");
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[1], "inf");
}

// ---- TerminateOnNaN ----

/// Keras's N3, N4 and N6: with raise_error, the error names the batch and `on_train_end`
/// does not run.
#[test]
fn terminate_on_nan_raise_error() {
    let x = Array2::from_elem((6, 1), 1.0f32);
    let mut y = Array2::from_elem((6, 1), 1.0f32);
    y[[2, 0]] = f32::INFINITY;
    let mut model = model(0.0);
    let ended = Rc::new(RefCell::new(false));
    let flag = Rc::clone(&ended);
    let mut tracker = LambdaCallback::new().on_train_end(move |_, _| *flag.borrow_mut() = true);
    let mut terminate = TerminateOnNaN::new().raise_error(true);
    let options = FitOptions::new()
        .epochs(2)
        .batch_size(1)
        .shuffle(false)
        .verbose(0);
    let error = model
        .fit(&x, &y, &options, &mut [&mut terminate, &mut tracker])
        .unwrap_err();
    assert!(
        matches!(
            error,
            TrainError::NonFiniteLoss {
                batch: 2,
                epoch: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("NaN or Inf loss encountered at batch 2"),
        "{error}"
    );
    assert!(!*ended.borrow());
}

/// Keras's N1 and N7: a graceful stop records the partial epoch; finite training runs on.
#[test]
fn terminate_on_nan_graceful_stop() {
    let x = Array2::from_elem((8, 1), 1.0f32);
    let y = Array2::from_elem((8, 1), f32::INFINITY);
    let mut model = model(0.1);
    let mut terminate = TerminateOnNaN::new();
    let history = model
        .fit(&x, &y, &quiet(20), &mut [&mut terminate])
        .unwrap();
    assert_eq!(history.epochs().len(), 1);
    assert!(!history.values("loss")[0].is_finite());

    let (x, y) = data(8);
    let mut model = self::model(0.1);
    let history = model
        .fit(
            &x,
            &y,
            &quiet(2),
            &mut [&mut TerminateOnNaN::new().raise_error(true)],
        )
        .unwrap();
    assert_eq!(history.epochs().len(), 2);
}

// ---- The loop itself ----

/// A stop requested inside an epoch ends it early; validation and `on_epoch_end` still run,
/// and the epoch's loss is the mean over the batches that ran.
#[test]
fn stop_inside_an_epoch_keeps_the_partial_epoch() {
    let (x, y) = data(20);
    let mut model = model(0.0);
    let batch_losses = Rc::new(RefCell::new(Vec::new()));
    let recorded = Rc::clone(&batch_losses);
    let mut stopper = LambdaCallback::new().on_train_batch_end(move |batch, ctx, logs| {
        recorded.borrow_mut().push(logs["loss"]);
        if batch == 1 {
            ctx.stop_training();
        }
    });
    let options = quiet(3).validation_split(0.2).shuffle(false);
    let history = model.fit(&x, &y, &options, &mut [&mut stopper]).unwrap();
    assert_eq!(history.epochs(), &[0]);
    assert_eq!(batch_losses.borrow().len(), 2);
    assert_eq!(history.values("loss")[0], batch_losses.borrow()[1]);
    assert_eq!(history.values("val_loss").len(), 1);
}

/// Keras's `test_callback_methods_keys` and the lambda test: every hook fires, with the
/// documented keys.
#[test]
fn hooks_fire_with_keras_keys() {
    let calls = Rc::new(RefCell::new(Vec::<String>::new()));
    let record = |name: &'static str, calls: &Rc<RefCell<Vec<String>>>| {
        let calls = Rc::clone(calls);
        move |logs: &Logs| {
            calls.borrow_mut().push(format!(
                "{name}:{}",
                logs.keys().cloned().collect::<Vec<_>>().join("+")
            ))
        }
    };
    let (train_begin, train_end) = (record("train_begin", &calls), record("train_end", &calls));
    let (epoch_begin, epoch_end) = (record("epoch_begin", &calls), record("epoch_end", &calls));
    let (batch_begin, batch_end) = (record("batch_begin", &calls), record("batch_end", &calls));
    let (test_begin, test_end) = (record("test_begin", &calls), record("test_end", &calls));
    let (test_batch_begin, test_batch_end) = (
        record("test_batch_begin", &calls),
        record("test_batch_end", &calls),
    );
    let mut lambda = LambdaCallback::new()
        .on_train_begin(move |_, logs| train_begin(logs))
        .on_train_end(move |_, logs| train_end(logs))
        .on_epoch_begin(move |_, _, logs| epoch_begin(logs))
        .on_epoch_end(move |_, _, logs| epoch_end(logs))
        .on_train_batch_begin(move |_, _, logs| batch_begin(logs))
        .on_train_batch_end(move |_, _, logs| batch_end(logs))
        .on_test_begin(move |_, logs| test_begin(logs))
        .on_test_end(move |_, logs| test_end(logs))
        .on_test_batch_begin(move |_, _, logs| test_batch_begin(logs))
        .on_test_batch_end(move |_, _, logs| test_batch_end(logs));
    let x = Array2::from_shape_fn((16, 4), |(i, j)| (i + j) as f32 / 20.0);
    let y = Array2::from_shape_fn((16, 1), |(i, _)| i as f32 / 16.0);
    let (vx, vy) = (x.clone(), y.clone());
    let mut model = Sequential::new([4]).add(Dense::new(1));
    model
        .compile(
            Sgd::new(0.01),
            Loss::MeanSquaredError,
            [Metric::MeanAbsoluteError],
        )
        .unwrap();
    let options = FitOptions::new()
        .epochs(1)
        .batch_size(8)
        .verbose(0)
        .validation_data(&vx, &vy);
    model.fit(&x, &y, &options, &mut [&mut lambda]).unwrap();
    let expected = [
        "train_begin:",
        "epoch_begin:",
        "batch_begin:",
        "batch_end:loss+mean_absolute_error",
        "batch_begin:",
        "batch_end:loss+mean_absolute_error",
        "test_begin:",
        "test_batch_begin:",
        "test_batch_end:loss+mean_absolute_error",
        "test_batch_begin:",
        "test_batch_end:loss+mean_absolute_error",
        "test_end:loss+mean_absolute_error",
        "epoch_end:loss+mean_absolute_error+val_loss+val_mean_absolute_error",
        "train_end:loss+mean_absolute_error+val_loss+val_mean_absolute_error",
    ];
    assert_eq!(*calls.borrow(), expected);
}

// ---- Real data ----

fn mnist_dir() -> std::path::PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

/// EarlyStopping with restore_best_weights on a real MNIST subset: after training, the
/// model's weights are the best epoch's, so evaluating gives the best val_loss again.
#[test]
fn mnist_early_stopping_restores_best_weights() {
    let data = Mnist::load(mnist_dir())
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
    let x = data.train_images.take(3000);
    let y: Array1<u8> = data.train_labels.slice(ndarray::s![..3000]).to_owned();
    let vx = data.test_images.take(1000);
    let vy: Array1<u8> = data.test_labels.slice(ndarray::s![..1000]).to_owned();
    let mut model = Sequential::new([28, 28])
        .seed(5)
        .add(Flatten::new())
        .add(Dense::new(64).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(0.005),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let mut early = EarlyStopping::new("val_loss")
        .patience(2)
        .restore_best_weights(true);
    let options = FitOptions::new()
        .epochs(30)
        .batch_size(64)
        .verbose(0)
        .validation_data(&vx, &vy);
    let history = model.fit(&x, &y, &options, &mut [&mut early]).unwrap();
    let val_losses = history.values("val_loss");
    let best = val_losses.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "val_loss per epoch: {val_losses:?}; stopped at epoch {}",
        early.stopped_epoch()
    );
    assert!(
        early.stopped_epoch() > 0,
        "the run should overfit and stop: {val_losses:?}"
    );
    assert_eq!(val_losses[early.best_epoch()], best);
    let logs = model.evaluate(&vx, &vy, 250).unwrap();
    assert!(
        (logs["loss"] - best).abs() < 1e-6,
        "evaluate {} vs best {best}",
        logs["loss"]
    );
    assert!(logs["accuracy"] > 0.85, "accuracy {}", logs["accuracy"]);
}

/// The saved state of EarlyStopping carries the best epoch's weights exactly, so a resumed
/// run restores the same weights.
#[test]
fn early_stopping_state_keeps_best_weights() {
    let (x, y) = data(8);
    let mut model = model(0.05);
    let mut early = EarlyStopping::new("loss")
        .patience(10)
        .restore_best_weights(true);
    model.fit(&x, &y, &quiet(3), &mut [&mut early]).unwrap();
    let state = early.state().unwrap();
    let saved = state["best_weights"].as_array().unwrap();
    assert_eq!(saved.len(), 2);
    assert_eq!(saved[0]["name"], "dense/kernel");

    let mut restored = EarlyStopping::new("loss")
        .patience(10)
        .restore_best_weights(true);
    restored.load_state(state.clone()).unwrap();
    assert_eq!(restored.state().unwrap(), state);
    assert_eq!(restored.best(), early.best());

    let error = restored
        .load_state(serde_json::json!({"best": "high"}))
        .unwrap_err();
    assert!(
        error.to_string().contains("not an EarlyStopping state"),
        "{error}"
    );
}
