//! End-to-end checks of the fit loop through the public API.

use std::cell::Cell;
use std::rc::Rc;

use grit::prelude::*;
use ndarray::{Array1, Array2, array};

/// Keras's `test_fit_lr_correctness`: `Dense(2)` with kernel and bias of ones, x = y =
/// 0..32 as 16×2, mean squared error, Adam on `ExponentialDecay(0.05, 1, 0.9)` (the first
/// update uses the rate at step 0), batch 4, no shuffling, 3 epochs. The expected losses are
/// Keras 3's, to a relative tolerance of 1e-4.
#[test]
fn keras_learning_rate_correctness() {
    let x = Array2::from_shape_fn((16, 2), |(i, j)| (i * 2 + j) as f32);
    let y = x.clone();
    let mut model = Sequential::new([2]).add(
        Dense::new(2)
            .kernel_initializer(Initializer::Ones)
            .bias_initializer(Initializer::Ones),
    );
    let schedule = ExponentialDecay::new(0.05, 1, 0.9).unwrap();
    model
        .compile(Adam::new(schedule), Loss::MeanSquaredError, [])
        .unwrap();
    let options = FitOptions::new()
        .epochs(3)
        .batch_size(4)
        .shuffle(false)
        .verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    let expected = [230.79457, 128.30319, 79.33649];
    let losses = history.values("loss");
    assert_eq!(losses.len(), 3);
    for (got, want) in losses.iter().zip(expected) {
        assert!((got - want).abs() / want < 1e-4, "loss {got}, Keras {want}");
    }
    assert_eq!(model.optimizer().unwrap().iterations(), 12);
}

/// With 10 samples and batch 4 the last batch holds 2 samples, so the epoch loss is
/// (4·l₀ + 4·l₁ + 2·l₂) / 10. A learning rate of 0 keeps the weights fixed, so each batch
/// loss can be computed by evaluating that batch alone.
#[test]
fn partial_last_batch_is_weighted_by_size() {
    let x = Array2::from_shape_fn((10, 1), |(i, _)| i as f32);
    let y = Array2::from_shape_fn((10, 1), |(i, _)| (i * i) as f32 * 0.5);
    let mut model = Sequential::new([1]).add(Dense::new(1).kernel_initializer(Initializer::Ones));
    model
        .compile(Sgd::new(0.0), Loss::MeanSquaredError, [])
        .unwrap();
    let options = FitOptions::new()
        .epochs(1)
        .batch_size(4)
        .shuffle(false)
        .verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    let batch_loss = |range: std::ops::Range<usize>| -> f64 {
        range
            .clone()
            .map(|i| (i as f64 - (i * i) as f64 * 0.5).powi(2))
            .sum::<f64>()
            / range.len() as f64
    };
    let expected =
        (4.0 * batch_loss(0..4) + 4.0 * batch_loss(4..8) + 2.0 * batch_loss(8..10)) / 10.0;
    let unweighted = (batch_loss(0..4) + batch_loss(4..8) + batch_loss(8..10)) / 3.0;
    let got = history.values("loss")[0];
    assert!(
        (got - expected).abs() / expected < 1e-6,
        "epoch loss {got}, expected {expected}"
    );
    assert!(
        (got - unweighted).abs() > 1.0,
        "the plain mean of batch losses would be {unweighted}"
    );
}

