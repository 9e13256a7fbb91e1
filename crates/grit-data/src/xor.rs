use ndarray::{Array2, array};

/// Returns the XOR problem: the four corners of the unit square as inputs `x` (shape 4×2) and
/// their exclusive-or as targets `y` (shape 4×1).
///
/// No linear model fits XOR, so a network needs a hidden layer with a nonlinear activation to
/// fit it.
pub fn xor() -> (Array2<f32>, Array2<f32>) {
    let x = array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let y = array![[0.0], [1.0], [1.0], [0.0]];
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_targets_are_exclusive_or() {
        let (x, y) = xor();
        assert_eq!(x.shape(), &[4, 2]);
        assert_eq!(y.shape(), &[4, 1]);
        for (inputs, target) in x.rows().into_iter().zip(y.column(0)) {
            let expected = (inputs[0] != inputs[1]) as u8 as f32;
            assert_eq!(*target, expected, "inputs {inputs}");
        }
    }
}
