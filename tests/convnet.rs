//! Keras's MNIST convnet trained on a real MNIST subset.

use grit::prelude::*;
use ndarray::{Array1, s};

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
