//! Max pooling computed inside the layer before it, one block of images at a time.
//!
//! A convolution followed by [`MaxPooling2D`](super::MaxPooling2D) writes an output that only
//! the pooling reads, and in the backward pass the pooling scatters a gradient of the same
//! size that only the convolution reads. When the convolution pools each block of its
//! output itself (see [`Layer::fuse_next`](crate::Layer::fuse_next)), that output stays in
//! the core's cache: the layer writes the pooled values and the winning positions, and the
//! backward pass rebuilds each block's gradient from them. The values, their order of
//! summation and the tie rule are those of the separate layers, so the results are
//! bit-identical.
//!
//! Only windows that share no value are taken. Where windows overlap, the pooling layer's
//! backward pass adds the gradients of several windows into one value. The convolution
//! chooses between its Winograd and im2col paths by the largest gradient it receives, so
//! it could see those sums only if it rebuilt the whole batch's gradient first, as the
//! pooling layer does.

use multiversion::multiversion;

use grit_tensor::activation::relu;

use super::pooling::{PoolGeometry, Pooling2DConfig};
use super::spatial::Span;
use crate::Result;

/// The winner code of a window whose gradient stops at a ReLU: the window's maximum was not
/// positive, so the ReLU passed no gradient to any of its values.
pub(crate) const NO_WINNER: u8 = u8::MAX;

/// The placement of the pooling windows over a convolution's output.
#[derive(Debug, Clone)]
pub(crate) struct FusedPool {
    geometry: PoolGeometry,
    /// The window width, which numbers the positions in a window as `row · width + column`.
    pool_width: usize,
    /// Whether the windows cover every value (they never overlap).
    covers_input: bool,
}

impl FusedPool {
    /// Places the windows of `config` over a per-sample convolution output of
    /// `output_shape` (height, width, filters). Returns `None` when windows overlap or a
    /// window has more positions than a winner code can number.
    pub(crate) fn new(config: &Pooling2DConfig, output_shape: &[usize]) -> Result<Option<Self>> {
        let (height, width) = config.pool_size;
        if height.saturating_mul(width) >= usize::from(NO_WINNER) {
            return Ok(None);
        }
        let geometry = PoolGeometry::new(config, "MaxPooling2D", output_shape)?;
        let (rows, cols) = (&geometry.rows, &geometry.cols);
        if !disjoint_spans(&rows.spans) || !disjoint_spans(&cols.spans) {
            return Ok(None);
        }
        let covers_input = covered(&rows.spans) == rows.input && covered(&cols.spans) == cols.input;
        Ok(Some(FusedPool {
            geometry,
            pool_width: width,
            covers_input,
        }))
    }

    /// Returns the number of pooled values per image.
    pub(crate) fn output_len(&self) -> usize {
        self.geometry.output_shape(1).iter().product()
    }

    /// Returns the pooled output shape for `batch` images.
    pub(crate) fn output_shape(&self, batch: usize) -> [usize; 4] {
        self.geometry.output_shape(batch)
    }

    /// Writes the maximum of every window of the convolution outputs `values` (whole
    /// images) into `pooled`, and the position of its first occurrence into `winners`,
    /// unless `winners` is empty. Each value gets `bias` (one per channel, unless empty)
    /// added and, with `relu` set, ReLU applied before it is compared, as the convolution
    /// would have done before writing it. With `relu` set, a window whose maximum is not
    /// positive gets [`NO_WINNER`], because the ReLU passes it no gradient.
    pub(crate) fn pool(
        &self,
        values: &[f32],
        pooled: &mut [f32],
        winners: &mut [u8],
        bias: &[f32],
        relu: bool,
    ) {
        pool_windows(self, values, pooled, winners, bias, relu);
    }

    /// Writes into `grad_values` (whole images of convolution outputs) the gradient that
    /// the pooling's backward pass would give them: each window's gradient in `grad` added
    /// to its winner, zero elsewhere.
    pub(crate) fn unpool(&self, grad: &[f32], winners: &[u8], grad_values: &mut [f32]) {
        unpool_windows(self, grad, winners, grad_values);
    }
}

/// [`FusedPool::pool`], compiled for AVX-512 and AVX2 as well.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn pool_windows(
    pool: &FusedPool,
    values: &[f32],
    pooled: &mut [f32],
    winners: &mut [u8],
    bias: &[f32],
    relu: bool,
) {
    // One copy of the loops per combination, so that none tests the settings per value.
    match (bias.is_empty(), relu) {
        (true, false) => pool_finished::<false, false>(pool, values, pooled, winners, bias),
        (true, true) => pool_finished::<false, true>(pool, values, pooled, winners, bias),
        (false, false) => pool_finished::<true, false>(pool, values, pooled, winners, bias),
        (false, true) => pool_finished::<true, true>(pool, values, pooled, winners, bias),
    }
}

