//! Keras's MNIST convnet trained on a real MNIST subset.

use grit::prelude::*;
use grit::tensor::Rng;
use ndarray::{Array1, IxDyn, s};

fn mnist_dir() -> std::path::PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

#[test]
fn convnet_on_a_subset_beats_ninety_five_percent() {
    let data = Mnist::load(mnist_dir())
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
    let x = data.train_images.take(16000);
    let y: Array1<u8> = data.train_labels.slice(s![..16000]).to_owned();
    let test_x = data.test_images.take(2000);
    let test_y: Array1<u8> = data.test_labels.slice(s![..2000]).to_owned();
    let mut model = Sequential::new([28, 28])
        .seed(3)
        .add(Reshape::new([28, 28, 1]))
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Conv2D::new(64, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::new().epochs(4).batch_size(128).verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    let test = model.evaluate(&test_x, &test_y, 500).unwrap();
    println!(
        "losses {:?}, test accuracy {:.4}",
        history.values("loss"),
        test["accuracy"]
    );
    assert!(
        test["accuracy"] > 0.95,
        "test accuracy {}",
        test["accuracy"]
    );
}

/// Builds a two-convolution model for 16 × 16 images. With `separate` set, a linear
/// activation layer sits between each convolution and its pooling, which keeps the
/// convolution from computing the pooling itself.
fn small_convnet(separate: bool) -> Sequential {
    let mut model = Sequential::new([16, 16, 1]).seed(9);
    for filters in [8, 8] {
        model = model.add(Conv2D::new(filters, (3, 3)).activation(Activation::Relu));
        if separate {
            model = model.add(ActivationLayer::new(Activation::Linear));
        }
        model = model.add(MaxPooling2D::new());
    }
    model
        .add(Flatten::new())
        .add(Dense::new(3).activation(Activation::Softmax))
}

/// The first convolution takes im2col and the second Winograd's path (8 input channels);
/// both compute the pooling after them. Training must give the bits of the separate layers.
#[test]
fn fused_pooling_trains_like_separate_layers() {
    let mut rng = Rng::new(4);
    let x = Tensor::from_shape_fn(IxDyn(&[80, 16, 16, 1]), |_| rng.uniform(-1.0, 1.0));
    let y = Array1::from_shape_fn(80, |i| (i % 3) as u8);
    let train = |separate| {
        let mut model = small_convnet(separate);
        model
            .compile(Adam::new(1e-2), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [])
            .unwrap();
        let options = FitOptions::new().epochs(3).batch_size(16).verbose(0);
        let history = model.fit(&x, &y, &options, &mut []).unwrap();
        let weights: Vec<Tensor> = model.get_weights().into_iter().map(|(_, w)| w).collect();
        (history.values("loss"), weights)
    };
    let (fused_losses, fused_weights) = train(false);
    let (separate_losses, separate_weights) = train(true);
    assert_eq!(fused_losses, separate_losses);
    assert!(
        fused_losses.last() < fused_losses.first(),
        "the loss falls: {fused_losses:?}"
    );
    assert_eq!(fused_weights.len(), separate_weights.len());
    for (index, (fused, separate)) in fused_weights.iter().zip(&separate_weights).enumerate() {
        let same = fused
            .iter()
            .zip(separate)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "weight {index} differs after training");
    }
}
