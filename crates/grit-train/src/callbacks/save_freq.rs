//! How often ModelCheckpoint and BackupAndRestore save, and the batch counter they share.

use crate::{Result, TrainError};

/// How often a saving callback saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveFrequency {
    /// At the end of every epoch (Keras's `"epoch"`).
    #[default]
    Epoch,
    /// Every this many training batches, counted across epochs as Keras does: with 5 batches
    /// per epoch, `Batches(15)` saves after the last batch of epochs 3, 6, 9, ... (1-based).
    /// Must be at least 1.
    Batches(usize),
}

impl SaveFrequency {
    /// Rejects `Batches(0)`.
    pub(crate) fn validate(self, callback: &'static str) -> Result<()> {
        if self == SaveFrequency::Batches(0) {
            return Err(TrainError::InvalidCallback {
                callback,
                message: "save_freq is Batches(0). Use SaveFrequency::Epoch or Batches(n) with \
                          n of at least 1"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Counts training batches across epochs for [`SaveFrequency::Batches`].
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchCounter {
    pub(crate) since_save: usize,
}

impl BatchCounter {
    /// Counts one batch and returns whether `every` batches have passed since the last save,
    /// restarting the count when they have.
    pub(crate) fn tick(&mut self, every: usize) -> bool {
        self.since_save += 1;
        if self.since_save >= every {
            self.since_save = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_carries_across_epochs() {
        let mut counter = BatchCounter::default();
        let fired: Vec<usize> = (1..=30).filter(|_| counter.tick(15)).collect();
        assert_eq!(fired, vec![15, 30]);
        assert_eq!(counter.since_save, 0);
    }

    #[test]
    fn zero_batches_is_rejected() {
        let error = SaveFrequency::Batches(0)
            .validate("ModelCheckpoint")
            .unwrap_err()
            .to_string();
        assert!(error.contains("Batches(0)"), "{error}");
        assert!(
            SaveFrequency::Batches(1)
                .validate("ModelCheckpoint")
                .is_ok()
        );
        assert!(SaveFrequency::Epoch.validate("ModelCheckpoint").is_ok());
    }
}