/// Returns `value` plus `bias` when `BIAS` is set, through ReLU when `RELU` is set: the
/// operations of the convolution's own bias and ReLU passes, in their order.
#[inline(always)]
fn finish<const BIAS: bool, const RELU: bool>(value: f32, bias: f32) -> f32 {
    let value = if BIAS { value + bias } else { value };
    if RELU { relu(value) } else { value }
}

/// [`pool_windows`] for one combination of bias and ReLU.
#[inline(always)]
fn pool_finished<const BIAS: bool, const RELU: bool>(
    pool: &FusedPool,
    values: &[f32],
    pooled: &mut [f32],
    winners: &mut [u8],
    bias: &[f32],
) {
    let geometry = &pool.geometry;
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let keep_winners = !winners.is_empty();
    let mut codes = winners.chunks_exact_mut(channels);
    let mut output = pooled.chunks_exact_mut(channels);
    // One window's maxima, and its winners as 32-bit lanes, which blend in the same vector
    // instructions as the values. They stay in L1 while the window is pooled, and the
    // output gets one write.
    let mut maxima = vec![0.0f32; channels];
    let mut window_winners = vec![0u32; channels];

    for image in values.chunks_exact(geometry.image_len()) {
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let out = output.next().expect("the output has one pixel per window");
                let targets = if keep_winners { codes.next() } else { None };
                if row_span.len == 2 && col_span.len == 2 && pool.pool_width == 2 {
                    let pixel = row_span.input_start * width + col_span.input_start;
                    let top = &image[pixel * channels..(pixel + 2) * channels];
                    let bottom = &image[(pixel + width) * channels..(pixel + width + 2) * channels];
                    pool_two_by_two::<BIAS, RELU>(top, bottom, bias, out, targets);
                    continue;
                }

                let window = Window {
                    image,
                    rows: row_span,
                    cols: col_span,
                    width,
                    pool_width: pool.pool_width,
                };
                pool_window::<BIAS, RELU>(&window, bias, &mut maxima, &mut window_winners);
                out.copy_from_slice(&maxima);
                if let Some(targets) = targets {
                    let lanes = targets.iter_mut().zip(&window_winners).zip(maxima.iter());
                    for ((target, &winner), &maximum) in lanes {
                        // A NaN maximum fails `> 0.0` as well and gets no gradient, as
                        // with the ReLU mask.
                        *target = if !RELU || maximum > 0.0 {
                            winner as u8
                        } else {
                            NO_WINNER
                        };
                    }
                }
            }
        }
    }
}

/// One pooling window over one image of convolution outputs.
struct Window<'a> {
    image: &'a [f32],
    rows: &'a Span,
    cols: &'a Span,
    /// The image width.
    width: usize,
    /// The pool's window width, which numbers the positions in a window.
    pool_width: usize,
}

/// Writes the maximum of `window` per channel into `maxima`, and the position of its first
/// occurrence into `winners`, comparing the values as [`finish`] gives them.
#[inline(always)]
fn pool_window<const BIAS: bool, const RELU: bool>(
    window: &Window<'_>,
    bias: &[f32],
    maxima: &mut [f32],
    winners: &mut [u32],
) {
    let channels = maxima.len();
    // Cut to the channel count, so that indexing by channel needs no bounds check.
    let bias = if BIAS { &bias[..channels] } else { bias };
    let mut first = true;
    for (row_offset, row) in window.rows.input_range().enumerate() {
        for (col_offset, col) in window.cols.input_range().enumerate() {
            let pixel = row * window.width + col;
            let values = &window.image[pixel * channels..(pixel + 1) * channels];
            // Fits: `FusedPool::new` takes windows of fewer than `NO_WINNER` positions.
            let code = (row_offset * window.pool_width + col_offset) as u32;
            if first {
                for (channel, (maximum, &value)) in maxima.iter_mut().zip(values).enumerate() {
                    *maximum = finish::<BIAS, RELU>(value, bias_of::<BIAS>(bias, channel));
                }
                winners.fill(code);
                first = false;
                continue;
            }
            // A strict comparison keeps the first maximum in a tie, as MaxPooling2D does, and
            // blends with a bit mask as it does.
            let lanes = maxima.iter_mut().zip(winners.iter_mut()).zip(values);
            for (channel, ((maximum, winner), &value)) in lanes.enumerate() {
                let value = finish::<BIAS, RELU>(value, bias_of::<BIAS>(bias, channel));
                let mask = ((value > *maximum) as u32).wrapping_neg();
                *maximum = f32::from_bits((value.to_bits() & mask) | (maximum.to_bits() & !mask));
                *winner = (code & mask) | (*winner & !mask);
            }
        }
    }
}

