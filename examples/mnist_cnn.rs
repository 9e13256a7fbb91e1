//! Trains Keras's MNIST convnet on the official files and reports its test accuracy.
//!
//! Run with `cargo run --release --example mnist_cnn`. The architecture is the one of Keras's
//! "Simple MNIST convnet" example: two 3×3 convolutions with max pooling, dropout 0.5 and a
//! softmax layer, trained with Adam at 1e-3 on batches of 128. EarlyStopping ends the run
//! when the validation loss stops improving, and ModelCheckpoint keeps the best epoch in
//! `runs/mnist_cnn/best.safetensors`.

use grit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let dir = grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist");
    grit::data::ensure_mnist(&dir)?;
    let data = Mnist::load(&dir)?;
    let epochs = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(15);

    let mut model = convnet(42);
    model.compile(
        Adam::new(1e-3),
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        [Metric::Accuracy],
    )?;
    print!("{}", model.summary());

    let mut early_stopping = EarlyStopping::new("val_loss")
        .patience(3)
        .restore_best_weights(true);
    let mut checkpoint =
        ModelCheckpoint::new("runs/mnist_cnn/best.safetensors").save_best_only(true);
    let options = FitOptions::new()
        .epochs(epochs)
        .batch_size(128)
        .validation_split(0.1);
    model.fit(
        &data.train_images,
        &data.train_labels,
        &options,
        &mut [&mut early_stopping, &mut checkpoint],
    )?;

    let test = model.evaluate(&data.test_images, &data.test_labels, 1000)?;
    println!("test loss: {:.4}", test["loss"]);
    println!("test accuracy: {:.4}", test["accuracy"]);
    Ok(())
}

/// Keras's MNIST convnet for 28×28 grey-scale images and 10 classes.
fn convnet(seed: u64) -> Sequential {
    Sequential::new([28, 28])
        .seed(seed)
        .add(Reshape::new([28, 28, 1]))
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Conv2D::new(64, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new())
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(10).activation(Activation::Softmax))
}
