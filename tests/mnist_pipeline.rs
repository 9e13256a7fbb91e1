//! The MNIST pipeline end to end on the official files: fetch-checked data, a subset for
//! training, the real test images for evaluation.

use grit::prelude::*;
use ndarray::{Array1, s};

fn mnist_dir() -> std::path::PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

#[test]
fn mlp_on_a_subset_beats_ninety_percent() {
    let data = Mnist::load(mnist_dir())
        .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
    let x = data.train_images.take(10_000);
    let y: Array1<u8> = data.train_labels.slice(s![..10_000]).to_owned();
    let mut model = Sequential::new([28, 28])
        .seed(1)
        .add(Flatten::new())
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::new()
        .epochs(3)
        .batch_size(128)
        .validation_split(0.1)
        .verbose(0);
    let history = model.fit(&x, &y, &options, &mut []).unwrap();
    let losses = history.values("loss");
    assert!(
        losses[2] < losses[0],
        "training loss should fall: {losses:?}"
    );
    let test = model
        .evaluate(&data.test_images, &data.test_labels, 1000)
        .unwrap();
    println!(
        "test accuracy on 10000 real images: {:.4}",
        test["accuracy"]
    );
    assert!(
        test["accuracy"] > 0.90,
        "test accuracy {}",
        test["accuracy"]
    );
    let predictions = model.predict(&data.test_images.take(100), 50).unwrap();
    let sums: Vec<f32> = predictions.rows().into_iter().map(|r| r.sum()).collect();
    assert!(
        sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
        "softmax rows sum to 1"
    );
}
