use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Callback, Context, Logs};
use crate::Result;

/// Standard output shared by the progress display and callbacks' messages: a message printed
/// while a bar is drawn goes above the bar instead of through it.
#[derive(Debug)]
pub(crate) struct Console {
    bar: Option<ProgressBar>,
}

impl Console {
    pub(crate) fn new() -> Self {
        Console { bar: None }
    }

    pub(crate) fn println(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{message}")),
            None => println!("{message}"),
        }
    }
}

/// Formats logs as `loss: 0.1234 - accuracy: 0.9700`, with small values in scientific form.
pub(crate) fn format_logs(logs: &Logs) -> String {
    logs.iter()
        .map(|(key, value)| format!("{key}: {}", format_value(*value)))
        .collect::<Vec<_>>()
        .join(" - ")
}

fn format_value(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-3 {
        format!("{value:.4e}")
    } else {
        format!("{value:.4}")
    }
}

/// The progress display that `fit` appends after the user's callbacks when `verbose` > 0.
///
/// With verbose 1 on a terminal it draws a bar per epoch (steps, elapsed time, ETA and the
/// running loss and metrics), finished with the epoch's values, `val_*` and `learning_rate`
/// included. With verbose 2, or when standard output is not a terminal, it prints one plain
/// line per epoch and writes no control characters.
#[derive(Debug)]
pub(crate) struct ProgressLogger {
    use_bar: bool,
    epochs: usize,
    started: Option<Instant>,
}

impl ProgressLogger {
    pub(crate) fn new(verbose: u8) -> Self {
        ProgressLogger {
            use_bar: verbose == 1 && std::io::stdout().is_terminal(),
            epochs: 0,
            started: None,
        }
    }
}

impl Callback for ProgressLogger {
    fn name(&self) -> &str {
        "ProgressLogger"
    }

    fn on_train_begin(&mut self, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.epochs = ctx.run().epochs;
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.started = Some(Instant::now());
        if self.use_bar {
            if self.epochs > 1 {
                ctx.println(&format!("Epoch {}/{}", epoch + 1, self.epochs));
            }
            let bar = ProgressBar::with_draw_target(
                Some(ctx.run().steps_per_epoch as u64),
                ProgressDrawTarget::stdout(),
            );
            let style =
                ProgressStyle::with_template("{pos:>5}/{len} [{bar:25}] {elapsed} ETA {eta} {msg}")
                    .expect("the template is valid")
                    .progress_chars("=> ");
            bar.set_style(style);
            ctx.console().bar = Some(bar);
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(bar) = &ctx.console().bar {
            bar.inc(1);
            bar.set_message(format_logs(logs));
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        let seconds = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        match ctx.console().bar.take() {
            Some(bar) => bar.finish_with_message(format!("{} - {seconds:.1}s", format_logs(logs))),
            None => ctx.println(&format!(
                "Epoch {}/{} - {seconds:.1}s - {}",
                epoch + 1,
                self.epochs,
                format_logs(logs)
            )),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_logs_in_key_order() {
        let logs = Logs::from([
            ("val_loss".to_string(), 0.25),
            ("loss".to_string(), 0.5),
            ("learning_rate".to_string(), 1e-5),
        ]);
        assert_eq!(
            format_logs(&logs),
            "learning_rate: 1.0000e-5 - loss: 0.5000 - val_loss: 0.2500"
        );
    }
}
