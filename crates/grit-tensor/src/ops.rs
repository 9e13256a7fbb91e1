//! Matrix products, bias broadcast and reductions.
//!
//! Every matrix product goes through [`ndarray::linalg::general_mat_mul`], which calls the
//! `matrixmultiply` GEMM kernels. With the `matrixmultiply-threading` feature, which this
//! workspace enables, a product large enough to pay for it is split across threads by blocks
//! of the output, so each output element is still summed by one thread in one order and the
//! result does not depend on the thread count.

use ndarray::{
    Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, linalg::general_mat_mul,
};

/// Computes `c = alpha · a · b + beta · c` in place.
///
/// # Panics
/// Panics when the shapes do not agree: `a` is m × k, `b` is k × n and `c` is m × n.
#[track_caller]
pub fn gemm(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    assert!(
        a.ncols() == b.nrows() && c.nrows() == a.nrows() && c.ncols() == b.ncols(),
        "gemm: shapes do not agree: a {:?} · b {:?} into c {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    general_mat_mul(alpha, a, b, beta, c);
}

/// Returns the product `a · b` as a new matrix.
///
/// # Panics
/// Panics when `a.ncols() != b.nrows()`.
#[track_caller]
pub fn matmul(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    gemm(1.0, a, b, 0.0, &mut c.view_mut());
    c
}

/// Adds `bias` to every row of `x`.
///
/// # Panics
/// Panics when `bias.len() != x.ncols()`.
#[track_caller]
pub fn add_bias(x: &mut ArrayViewMut2<f32>, bias: &ArrayView1<f32>) {
    assert_eq!(
        x.ncols(),
        bias.len(),
        "add_bias: {} columns but a bias of {}",
        x.ncols(),
        bias.len()
    );
    for mut row in x.rows_mut() {
        row += bias;
    }
}

/// Sums the rows of `x` into one vector of `x.ncols()` values (the bias gradient).
pub fn sum_rows(x: &ArrayView2<f32>) -> Array1<f32> {
    x.sum_axis(Axis(0))
}

/// Returns the index of the largest value in each row; the first index wins a tie.
pub fn argmax_rows(x: &ArrayView2<f32>) -> Vec<usize> {
    x.rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matmul_small_product() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let b = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        assert_eq!(
            matmul(&a.view(), &b.view()),
            array![[4.0, 5.0], [10.0, 11.0]]
        );
    }

    #[test]
    fn gemm_accumulates_with_beta() {
        let a = array![[2.0f32]];
        let b = array![[3.0f32]];
        let mut c = array![[1.0f32]];
        gemm(1.0, &a.view(), &b.view(), 1.0, &mut c.view_mut());
        assert_eq!(c[[0, 0]], 7.0);
    }

    #[test]
    fn bias_and_row_sums() {
        let mut x = array![[1.0f32, 2.0], [3.0, 4.0]];
        add_bias(&mut x.view_mut(), &array![10.0f32, 20.0].view());
        assert_eq!(x, array![[11.0, 22.0], [13.0, 24.0]]);
        assert_eq!(sum_rows(&x.view()), array![24.0, 46.0]);
    }

    #[test]
    fn argmax_first_index_wins_ties() {
        let x = array![[0.1f32, 0.7, 0.2], [0.5, 0.5, 0.0]];
        assert_eq!(argmax_rows(&x.view()), vec![1, 0]);
    }
}
