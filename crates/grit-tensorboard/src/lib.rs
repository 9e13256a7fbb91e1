//! TensorBoard logging for grit, with no TensorFlow: an event-file writer and the Keras-style
//! [`TensorBoard`] callback.
//!
//! The callback plugs into `grit_train`'s `fit` loop and writes Keras's `train/` and
//! `validation/` runs with Keras's tags and steps:
//!
//! ```no_run
//! use grit_tensorboard::{TensorBoard, UpdateFreq};
//! use grit_train::prelude::*;
//!
//! let x = ndarray::array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let y = ndarray::array![[0.0f32], [1.0], [1.0], [0.0]];
//! let mut model = Sequential::new([2])
//!     .add(Dense::new(8).activation(Activation::Tanh))
//!     .add(Dense::new(1).activation(Activation::Sigmoid));
//! model.compile(Adam::new(0.05), Loss::BINARY_CROSSENTROPY, [Metric::Accuracy])?;
//!
//! // Writes runs/adam/train and runs/adam/validation.
//! let mut tensorboard = TensorBoard::new("runs")
//!     .run_name("adam")
//!     .histogram_freq(1)
//!     .update_freq(UpdateFreq::Batches(10));
//! let options = FitOptions::new().epochs(100).batch_size(4).validation_data(&x, &y);
//! model.fit(&x, &y, &options, &mut [&mut tensorboard])?;
//! # Ok::<(), TrainError>(())
//! ```
//!
//! Below the callback, an [`EventWriter`], which has no knowledge of models, creates one
//! `events.out.tfevents.*` file in a directory and appends scalars, histograms and text in the
//! tensor form that TF2's `tf.summary` (and so Keras) writes. TensorBoard shows each directory of event files as one run.
//!
//! ```no_run
//! use grit_tensorboard::EventWriter;
//!
//! # fn main() -> Result<(), grit_tensorboard::TensorBoardError> {
//! let mut train = EventWriter::create("logs/train")?;
//! train.write_text("keras", 0, "model config")?;
//! for epoch in 0..3 {
//!     train.write_scalar("epoch_loss", epoch, 1.0 / (epoch as f32 + 1.0))?;
//! }
//! train.write_histogram("dense/kernel/histogram", 2, &[0.1, -0.2, 0.3])?;
//! train.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! The format in brief: each file is a sequence of records ([`record`]), each record contains a
//! serialized [`proto::Event`], and the first event of a file carries only the file version.

#![warn(missing_docs)]

mod callback;
mod error;
pub mod proto;
pub mod record;
pub mod summary;
mod writer;

pub use callback::{
    MODEL_CONFIG_TAG, TRAIN_DIR, TensorBoard, UpdateFreq, VALIDATION_DIR, model_config_text,
};
pub use error::TensorBoardError;
pub use writer::{EventWriter, FILE_VERSION, read_events};