#[test]
fn xor_converges_to_full_accuracy() {
    let (x, y) = grit::data::xor();
    let mut model = Sequential::new([2])
        .seed(3)
        .add(Dense::new(8).activation(Activation::Tanh))
        .add(Dense::new(1).activation(Activation::Sigmoid));
    model
        .compile(
            Adam::new(0.05),
            Loss::BINARY_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::new().epochs(300).batch_size(4).verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    assert_eq!(history.last("accuracy"), Some(1.0));
    assert!(
        history.last("loss").unwrap() < 0.1,
        "final loss {:?}",
        history.last("loss")
    );
    let predictions = model.predict(&x, 4).unwrap();
    for (p, t) in predictions.iter().zip(y.iter()) {
        assert_eq!(*p > 0.5, *t > 0.5, "prediction {p} for target {t}");
    }
}

#[test]
fn same_seed_gives_identical_weights() {
    let train = |seed: u64| {
        let x = Array2::from_shape_fn((64, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
        let y = Array1::from_shape_fn(64, |i| (i % 3) as u8);
        let mut model = Sequential::new([3])
            .seed(seed)
            .add(Dense::new(5).activation(Activation::Relu))
            .add(Dense::new(3).activation(Activation::Softmax));
        model
            .compile(
                Adam::new(0.01),
                Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
                [Metric::Accuracy],
            )
            .unwrap();
        let options = FitOptions::new()
            .epochs(3)
            .batch_size(8)
            .validation_split(0.25)
            .verbose(0);
        model.fit(&x, &y, &options, &mut []).unwrap();
        model.get_weights()
    };
    assert_eq!(train(9), train(9));
    assert_ne!(train(9), train(10));
}

#[test]
fn validation_split_takes_the_last_samples() {
    // Inputs of the last 2 of 10 samples are 100, the rest 0: a model predicting a constant
    // has zero validation loss only if validation sees exactly samples 8 and 9.
    let x = Array2::from_shape_fn((10, 1), |(i, _)| if i >= 8 { 100.0 } else { 0.0 });
    let y = Array2::from_shape_fn((10, 1), |(i, _)| if i >= 8 { 7.0 } else { 0.0 });
    let mut model = Sequential::new([1])
        .add(Dense::new(1).kernel_initializer(Initializer::Constant { value: 0.07 }));
    model
        .compile(Sgd::new(0.0), Loss::MeanSquaredError, [])
        .unwrap();
    let options = FitOptions::new()
        .epochs(1)
        .batch_size(3)
        .validation_split(0.2)
        .verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    let val_loss = history.values("val_loss")[0];
    assert!(val_loss < 1e-10, "val_loss {val_loss}");
    assert_eq!(history.values("loss")[0], 0.0);
}

#[test]
fn validation_split_counts_as_keras() {
    // Keras splits at floor(n · (1 − fraction)) with the fraction as a Python float, so
    // 0.3 of 100 samples leaves 70 for training, where the f32 0.3 would leave 69.
    for (samples, fraction, expected) in [(100, 0.3, 70), (1000, 0.1, 900), (10, 0.3, 7)] {
        let x = Array2::<f32>::zeros((samples, 1));
        let y = Array2::<f32>::zeros((samples, 1));
        let mut model = Sequential::new([1]).add(Dense::new(1));
        model
            .compile(Sgd::new(0.0), Loss::MeanSquaredError, [])
            .unwrap();
        let steps = Rc::new(Cell::new(0usize));
        let counter = Rc::clone(&steps);
        let mut count_steps =
            LambdaCallback::new().on_train_batch_end(move |_, _, _| counter.set(counter.get() + 1));
        let options = FitOptions::new()
            .epochs(1)
            .batch_size(1)
            .validation_split(fraction)
            .verbose(0);
        model
            .fit(&x, &y, &options, &mut [&mut count_steps])
            .unwrap();
        assert_eq!(steps.get(), expected, "{samples} samples, split {fraction}");
    }
}

#[test]
fn evaluate_and_predict_agree_with_fit_logs() {
    let x = array![[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let y = array![1u8, 0, 1];
    let mut model = Sequential::new([2])
        .seed(4)
        .add(Dense::new(2).activation(Activation::Softmax));
    model
        .compile(
            Sgd::new(0.0),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let logs = model.evaluate(&x, &y, 2).unwrap();
    let probabilities = model.predict(&x, 2).unwrap();
    let expected: f64 = (0..3)
        .map(|i| -(probabilities[[i, y[i] as usize]] as f64).ln())
        .sum::<f64>()
        / 3.0;
    assert!(
        (logs["loss"] - expected).abs() < 1e-6,
        "{} vs {expected}",
        logs["loss"]
    );
    let history = model
        .fit(
            &x,
            &y,
            &FitOptions::new().epochs(1).batch_size(3).verbose(0),
            &mut [],
        )
        .unwrap();
    assert!((history.values("loss")[0] - expected).abs() < 1e-5);
}

/// Inference runs the model on at most 128 samples at a time whatever the batch size, so
/// predictions and evaluation must not depend on the batch size: each sample's output is
/// computed by the same operations in any batch.
#[test]
fn inference_independent_of_batch_size() {
    // 20 inputs, and 784 like MNIST, enough for the first layer's product to be summed in
    // two halves of its inputs.
    for inputs in [20, 784] {
        check_inference_independent_of_batch_size(inputs);
    }
}

fn check_inference_independent_of_batch_size(inputs: usize) {
    let x = Array2::from_shape_fn((300, inputs), |(i, j)| {
        ((i * 13 + j * 7) % 23) as f32 / 23.0
    });
    let y = Array1::from_shape_fn(300, |i| (i % 3) as f32);
    let mut model = Sequential::new([inputs])
        .seed(3)
        .add(Dense::new(64).activation(Activation::Relu))
        .add(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-2),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
        .fit(&x, &y, &FitOptions::new().epochs(2).verbose(0), &mut [])
        .unwrap();
    let one_at_a_time = model.predict(&x, 1).unwrap();
    let whole = model.predict(&x, 300).unwrap();
    assert_eq!(one_at_a_time, whole, "{inputs} inputs, batches of 1");
    assert_eq!(
        model.predict(&x, 129).unwrap(),
        whole,
        "{inputs} inputs, batches of 129"
    );

    // The loss over one batch of 300 is the mean of the per-sample losses.
    let logs = model.evaluate(&x, &y, 300).unwrap();
    let mut total = 0.0f64;
    for (row, &label) in whole.rows().into_iter().zip(y.iter()) {
        total -= (row[label as usize] as f64).ln();
    }
    let expected = total / 300.0;
    assert!(
        (logs["loss"] - expected).abs() < 1e-5,
        "{inputs} inputs: loss {} against {expected}",
        logs["loss"]
    );
}

/// Samples that record which batches are gathered and which are prefetched.
struct RecordingSamples {
    values: Array2<f32>,
    gathered: std::sync::Mutex<Vec<Vec<usize>>>,
    prefetched: std::sync::Mutex<Vec<Vec<usize>>>,
}

impl Samples for RecordingSamples {
    fn num_samples(&self) -> usize {
        self.values.num_samples()
    }

    fn sample_shape(&self) -> &[usize] {
        self.values.sample_shape()
    }

    fn gather(&self, indices: &[usize], out: &mut [f32]) {
        self.gathered.lock().unwrap().push(indices.to_vec());
        self.values.gather(indices, out);
    }

    fn prefetch(&self, indices: &[usize]) {
        self.prefetched.lock().unwrap().push(indices.to_vec());
    }
}

#[test]
fn each_step_prefetches_the_next_batch() {
    let x = RecordingSamples {
        values: Array2::from_shape_fn((20, 2), |(i, j)| (i * 2 + j) as f32 / 40.0),
        gathered: Default::default(),
        prefetched: Default::default(),
    };
    let y = Array1::from_shape_fn(20, |i| (i % 2) as u8);
    let mut model = Sequential::new([2])
        .seed(4)
        .add(Dense::new(2).activation(Activation::Softmax));
    model
        .compile(Adam::new(0.01), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [])
        .unwrap();
    let options = FitOptions::new().epochs(2).batch_size(7).verbose(0);
    model.fit(&x, &y, &options, &mut []).unwrap();

    // Only the training batches go through `gather` during `fit`: 3 an epoch (7, 7 and 6).
    let gathered = x.gathered.lock().unwrap().clone();
    let batch_sizes: Vec<usize> = gathered.iter().map(Vec::len).collect();
    assert_eq!(batch_sizes, [7, 7, 6, 7, 7, 6]);
    // Each step prefetches the batch after it. The last step of an epoch has none, because
    // the next epoch's order is drawn when that epoch starts.
    let prefetched = x.prefetched.lock().unwrap().clone();
    let empty = Vec::new();
    let expected: Vec<&Vec<usize>> = vec![
        &gathered[1],
        &gathered[2],
        &empty,
        &gathered[4],
        &gathered[5],
        &empty,
    ];
    assert_eq!(prefetched.iter().collect::<Vec<_>>(), expected);
}
