use super::{Callback, Context, Logs};
use crate::{Result, TrainError};

/// Stops training when the training loss becomes NaN or infinite (Keras's
/// `TerminateOnNaN`).
///
/// It reads the running `loss` after each training batch. By default it asks `fit` to stop:
/// the partial epoch is still validated and recorded, and `on_train_end` runs. With
/// [`TerminateOnNaN::raise_error`], `fit` returns [`TrainError::NonFiniteLoss`] at once and
/// `on_train_end` does not run, so backups written so far stay in place.
#[derive(Debug, Default)]
pub struct TerminateOnNaN {
    raise_error: bool,
    epoch: usize,
}

impl TerminateOnNaN {
    /// Stops training gracefully on a non-finite loss.
    pub fn new() -> Self {
        TerminateOnNaN::default()
    }

    /// Makes `fit` return an error instead of stopping gracefully.
    pub fn raise_error(mut self, raise: bool) -> Self {
        self.raise_error = raise;
        self
    }
}

impl Callback for TerminateOnNaN {
    fn name(&self) -> &str {
        "TerminateOnNaN"
    }

    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        let Some(&loss) = logs.get("loss") else {
            return Ok(());
        };
        if loss.is_finite() {
            return Ok(());
        }
        if self.raise_error {
            return Err(TrainError::NonFiniteLoss {
                epoch: self.epoch,
                batch,
                loss,
            });
        }
        ctx.println(&format!(
            "Batch {batch}: Invalid loss, terminating training"
        ));
        ctx.stop_training();
        Ok(())
    }
}
