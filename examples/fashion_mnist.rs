//! Trains an MLP and Keras's MNIST convnet on Fashion-MNIST and compares their test
//! accuracy.
//!
//! Run with `cargo run --release --example fashion_mnist [EPOCHS]` (default 20). The data goes
//! to `datasets/fashion-mnist` and is fetched from the Debian package `dataset-fashion-mnist`
//! when missing (`apt-get update` may be needed once).

use grit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let dir = grit::data::dataset_dir(
        concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"),
        "fashion-mnist",
    );
    grit::data::ensure_fashion_mnist(&dir)?;
    let data = FashionMnist::load(&dir)?;
    let epochs = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(20);

    let mlp = Sequential::new([28, 28])
        .seed(1)
        .add(Flatten::new())
        .add(Dense::new(256).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    let convnet = Sequential::new([28, 28])
        .seed(1)
        .add(Reshape::new([28, 28, 1]))
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Conv2D::new(64, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(10).activation(Activation::Softmax));

    let mut results = Vec::new();
    for (name, mut model) in [("MLP", mlp), ("convnet", convnet)] {
        println!("== {name}");
        model.compile(
            Adam::new(1e-3),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [Metric::Accuracy],
        )?;
        let mut early_stopping = EarlyStopping::new("val_loss")
            .patience(2)
            .restore_best_weights(true);
        let options = FitOptions::new()
            .epochs(epochs)
            .batch_size(128)
            .validation_split(0.1);
        model.fit(
            &data.train_images,
            &data.train_labels,
            &options,
            &mut [&mut early_stopping],
        )?;
        let test = model.evaluate(&data.test_images, &data.test_labels, 1000)?;
        results.push((name, test["accuracy"]));
    }
    for (name, accuracy) in results {
        println!("{name}: test accuracy {accuracy:.4}");
    }
    Ok(())
}
