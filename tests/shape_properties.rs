//! Property tests of the shape algebra of every layer, over generated settings and input
//! shapes. `build` must return the documented output shape, or an error when no output exists.
//! The forward pass must return `(batch, output...)` and the backward pass the input's shape.
//! Batches have 1 sample or a prime number of samples, and axes of size 1 are included,
//! because those are the sizes where an off-by-one or a squeezed axis shows.

use grit::nn::NnError;
use grit::prelude::*;
use grit::tensor::Rng;
use ndarray::IxDyn;
use proptest::prelude::*;

/// Batch sizes: 1 and primes, which divide nothing.
fn batch_size() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1usize, 2, 3, 5, 7, 13])
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![Just(Padding::Valid), Just(Padding::Same)]
}

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(vec![
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::LEAKY_RELU,
        Activation::Gelu,
        Activation::Softplus,
    ])
}

/// Returns a tensor of `shape` with values in [-1, 1) drawn from `seed`.
fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(-1.0, 1.0))
}

fn with_batch(batch: usize, sample_shape: &[usize]) -> Vec<usize> {
    let mut shape = vec![batch];
    shape.extend_from_slice(sample_shape);
    shape
}

/// Returns the output size of a windowed axis, as `Padding` documents it, or `None` when no
/// valid window fits.
fn window_output(input: usize, window: usize, stride: usize, padding: Padding) -> Option<usize> {
    match padding {
        Padding::Valid if window > input => None,
        Padding::Valid => Some((input - window) / stride + 1),
        Padding::Same => Some(input.div_ceil(stride)),
    }
}

