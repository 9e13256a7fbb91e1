//! Trains the 784-128-10 MLP on MNIST with a backup after every epoch and a best-model
//! checkpoint, so that an interrupted run continues where it stopped.
//!
//! Run with `cargo run --release --example resume`, stop it with Ctrl-C in the middle of an
//! epoch, and run the same command again. The second run restores
//! `runs/resume/backup/latest.safetensors` and continues from the last completed epoch. It
//! ends with the same weights as a run that was never stopped. The best model by validation
//! accuracy is kept in `runs/resume/best.safetensors`, which the example loads and evaluates
//! at the end. The data goes to `datasets/mnist` (or the folder in `GRIT_DATASETS`) and is
//! fetched when missing.

use grit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let dir = grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist");
    grit::data::ensure_mnist(&dir)?;
    let data = Mnist::load(&dir)?;

    let mut model = Sequential::new([28, 28])
        .seed(42)
        .add(Flatten::new())
        .add(Dense::new(128).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax));
    let schedule = ExponentialDecay::new(1e-3, 1000, 0.8)?;
    model.compile(
        Adam::new(schedule),
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        [Metric::Accuracy],
    )?;

    let best_path = "runs/resume/best.safetensors";
    let mut checkpoint = ModelCheckpoint::new(best_path)
        .monitor("val_accuracy")
        .save_best_only(true)
        .verbose(1);
    let mut early_stopping = EarlyStopping::new("val_loss").patience(3);
    let mut backup = BackupAndRestore::new("runs/resume/backup");
    let options = FitOptions::new()
        .epochs(10)
        .batch_size(128)
        .validation_split(0.1);
    model.fit(
        &data.train_images,
        &data.train_labels,
        &options,
        &mut [&mut checkpoint, &mut early_stopping, &mut backup],
    )?;

    let mut best = Sequential::load(best_path)?;
    let test = best.evaluate(&data.test_images, &data.test_labels, 1000)?;
    println!(
        "best model (epoch {}): test accuracy {:.4}",
        best.completed_epochs(),
        test["accuracy"]
    );
    Ok(())
}
