use super::*;
use crate::gradcheck::check_loss;
use grit_tensor::softmax;
use ndarray::{ShapeBuilder, array};

fn all_losses() -> Vec<(Loss, Tensor, Tensor)> {
    let probs = array![[0.2f32, 0.5, 0.3], [0.6, 0.1, 0.3]].into_dyn();
    let logits = array![[0.4f32, -1.2, 2.0], [1.5, 0.3, -0.7]].into_dyn();
    let one_hot = array![[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]].into_dyn();
    let sparse = array![1.0f32, 0.0].into_dyn();
    let binary_probs = array![[0.3f32], [0.8], [0.55]].into_dyn();
    let binary_logits = array![[-0.4f32], [1.7], [0.2]].into_dyn();
    let binary_targets = array![[0.0f32], [1.0], [1.0]].into_dyn();
    vec![
        (Loss::MeanSquaredError, logits.clone(), probs.clone()),
        (Loss::MeanAbsoluteError, logits.clone(), probs.clone()),
        (
            Loss::BinaryCrossentropy { from_logits: false },
            binary_probs,
            binary_targets.clone(),
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            binary_logits,
            binary_targets,
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: false },
            probs.clone(),
            one_hot.clone(),
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: true },
            logits.clone(),
            one_hot,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            probs,
            sparse.clone(),
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            logits,
            sparse,
        ),
    ]
}

/// Tolerance 1e-2 of max(1, |gradient|): the f32 loss is differenced with a step of 1e-3.
#[test]
fn gradients_match_finite_differences() {
    for (loss, pred, target) in all_losses() {
        check_loss(loss, &pred, &target, 1e-2);
    }
}

#[test]
fn hand_computed_values() {
    let pred = array![[1.0f32, 2.0], [3.0, 5.0]].into_dyn();
    let target = array![[0.0f32, 2.0], [1.0, 1.0]].into_dyn();
    // (1 + 0 + 4 + 16) / 4
    assert_eq!(Loss::MeanSquaredError.value(&pred, &target), 5.25);
    assert_eq!(Loss::MeanAbsoluteError.value(&pred, &target), 1.75);

    let probs = array![[0.25f32, 0.75]].into_dyn();
    let sparse = array![1.0f32].into_dyn();
    let expected = -(0.75f32).ln();
    let got = Loss::SPARSE_CATEGORICAL_CROSSENTROPY.value(&probs, &sparse);
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");

    let binary =
        Loss::BINARY_CROSSENTROPY.value(&array![[0.9f32]].into_dyn(), &array![[1.0f32]].into_dyn());
    assert!((binary + 0.9f32.ln()).abs() < 1e-6);
}

#[test]
fn logits_and_probabilities_agree() {
    let logits = array![[0.4f32, -1.2, 2.0], [1.5, 0.3, -0.7]].into_dyn();
    let probs = softmax(&logits);
    let labels = array![2.0f32, 1.0].into_dyn();
    let from_logits =
        Loss::SparseCategoricalCrossentropy { from_logits: true }.value(&logits, &labels);
    let from_probs = Loss::SPARSE_CATEGORICAL_CROSSENTROPY.value(&probs, &labels);
    assert!(
        (from_logits - from_probs).abs() < 1e-5,
        "{from_logits} vs {from_probs}"
    );
}

#[test]
fn fused_gradient_is_probabilities_minus_targets() {
    let logits = array![[0.4f32, -1.2, 2.0]].into_dyn();
    let labels = array![0.0f32].into_dyn();
    let (_, grad) = Loss::SPARSE_CATEGORICAL_CROSSENTROPY.logits_value_and_grad(&logits, &labels);
    let p = softmax(&logits);
    assert!((grad[[0, 0]] - (p[[0, 0]] - 1.0)).abs() < 1e-6);
    assert!((grad[[0, 2]] - p[[0, 2]]).abs() < 1e-6);
}

#[test]
fn extreme_inputs_stay_finite() {
    let logits = array![[1e4f32, -1e4, 0.0], [-1e4, 1e4, 1e4]].into_dyn();
    let labels = array![1.0f32, 0.0].into_dyn();
    let one_hot = array![[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]].into_dyn();
    let saturated = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]].into_dyn();
    let cases = [
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            logits.clone(),
            labels.clone(),
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: true },
            logits.clone(),
            one_hot.clone(),
        ),
        (
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            saturated.clone(),
            labels,
        ),
        (
            Loss::CATEGORICAL_CROSSENTROPY,
            saturated.clone(),
            one_hot.clone(),
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            logits.clone(),
            saturated.clone(),
        ),
        (Loss::BINARY_CROSSENTROPY, saturated.clone(), one_hot),
        (Loss::MeanSquaredError, logits, saturated),
    ];
    for (loss, pred, target) in cases {
        let (value, grad) = loss.value_and_grad(&pred, &target);
        assert!(value.is_finite(), "{loss:?}: loss {value}");
        assert!(
            grad.iter().all(|g| g.is_finite()),
            "{loss:?}: gradient {grad:?}"
        );
    }
    // A wrong class with probability exactly 0 costs −ln(1e-7), Keras's clipped value.
    let value = Loss::SPARSE_CATEGORICAL_CROSSENTROPY.value(
        &array![[1.0f32, 0.0]].into_dyn(),
        &array![1.0f32].into_dyn(),
    );
    assert!((value - 16.118_095).abs() < 1e-3, "{value}");
    // From logits, the same mistake at ±1e4 costs the full 2e4.
    let value = Loss::SparseCategoricalCrossentropy { from_logits: true }.value(
        &array![[1e4f32, -1e4]].into_dyn(),
        &array![1.0f32].into_dyn(),
    );
    assert_eq!(value, 2e4);
}

#[test]
fn column_major_predictions_match_standard_layout() {
    for (loss, pred, target) in all_losses() {
        // The same values stored column by column, as a transposed tensor is.
        let mut column_major = Tensor::zeros(pred.raw_dim().f());
        column_major.assign(&pred);
        if pred.shape()[1] > 1 {
            assert!(!column_major.is_standard_layout());
        }
        let (value, grad) = loss.value_and_grad(&column_major, &target);
        let (expected_value, expected_grad) = loss.value_and_grad(&pred, &target);
        assert_eq!(value.to_bits(), expected_value.to_bits(), "{loss:?}");
        assert_eq!(grad, expected_grad, "{loss:?}");
        assert!(grad.is_standard_layout(), "{loss:?}");
    }
}
