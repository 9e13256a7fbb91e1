//! Training that produces NaN or infinite values: inputs containing NaN, a learning rate that
//! makes the weights diverge, and a loss that overflows f32. Each case checks that training
//! reports it (TerminateOnNaN, EarlyStopping's `check_finite`), that History records the
//! non-finite values, that no checkpoint saved as the best contains a non-finite weight, and that
//! nothing panics.

use std::path::Path;

use grit::prelude::*;
use grit::train::callbacks::Weights;
use ndarray::Array2;

/// 16 samples of 2 features around 10, with targets around 100: a linear model's first
/// gradients have a size of about 10⁴.
fn regression_data() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((16, 2), |(i, j)| 10.0 + ((i * 3 + j) % 5) as f32);
    let y = Array2::from_shape_fn((16, 1), |(i, _)| 100.0 + (i % 4) as f32);
    (x, y)
}

fn linear_model(learning_rate: f32) -> Sequential {
    let mut model = Sequential::new([2]).seed(11).add(Dense::new(1));
    model
        .compile(
            Sgd::new(learning_rate),
            Loss::MeanSquaredError,
            [Metric::MeanAbsoluteError],
        )
        .unwrap();
    model
}

/// Returns options with one batch per epoch in a fixed order, so each epoch's only update
/// follows its loss.
fn whole_batches(epochs: usize) -> FitOptions<'static> {
    FitOptions::new()
        .epochs(epochs)
        .batch_size(16)
        .shuffle(false)
        .verbose(0)
}

fn all_finite(weights: &Weights) -> bool {
    weights
        .iter()
        .all(|(_, tensor)| tensor.iter().all(|value| value.is_finite()))
}

fn checkpoint_weights(path: &Path) -> Weights {
    Sequential::load(path)
        .unwrap_or_else(|error| panic!("{} does not load: {error}", path.display()))
        .get_weights()
}

#[test]
fn nan_input_stops_at_its_batch() {
    let (mut x, y) = regression_data();
    x[[9, 1]] = f32::NAN;
    let mut model = linear_model(1e-4);
    let mut terminate = TerminateOnNaN::new();
    let options = FitOptions::new()
        .epochs(5)
        .batch_size(4)
        .shuffle(false)
        .verbose(0);
    let history = model.fit(&x, &y, &options, &mut [&mut terminate]).unwrap();

    assert_eq!(history.epochs(), &[0], "training stops in the first epoch");
    let loss = history.values("loss");
    assert_eq!(loss.len(), 1);
    assert!(loss[0].is_nan(), "History records the NaN loss: {loss:?}");
}

#[test]
fn nan_input_raises_with_epoch_and_batch() {
    let (mut x, y) = regression_data();
    x[[9, 1]] = f32::NAN;
    let mut model = linear_model(1e-4);
    let mut terminate = TerminateOnNaN::new().raise_error(true);
    let options = FitOptions::new()
        .epochs(5)
        .batch_size(4)
        .shuffle(false)
        .verbose(0);
    let error = model
        .fit(&x, &y, &options, &mut [&mut terminate])
        .unwrap_err();
    // Sample 9 is in the third batch of four (0-based batch 2).
    match error {
        TrainError::NonFiniteLoss { epoch, batch, loss } => {
            assert_eq!(epoch, 0);
            assert_eq!(batch, 2);
            assert!(loss.is_nan(), "{loss}");
        }
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
}

/// A learning rate of 10 makes the weights grow by about 10⁵ per epoch until the loss
/// overflows. EarlyStopping's `check_finite` stops at the first non-finite epoch.
#[test]
fn divergence_stops_early_stopping() {
    let (x, y) = regression_data();
    let mut model = linear_model(10.0);
    let mut early_stopping = EarlyStopping::new("loss").patience(100);
    let history = model
        .fit(&x, &y, &whole_batches(50), &mut [&mut early_stopping])
        .unwrap();

    let loss = history.values("loss");
    let last = *loss.last().unwrap();
    assert!(
        !last.is_finite(),
        "the last epoch's loss is non-finite: {loss:?}"
    );
    assert!(
        loss[..loss.len() - 1].iter().all(|value| value.is_finite()),
        "only the last epoch is non-finite: {loss:?}"
    );
    assert!(
        loss.windows(2)
            .take(loss.len() - 2)
            .all(|pair| pair[1] > pair[0]),
        "the loss grows every epoch: {loss:?}"
    );
    assert_eq!(early_stopping.stopped_epoch(), loss.len() - 1);
    assert!(loss.len() < 50, "training stopped early: {loss:?}");
}

/// Without a callback that stops it, training runs every epoch on NaN weights; nothing
/// panics, History shows every value, and evaluate and predict return NaN.
#[test]
fn divergence_without_callbacks_runs_to_the_end() {
    let (x, y) = regression_data();
    let mut model = linear_model(10.0);
    let history = model.fit(&x, &y, &whole_batches(20), &mut []).unwrap();

    assert_eq!(history.epochs().len(), 20);
    let loss = history.values("loss");
    assert!(loss[0].is_finite(), "{loss:?}");
    assert!(loss[19].is_nan(), "{loss:?}");
    assert!(!all_finite(&model.get_weights()));
    let logs = model.evaluate(&x, &y, 4).unwrap();
    assert!(logs["loss"].is_nan(), "{logs:?}");
    let output = model.predict(&x, 4).unwrap();
    assert!(output.iter().all(|value| value.is_nan()));
}

/// A learning rate so large that the first update already overflows the weights: epoch 0
/// logs a finite loss (computed before the update) while the weights after it are infinite.
/// That epoch improves on nothing, yet its weights must not become the best checkpoint.
#[test]
fn best_checkpoint_skips_non_finite_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = regression_data();
    let mut model = linear_model(1e37);
    let best = dir.path().join("best.safetensors");
    let mut checkpoint = ModelCheckpoint::new(best.to_string_lossy())
        .monitor("loss")
        .save_best_only(true);
    let mut every_epoch = ModelCheckpoint::new(
        dir.path()
            .join("epoch-{epoch}.safetensors")
            .to_string_lossy(),
    );
    let history = model
        .fit(
            &x,
            &y,
            &whole_batches(3),
            &mut [&mut checkpoint, &mut every_epoch],
        )
        .unwrap();

    assert!(history.values("loss")[0].is_finite());
    let epoch_1 = checkpoint_weights(&dir.path().join("epoch-1.safetensors"));
    assert!(
        !all_finite(&epoch_1),
        "the setup must overflow the weights in epoch 0: {epoch_1:?}"
    );
    assert!(
        !best.exists(),
        "no epoch had finite weights, so no best checkpoint is written"
    );
    assert_eq!(checkpoint.best(), None);
}