/// Builds `layer` for `input_shape`, checks that it returns `expected`, then runs a training
/// forward pass and a backward pass on a batch of `batch` and checks their shapes.
fn check_layer(
    mut layer: Box<dyn Layer>,
    input_shape: &[usize],
    expected: &[usize],
    batch: usize,
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(1);
    let output_shape = layer
        .build(input_shape, &mut rng)
        .map_err(|error| TestCaseError::fail(format!("build failed: {error}")))?;
    prop_assert_eq!(&output_shape, &expected);

    let input = random_tensor(&with_batch(batch, input_shape), 2);
    let output = layer.forward(&input, true, &mut rng);
    let expected_output = with_batch(batch, expected);
    prop_assert_eq!(output.shape(), expected_output.as_slice());
    prop_assert!(output.iter().all(|value| value.is_finite()));

    let gradient = random_tensor(output.shape(), 3);
    let input_gradient = layer.backward(&gradient);
    prop_assert_eq!(input_gradient.shape(), input.shape());
    prop_assert!(input_gradient.iter().all(|value| value.is_finite()));

    let inference = layer.forward(&input, false, &mut rng);
    prop_assert_eq!(inference.shape(), output.shape());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_shapes(
        inputs in 1usize..=16,
        units in 1usize..=16,
        activation in activation(),
        use_bias in any::<bool>(),
        batch in batch_size(),
    ) {
        let layer = Dense::new(units).activation(activation).use_bias(use_bias);
        check_layer(Box::new(layer), &[inputs], &[units], batch)?;
    }

    #[test]
    fn conv2d_shapes(
        height in 1usize..=9,
        width in 1usize..=9,
        channels in 1usize..=3,
        filters in 1usize..=4,
        kernel in (1usize..=4, 1usize..=4),
        strides in (1usize..=3, 1usize..=3),
        padding in padding(),
        batch in batch_size(),
    ) {
        let layer = Conv2D::new(filters, kernel).strides(strides).padding(padding);
        let rows = window_output(height, kernel.0, strides.0, padding);
        let cols = window_output(width, kernel.1, strides.1, padding);
        match (rows, cols) {
            (Some(rows), Some(cols)) => check_layer(
                Box::new(layer),
                &[height, width, channels],
                &[rows, cols, filters],
                batch,
            )?,
            _ => {
                let mut layer = layer;
                let error = layer
                    .build(&[height, width, channels], &mut Rng::new(0))
                    .unwrap_err();
                let is_shape_error = matches!(error, NnError::IncompatibleShape { .. });
                prop_assert!(is_shape_error, "{}", error);
            }
        }
    }

    #[test]
    fn pooling_shapes(
        height in 1usize..=9,
        width in 1usize..=9,
        channels in 1usize..=3,
        pool in (1usize..=4, 1usize..=4),
        strides in proptest::option::of((1usize..=3, 1usize..=3)),
        padding in padding(),
        average in any::<bool>(),
        batch in batch_size(),
    ) {
        let effective = strides.unwrap_or(pool);
        let rows = window_output(height, pool.0, effective.0, padding);
        let cols = window_output(width, pool.1, effective.1, padding);
        let layer: Box<dyn Layer> = if average {
            let mut layer = AveragePooling2D::new().pool_size(pool).padding(padding);
            if let Some(strides) = strides {
                layer = layer.strides(strides);
            }
            Box::new(layer)
        } else {
            let mut layer = MaxPooling2D::new().pool_size(pool).padding(padding);
            if let Some(strides) = strides {
                layer = layer.strides(strides);
            }
            Box::new(layer)
        };
        match (rows, cols) {
            (Some(rows), Some(cols)) => check_layer(
                layer,
                &[height, width, channels],
                &[rows, cols, channels],
                batch,
            )?,
            _ => {
                let mut layer = layer;
                let error = layer
                    .build(&[height, width, channels], &mut Rng::new(0))
                    .unwrap_err();
                let is_shape_error = matches!(error, NnError::IncompatibleShape { .. });
                prop_assert!(is_shape_error, "{}", error);
            }
        }
    }

    #[test]
    fn global_average_pooling_shapes(
        height in 1usize..=8,
        width in 1usize..=8,
        channels in 1usize..=4,
        keepdims in any::<bool>(),
        batch in batch_size(),
    ) {
        let layer = GlobalAveragePooling2D::new().keepdims(keepdims);
        let expected = if keepdims { vec![1, 1, channels] } else { vec![channels] };
        check_layer(Box::new(layer), &[height, width, channels], &expected, batch)?;
    }

    #[test]
    fn shape_preserving_layers(
        sample_shape in prop::collection::vec(1usize..=5, 1..=3),
        rate in 0.0f32..0.9,
        activation in activation(),
        batch in batch_size(),
    ) {
        check_layer(Box::new(Dropout::new(rate)), &sample_shape, &sample_shape, batch)?;
        check_layer(
            Box::new(BatchNormalization::new()),
            &sample_shape,
            &sample_shape,
            batch,
        )?;
        check_layer(
            Box::new(ActivationLayer::new(activation)),
            &sample_shape,
            &sample_shape,
            batch,
        )?;
    }

    #[test]
    fn flatten_shapes(
        sample_shape in prop::collection::vec(1usize..=5, 1..=4),
        batch in batch_size(),
    ) {
        let size: usize = sample_shape.iter().product();
        check_layer(Box::new(Flatten::new()), &sample_shape, &[size], batch)?;
    }

    /// The target shape regroups the input's factors into new axes, with at most one `-1`.
    #[test]
    fn reshape_shapes(
        factors in prop::collection::vec(1usize..=4, 1..=5),
        split in 0usize..=5,
        infer in proptest::option::of(0usize..=5),
        batch in batch_size(),
    ) {
        let split = split.min(factors.len());
        let size: usize = factors.iter().product();
        let input_shape = vec![size];
        let mut target: Vec<usize> = factors[..split].to_vec();
        target.push(factors[split..].iter().product());
        let mut target_shape: Vec<isize> = target.iter().map(|&d| d as isize).collect();
        if let Some(axis) = infer {
            let axis = axis.min(target_shape.len() - 1);
            target_shape[axis] = -1;
        }
        check_layer(Box::new(Reshape::new(target_shape)), &input_shape, &target, batch)?;
    }

    /// A whole model predicts `(n, output...)` for any number of samples and batch size, and
    /// each sample's output does not depend on the batch it was computed in.
    #[test]
    fn model_predict_shapes(
        samples in prop::sample::select(vec![1usize, 2, 7, 13]),
        batch in batch_size(),
        filters in 1usize..=3,
        units in 1usize..=5,
    ) {
        let mut model = Sequential::new([6, 5, 1])
            .seed(4)
            .add(Conv2D::new(filters, (3, 2)).padding(Padding::Same))
            .add(BatchNormalization::new())
            .add(MaxPooling2D::new())
            .add(Flatten::new())
            .add(Dropout::new(0.5))
            .add(Dense::new(units).activation(Activation::Softmax));
        let x = random_tensor(&[samples, 6, 5, 1], 9);
        let output = model.predict(&x, batch).unwrap();
        prop_assert_eq!(output.shape(), &[samples, units]);
        let one_by_one = model.predict(&x, 1).unwrap();
        for (a, b) in output.iter().zip(one_by_one.iter()) {
            prop_assert!((a - b).abs() <= 1e-6, "{} against {}", a, b);
        }
    }
}