/// Returns channel `channel`'s bias when `BIAS` is set, and 0 (unused) otherwise.
#[inline(always)]
fn bias_of<const BIAS: bool>(bias: &[f32], channel: usize) -> f32 {
    if BIAS { bias[channel] } else { 0.0 }
}

/// Pools one 2 × 2 window, the most common one, in a single pass over its channels: `top`
/// and `bottom` are the window's two rows of two pixels. Gives the results of the general
/// loop in `pool_windows`.
#[inline(always)]
fn pool_two_by_two<const BIAS: bool, const RELU: bool>(
    top: &[f32],
    bottom: &[f32],
    bias: &[f32],
    out: &mut [f32],
    codes: Option<&mut [u8]>,
) {
    let channels = out.len();
    // Cut to the channel count, so that indexing by channel needs no bounds check.
    let bias = if BIAS { &bias[..channels] } else { bias };
    let (top_left, top_right) = top.split_at(channels);
    let (bottom_left, bottom_right) = bottom.split_at(channels);
    let mut scratch = [0u8; 0];
    let keep_winners = codes.is_some();
    let codes = codes.unwrap_or(&mut scratch);
    for channel in 0..channels {
        let bias = bias_of::<BIAS>(bias, channel);
        let mut maximum = finish::<BIAS, RELU>(top_left[channel], bias);
        let mut winner = 0u8;
        // In window order, each replacing the maximum only when strictly larger.
        for (value, code) in [
            (top_right[channel], 1),
            (bottom_left[channel], 2),
            (bottom_right[channel], 3),
        ] {
            let value = finish::<BIAS, RELU>(value, bias);
            let larger = value > maximum;
            maximum = if larger { value } else { maximum };
            winner = if larger { code } else { winner };
        }
        out[channel] = maximum;
        if keep_winners {
            // A NaN maximum fails `> 0.0` as well and gets no gradient, as with the ReLU mask.
            codes[channel] = if !RELU || maximum > 0.0 {
                winner
            } else {
                NO_WINNER
            };
        }
    }
}

