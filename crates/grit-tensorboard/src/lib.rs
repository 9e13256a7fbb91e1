//! Writer of TensorBoard event files, with no TensorFlow and no knowledge of models.
//!
//! An [`EventWriter`] creates one `events.out.tfevents.*` file in a directory and appends
//! scalars, histograms and text in the tensor form that TF2's `tf.summary` (and so Keras)
//! writes. TensorBoard shows each directory of event files as one run.
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

mod error;
pub mod proto;
pub mod record;
pub mod summary;
mod writer;

pub use error::TensorBoardError;
pub use writer::{EventWriter, FILE_VERSION, read_events};
