//! Invalid arguments to `compile`, `fit`, `evaluate` and `predict` return typed errors that
//! name the value and what was expected.

use grit::prelude::*;
use ndarray::{Array1, Array2, Array3};

fn classifier() -> Sequential {
    let mut model = Sequential::new([4])
        .add(Dense::new(8).activation(Activation::Relu))
        .add(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(0.01),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    model
}

fn inputs(n: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, 4), |(i, j)| (i + j) as f32 * 0.1)
}

fn labels(n: usize) -> Array1<u8> {
    Array1::from_shape_fn(n, |i| (i % 3) as u8)
}

fn quiet() -> FitOptions<'static> {
    FitOptions::new().epochs(1).verbose(0)
}

fn message(result: Result<impl std::fmt::Debug, TrainError>) -> String {
    result.expect_err("the call should fail").to_string()
}

#[test]
fn sample_counts_differ() {
    let text = message(classifier().fit(&inputs(10), &labels(9), &quiet(), &mut []));
    assert!(
        text.contains("10 input samples but 9 target samples"),
        "{text}"
    );
    let text = message(classifier().evaluate(&inputs(10), &labels(9), 4));
    assert!(text.contains("10 input samples but 9"), "{text}");
}

#[test]
fn feature_shape_differs() {
    let x = Array2::<f32>::zeros((10, 5));
    let text = message(classifier().fit(&x, &labels(10), &quiet(), &mut []));
    assert!(text.contains("[5]"), "{text}");
    assert!(text.contains("[4]"), "{text}");
    let images = Array3::<f32>::zeros((10, 2, 2));
    let text = message(classifier().predict(&images, 4));
    assert!(text.contains("[2, 2]"), "{text}");
    assert!(text.contains("[4]"), "{text}");
}

#[test]
fn empty_data() {
    let text = message(classifier().fit(&inputs(0), &labels(0), &quiet(), &mut []));
    assert!(text.contains("inputs contain no samples"), "{text}");
    let text = message(classifier().predict(&inputs(0), 4));
    assert!(text.contains("no samples"), "{text}");
}

#[test]
fn batch_size_zero() {
    let text = message(classifier().fit(&inputs(10), &labels(10), &quiet().batch_size(0), &mut []));
    assert!(text.contains("batch_size = 0"), "{text}");
    assert!(message(classifier().evaluate(&inputs(10), &labels(10), 0)).contains("batch_size = 0"));
    assert!(message(classifier().predict(&inputs(10), 0)).contains("batch_size = 0"));
}

#[test]
fn validation_split_out_of_range() {
    for split in [-0.1f32, 1.0, 1.5, f32::NAN] {
        let text = message(classifier().fit(
            &inputs(10),
            &labels(10),
            &quiet().validation_split(split),
            &mut [],
        ));
        assert!(
            text.contains("validation_split") && text.contains("[0, 1)"),
            "{split}: {text}"
        );
    }
}

#[test]
fn validation_split_leaves_no_sample() {
    // Training gets floor(n · (1 − split)) samples: floor(2 · 0.1) = 0 leaves none.
    let text = message(classifier().fit(
        &inputs(2),
        &labels(2),
        &quiet().validation_split(0.9),
        &mut [],
    ));
    assert!(
        text.contains("at least one training and one validation sample of 2"),
        "{text}"
    );
    assert!(text.contains("puts 0 in training"), "{text}");
}

#[test]
fn sparse_label_out_of_range() {
    let mut y = labels(10);
    y[7] = 3;
    let text = message(classifier().fit(&inputs(10), &y, &quiet(), &mut []));
    assert!(
        text.contains("sample 7 has label 3") && text.contains("3 classes"),
        "{text}"
    );
    let fractional = Array1::from_shape_fn(10, |i| if i == 4 { 1.5f32 } else { 0.0 });
    let text = message(classifier().fit(&inputs(10), &fractional, &quiet(), &mut []));
    assert!(text.contains("sample 4 has label 1.5"), "{text}");
}

#[test]
fn one_hot_width_differs() {
    let mut model = classifier();
    model
        .compile(
            Adam::new(0.01),
            Loss::CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let y = Array2::<f32>::zeros((10, 4));
    let text = message(model.fit(&inputs(10), &y, &quiet(), &mut []));
    assert!(
        text.contains("targets have per-sample shape [4]") && text.contains("[3]"),
        "{text}"
    );
}

#[test]
fn fit_before_compile() {
    let mut model = Sequential::new([4]).add(Dense::new(3));
    let text = message(model.fit(&inputs(10), &labels(10), &quiet(), &mut []));
    assert!(
        text.contains("not compiled") && text.contains("`fit`"),
        "{text}"
    );
    let text = message(model.evaluate(&inputs(10), &labels(10), 4));
    assert!(text.contains("`evaluate`"), "{text}");
}

#[test]
fn invalid_compile_arguments() {
    let mut model = Sequential::new([4]).add(Dense::new(3));
    let text = message(model.compile(Adam::new(f32::NAN), Loss::MeanSquaredError, []));
    assert!(
        text.contains("learning_rate") && text.contains("NaN"),
        "{text}"
    );
    let text = message(model.compile(
        Sgd::new(0.1),
        Loss::MeanSquaredError,
        [Metric::Accuracy, Metric::Accuracy],
    ));
    assert!(
        text.contains("accuracy") && text.contains("each metric once"),
        "{text}"
    );
    let mut empty = Sequential::new([4]);
    assert!(
        message(empty.compile(Sgd::new(0.1), Loss::MeanSquaredError, []))
            .contains("at least one layer")
    );
    let mut zero = Sequential::new([0]).add(Dense::new(3));
    assert!(
        message(zero.compile(Sgd::new(0.1), Loss::MeanSquaredError, [])).contains("input_shape")
    );
}

#[test]
fn invalid_fit_options() {
    let text = message(classifier().fit(&inputs(10), &labels(10), &quiet().verbose(3), &mut []));
    assert!(text.contains("verbose = 3"), "{text}");
    let text = message(classifier().fit(
        &inputs(10),
        &labels(10),
        &quiet().validation_freq(0),
        &mut [],
    ));
    assert!(text.contains("validation_freq = 0"), "{text}");
    let (vx, vy) = (inputs(4), labels(5));
    let options = quiet().validation_data(&vx, &vy);
    let text = message(classifier().fit(&inputs(10), &labels(10), &options, &mut []));
    assert!(
        text.contains("validation data: 4 input samples but 5"),
        "{text}"
    );
}