/// The same overflow after good epochs: the best checkpoint keeps the last good weights.
#[test]
fn best_checkpoint_keeps_last_finite_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = regression_data();
    let mut model = linear_model(1e-4);
    let best = dir.path().join("best.safetensors");
    let mut checkpoint = ModelCheckpoint::new(best.to_string_lossy())
        .monitor("loss")
        .save_best_only(true);
    // Epochs 0 to 2 train normally; from epoch 3 on the rate overflows the weights.
    let mut blow_up = LearningRateScheduler::new(|epoch, _| if epoch < 3 { 1e-4 } else { 1e37 });
    let history = model
        .fit(
            &x,
            &y,
            &whole_batches(6),
            &mut [&mut blow_up, &mut checkpoint],
        )
        .unwrap();

    let loss = history.values("loss");
    assert!(loss[3].is_finite(), "{loss:?}");
    assert!(loss[3] < loss[2], "epoch 3 improves the loss: {loss:?}");
    let saved = checkpoint_weights(&best);
    assert!(all_finite(&saved), "{saved:?}");
    assert_eq!(checkpoint.best(), Some(loss[2]));
}

/// EarlyStopping's `restore_best_weights` never restores non-finite weights as the best.
#[test]
fn restored_best_weights_are_finite() {
    let (x, y) = regression_data();
    let mut model = linear_model(1e-4);
    let mut blow_up = LearningRateScheduler::new(|epoch, _| if epoch < 3 { 1e-4 } else { 1e37 });
    let mut early_stopping = EarlyStopping::new("loss")
        .patience(10)
        .restore_best_weights(true);
    let history = model
        .fit(
            &x,
            &y,
            &whole_batches(10),
            &mut [&mut blow_up, &mut early_stopping],
        )
        .unwrap();

    let loss = history.values("loss");
    assert!(loss.len() < 10, "check_finite stops training: {loss:?}");
    assert!(
        all_finite(&model.get_weights()),
        "{:?}",
        model.get_weights()
    );
    assert_eq!(early_stopping.best(), Some(loss[2]));
    assert_eq!(early_stopping.best_epoch(), 2);
}

/// Targets of 10³⁰ make the squared error overflow f32 on the first batch.
#[test]
fn overflowing_loss_terminates() {
    let (x, _) = regression_data();
    let y = Array2::from_elem((16, 1), 1e30f32);
    let mut model = linear_model(1e-4);
    let mut terminate = TerminateOnNaN::new().raise_error(true);
    let error = model
        .fit(&x, &y, &whole_batches(3), &mut [&mut terminate])
        .unwrap_err();
    match error {
        TrainError::NonFiniteLoss { epoch, batch, loss } => {
            assert_eq!((epoch, batch), (0, 0));
            assert_eq!(loss, f64::INFINITY);
        }
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
    let logs = model.evaluate(&x, &y, 16).unwrap();
    assert!(
        !logs["loss"].is_finite(),
        "evaluate reports the overflow too: {logs:?}"
    );
}

/// Non-finite epochs reach the CSV log as `nan` and `inf`, and a TensorBoard histogram of
/// NaN weights leaves the NaN values out instead of failing.
#[test]
fn logs_record_non_finite_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = regression_data();
    let mut model = linear_model(10.0);
    let csv = dir.path().join("log.csv");
    let mut logger = CsvLogger::new(&csv);
    let mut tensorboard = TensorBoard::new(dir.path().join("tb")).histogram_freq(1);
    let history = model
        .fit(
            &x,
            &y,
            &whole_batches(20),
            &mut [&mut logger, &mut tensorboard],
        )
        .unwrap();

    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 21, "{text}");
    assert_eq!(rows[0], "epoch,loss,mean_absolute_error");
    let loss = history.values("loss");
    for (epoch, row) in rows[1..].iter().enumerate() {
        let logged = row.split(',').nth(1).unwrap();
        let expected = if loss[epoch].is_nan() {
            "nan".to_string()
        } else if loss[epoch].is_infinite() {
            "inf".to_string()
        } else {
            loss[epoch].to_string()
        };
        assert_eq!(logged, expected, "epoch {epoch}: {row}");
    }
    assert!(text.contains(",nan,"), "{text}");
}