/// [`FusedPool::unpool`], compiled for AVX-512 and AVX2 as well. Each value gets its
/// window's gradient or zero, written once, because no two windows share a value.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn unpool_windows(pool: &FusedPool, grad: &[f32], winners: &[u8], grad_values: &mut [f32]) {
    if !pool.covers_input {
        grad_values.fill(0.0);
    }
    let geometry = &pool.geometry;
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let mut pixels = grad
        .chunks_exact(channels)
        .zip(winners.chunks_exact(channels));
    for image in grad_values.chunks_exact_mut(geometry.image_len()) {
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let (grads, codes) = pixels.next().expect("one gradient per window");
                if row_span.len == 2 && col_span.len == 2 && pool.pool_width == 2 {
                    let pixel = row_span.input_start * width + col_span.input_start;
                    let (above, below) = image[pixel * channels..].split_at_mut(width * channels);
                    unpool_two_by_two(
                        grads,
                        codes,
                        &mut above[..2 * channels],
                        &mut below[..2 * channels],
                    );
                    continue;
                }
                for (row_offset, row) in row_span.input_range().enumerate() {
                    for (col_offset, col) in col_span.input_range().enumerate() {
                        let code = (row_offset * pool.pool_width + col_offset) as u8;
                        let start = (row * width + col) * channels;
                        let targets = &mut image[start..start + channels];
                        for ((target, &g), &winner) in targets.iter_mut().zip(grads).zip(codes) {
                            *target = if winner == code { g } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// Writes the gradient of one 2 × 2 window into its two rows of two pixels, `top` and
/// `bottom`, in a single pass over its channels.
#[inline(always)]
fn unpool_two_by_two(grads: &[f32], codes: &[u8], top: &mut [f32], bottom: &mut [f32]) {
    let channels = grads.len();
    let (top_left, top_right) = top.split_at_mut(channels);
    let (bottom_left, bottom_right) = bottom.split_at_mut(channels);
    for channel in 0..channels {
        let g = grads[channel];
        let code = codes[channel];
        top_left[channel] = if code == 0 { g } else { 0.0 };
        top_right[channel] = if code == 1 { g } else { 0.0 };
        bottom_left[channel] = if code == 2 { g } else { 0.0 };
        bottom_right[channel] = if code == 3 { g } else { 0.0 };
    }
}

/// Returns whether each span starts after the one before it ends.
fn disjoint_spans(spans: &[Span]) -> bool {
    spans
        .windows(2)
        .all(|pair| pair[1].input_start >= pair[0].input_start + pair[0].len)
}

/// Returns the total length of `spans`, which for spans that do not overlap is the number of
/// indices they cover.
fn covered(spans: &[Span]) -> usize {
    spans.iter().map(|span| span.len).sum()
}

#[cfg(test)]
mod tests {
    use grit_tensor::{Activation, Rng, Tensor};
    use ndarray::IxDyn;

    use crate::Layer;
    use crate::layers::{AveragePooling2D, Conv2D, MaxPooling2D, Padding};

    fn same_bits(a: &Tensor, b: &Tensor) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// Returns a batch of values in [-1, 1] with a run of equal values, which gives ties in
    /// the pooling windows, and a NaN in the run when `nan` is set. A NaN sends a Winograd
    /// convolution down its im2col path.
    fn input_with_ties(shape: &[usize], nan: bool, rng: &mut Rng) -> Tensor {
        let mut input = Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(-1.0, 1.0));
        for (index, value) in input.iter_mut().enumerate().take(40) {
            *value = if nan && index == 7 { f32::NAN } else { 0.5 };
        }
        input
    }

    /// Trains a convolution that pools its own output and the same convolution followed by
    /// a pooling layer on one batch, and asserts that outputs and gradients have the same
    /// bits.
    fn assert_fused_matches_separate(
        conv: Conv2D,
        pool: MaxPooling2D,
        input_shape: [usize; 3],
        batch: usize,
        case: &str,
    ) {
        let mut rng = Rng::new(41);
        let mut separate = conv;
        let conv_shape = separate.build(&input_shape, &mut rng).unwrap();
        // A bias of zeros, the default, would hide a bias added twice or not at all.
        for (name, weight) in separate.weights_mut() {
            if name == "bias" {
                weight.mapv_inplace(|_| rng.uniform(-0.5, 0.5));
            }
        }
        let mut pool = pool;
        pool.build(&conv_shape, &mut rng).unwrap();
        let mut fused = separate.clone();
        assert!(
            fused.fuse_next(&pool),
            "{case}: the convolution takes the pooling"
        );

        let mut shape = vec![batch];
        shape.extend(input_shape);
        let nan = input_shape[2] < 8;
        let input = input_with_ties(&shape, nan, &mut rng);
        // The training pass runs last, so the backward passes below follow it.
        let mut output_shape = Vec::new();
        for training in [false, true] {
            let expected = pool.forward(
                &separate.forward(&input, training, &mut rng),
                training,
                &mut rng,
            );
            let output = fused.forward(&input, training, &mut rng);
            assert!(
                same_bits(&output, &expected),
                "{case}: outputs differ (training {training})"
            );
            output_shape = output.shape().to_vec();
        }
        let grad_output = Tensor::from_shape_fn(IxDyn(&output_shape), |_| rng.uniform(-1.0, 1.0));
        let grad_input = fused.backward(&grad_output);
        let expected = separate.backward(&pool.backward(&grad_output));
        assert!(
            same_bits(&grad_input, &expected),
            "{case}: input gradients differ"
        );
        let weights = fused.trainable_params().into_iter().map(|p| p.grad.clone());
        let expected = separate
            .trainable_params()
            .into_iter()
            .map(|p| p.grad.clone());
        for (index, (grad, expected)) in weights.zip(expected).enumerate() {
            assert!(
                same_bits(&grad, &expected),
                "{case}: gradients of weight {index} differ"
            );
        }
    }

    #[test]
    fn fused_pooling_matches_separate_layers() {
        let relu = |filters| Conv2D::new(filters, (3, 3)).activation(Activation::Relu);
        // im2col (one input channel) and Winograd (eight), several blocks of images. Inputs
        // of fewer than 8 channels contain a NaN.
        assert_fused_matches_separate(relu(4), MaxPooling2D::new(), [10, 9, 1], 20, "im2col");
        assert_fused_matches_separate(relu(4), MaxPooling2D::new(), [10, 9, 8], 20, "winograd");
        let linear = Conv2D::new(3, (2, 2)).padding(Padding::Same);
        assert_fused_matches_separate(linear, MaxPooling2D::new(), [7, 6, 2], 3, "linear");
        // Windows that leave values out, and padded windows.
        let uneven = MaxPooling2D::new().pool_size((2, 3)).strides((3, 3));
        assert_fused_matches_separate(relu(3), uneven, [10, 9, 2], 3, "gaps");
        let padded = MaxPooling2D::new().padding(Padding::Same);
        assert_fused_matches_separate(relu(3), padded, [8, 7, 2], 3, "same padding");
    }

    #[test]
    fn fusion_declined_for_other_layers() {
        let mut rng = Rng::new(5);
        let mut softmax = Conv2D::new(2, (3, 3)).activation(Activation::Softmax);
        softmax.build(&[6, 6, 1], &mut rng).unwrap();
        let mut pool = MaxPooling2D::new();
        pool.build(&[4, 4, 2], &mut rng).unwrap();
        assert!(!softmax.fuse_next(&pool), "softmax before the pooling");

        let mut relu = Conv2D::new(2, (3, 3)).activation(Activation::Relu);
        relu.build(&[6, 6, 1], &mut rng).unwrap();
        assert!(!relu.fuse_next(&AveragePooling2D::new()), "average pooling");
        let huge = MaxPooling2D::new()
            .pool_size((16, 16))
            .padding(Padding::Same);
        assert!(!relu.fuse_next(&huge), "a window of 256 positions");
        // Windows at columns 0, 2 and 4 of a 7 × 7 output, three wide.
        let overlapping = MaxPooling2D::new().pool_size((3, 3)).strides((2, 2));
        let mut larger = Conv2D::new(2, (3, 3)).activation(Activation::Relu);
        larger.build(&[9, 9, 1], &mut rng).unwrap();
        assert!(!larger.fuse_next(&overlapping), "overlapping windows");
        assert!(
            !Conv2D::new(2, (3, 3)).fuse_next(&pool),
            "an unbuilt convolution"
        );
    }

    /// The convolution picks its Winograd or im2col path by the largest gradient value, so
    /// that value must be the same with and without the pooling inside it: 3e9 takes the
    /// Winograd path, 5e9 (over 2^32) the im2col path.
    #[test]
    fn large_gradients_take_the_same_path() {
        let mut rng = Rng::new(8);
        let mut separate = Conv2D::new(4, (3, 3)).activation(Activation::Relu);
        let conv_shape = separate.build(&[10, 10, 8], &mut rng).unwrap();
        let mut pool = MaxPooling2D::new();
        pool.build(&conv_shape, &mut rng).unwrap();
        let mut fused = separate.clone();
        assert!(fused.fuse_next(&pool));
        let input = Tensor::from_shape_fn(IxDyn(&[2, 10, 10, 8]), |_| rng.uniform(-1.0, 1.0));
        for value in [3e9, 5e9] {
            let output = fused.forward(&input, true, &mut rng);
            pool.forward(&separate.forward(&input, true, &mut rng), true, &mut rng);
            let grad_output = Tensor::from_elem(IxDyn(output.shape()), value);
            let grad_input = fused.backward(&grad_output);
            let expected = separate.backward(&pool.backward(&grad_output));
            assert!(
                same_bits(&grad_input, &expected),
                "{value}: input gradients differ"
            );
            let kernel_grad = fused.trainable_params()[0].grad.clone();
            let expected = separate.trainable_params()[0].grad.clone();
            assert!(
                same_bits(&kernel_grad, &expected),
                "{value}: kernel gradients differ"
            );
        }
    }

    #[test]
    fn build_undoes_fusion() {
        let mut rng = Rng::new(6);
        let mut conv = Conv2D::new(2, (3, 3)).activation(Activation::Relu);
        conv.build(&[6, 6, 1], &mut rng).unwrap();
        let mut pool = MaxPooling2D::new();
        pool.build(&[4, 4, 2], &mut rng).unwrap();
        assert!(conv.fuse_next(&pool));
        conv.build(&[6, 6, 1], &mut rng).unwrap();
        let output = conv.forward(&Tensor::zeros(IxDyn(&[1, 6, 6, 1])), false, &mut rng);
        assert_eq!(output.shape(), &[1, 4, 4, 2]);
    }
}
