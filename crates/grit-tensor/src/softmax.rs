//! Numerically stable softmax and log-softmax over the last axis.
//!
//! Both subtract the row maximum before exponentiating, so logits of any finite size give
//! finite results: `softmax([1e4, -1e4])` is `[1, 0]` and its log-softmax is `[0, -2e4]`.

use ndarray::{ArrayViewMut1, ArrayViewMut2, Axis};

use crate::Tensor;

/// Returns the softmax of `logits` over the last axis.
pub fn softmax(logits: &Tensor) -> Tensor {
    let mut out = logits.clone();
    softmax_in_place(&mut out);
    out
}

/// Replaces `x` by its softmax over the last axis.
pub fn softmax_in_place(x: &mut Tensor) {
    let last = Axis(x.ndim().saturating_sub(1));
    for lane in x.lanes_mut(last) {
        softmax_lane(lane);
    }
}

/// Replaces each row of `x` by its softmax and returns each row's shift, `max + ln(sum)`,
/// which [`log_softmax`] subtracts from the logits. A logit minus its row's shift is its
/// log-softmax to the bit, so a cross-entropy from logits gets both from one exponential
/// per value.
pub fn softmax_rows_with_shifts(x: &mut ArrayViewMut2<f32>) -> Vec<f32> {
    x.rows_mut()
        .into_iter()
        .map(|row| {
            let (max, sum) = softmax_lane(row);
            max + sum.ln()
        })
        .collect()
}

/// Replaces `lane` by its softmax and returns its maximum and the sum of the exponentials.
fn softmax_lane(mut lane: ArrayViewMut1<f32>) -> (f32, f32) {
    let max = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in lane.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    lane /= sum;
    (max, sum)
}

/// Returns the log-softmax of `logits` over the last axis: `x - max - ln(sum(exp(x - max)))`.
pub fn log_softmax(logits: &Tensor) -> Tensor {
    let mut out = logits.clone();
    let last = Axis(out.ndim().saturating_sub(1));
    for mut lane in out.lanes_mut(last) {
        let max = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f32 = lane.iter().map(|&v| (v - max).exp()).sum();
        let shift = max + sum.ln();
        lane.mapv_inplace(|v| v - shift);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_matches_hand_values() {
        let x = array![[0.0f32, 1.0, 2.0]].into_dyn();
        let y = softmax(&x);
        let denominator = 1.0 + 1f32.exp() + 2f32.exp();
        assert!((y[[0, 0]] - 1.0 / denominator).abs() < 1e-7);
        assert!((y[[0, 2]] - 2f32.exp() / denominator).abs() < 1e-7);
    }

    #[test]
    fn shifts_give_log_softmax_to_the_bit() {
        let logits = array![
            [0.3f32, -1.7, 2.9, 0.0],
            [1e4, -1e4, 3.5, 3.5],
            [-0.1, -0.2, -0.3, -0.4]
        ];
        let mut probabilities = logits.clone();
        let shifts = softmax_rows_with_shifts(&mut probabilities.view_mut());
        let logits = logits.into_dyn();
        assert_eq!(probabilities.into_dyn(), softmax(&logits));
        let log_p = log_softmax(&logits);
        for (index, &z) in logits.indexed_iter() {
            assert_eq!((z - shifts[index[0]]).to_bits(), log_p[&index].to_bits());
        }
    }

    #[test]
    fn softmax_extreme_logits_stay_finite() {
        let x = array![[1e4f32, -1e4, 0.0]].into_dyn();
        let y = softmax(&x);
        assert_eq!(y[[0, 0]], 1.0);
        assert_eq!(y[[0, 1]], 0.0);
        let log_y = log_softmax(&x);
        assert_eq!(log_y[[0, 0]], 0.0);
        assert_eq!(log_y[[0, 1]], -2e4);
        assert!(log_y.iter().all(|v| v.is_finite()));
    }
}
