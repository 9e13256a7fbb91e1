use super::{Callback, Context, Logs};
use crate::Result;

type IndexHook = Box<dyn FnMut(usize, &mut Context, &mut Logs)>;
type PlainHook = Box<dyn FnMut(&mut Context, &mut Logs)>;

/// A callback made of closures, one per hook (Keras's `LambdaCallback`).
///
/// Hooks without a closure do nothing. Hooks with an index (epoch or batch) receive it first.
///
/// ```
/// use grit_train::callbacks::LambdaCallback;
///
/// let printer = LambdaCallback::new().on_epoch_end(|epoch, _ctx, logs| {
///     println!("epoch {epoch}: loss {:?}", logs.get("loss"));
/// });
/// ```
#[derive(Default)]
pub struct LambdaCallback {
    on_train_begin: Option<PlainHook>,
    on_train_end: Option<PlainHook>,
    on_epoch_begin: Option<IndexHook>,
    on_epoch_end: Option<IndexHook>,
    on_train_batch_begin: Option<IndexHook>,
    on_train_batch_end: Option<IndexHook>,
    on_test_begin: Option<PlainHook>,
    on_test_end: Option<PlainHook>,
    on_test_batch_begin: Option<IndexHook>,
    on_test_batch_end: Option<IndexHook>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $($arg:ty),*) => {
        $(#[$doc])*
        pub fn $name(mut self, hook: impl FnMut($($arg),*) + 'static) -> Self {
            self.$name = Some(Box::new(hook));
            self
        }
    };
}

impl LambdaCallback {
    /// Creates a callback with no hooks.
    pub fn new() -> Self {
        LambdaCallback::default()
    }

    setter!(/// Runs `hook` at train begin.
        on_train_begin, PlainHook, &mut Context, &mut Logs);
    setter!(/// Runs `hook` at train end.
        on_train_end, PlainHook, &mut Context, &mut Logs);
    setter!(/// Runs `hook(epoch, ...)` at each epoch begin.
        on_epoch_begin, IndexHook, usize, &mut Context, &mut Logs);
    setter!(/// Runs `hook(epoch, ...)` at each epoch end.
        on_epoch_end, IndexHook, usize, &mut Context, &mut Logs);
    setter!(/// Runs `hook(batch, ...)` before each training batch.
        on_train_batch_begin, IndexHook, usize, &mut Context, &mut Logs);
    setter!(/// Runs `hook(batch, ...)` after each training batch.
        on_train_batch_end, IndexHook, usize, &mut Context, &mut Logs);
    setter!(/// Runs `hook` before validation or evaluation.
        on_test_begin, PlainHook, &mut Context, &mut Logs);
    setter!(/// Runs `hook` after validation or evaluation.
        on_test_end, PlainHook, &mut Context, &mut Logs);
    setter!(/// Runs `hook(batch, ...)` before each validation batch.
        on_test_batch_begin, IndexHook, usize, &mut Context, &mut Logs);
    setter!(/// Runs `hook(batch, ...)` after each validation batch.
        on_test_batch_end, IndexHook, usize, &mut Context, &mut Logs);
}

impl Callback for LambdaCallback {
    fn name(&self) -> &str {
        "LambdaCallback"
    }

    fn on_train_begin(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_train_begin {
            hook(ctx, logs);
        }
        Ok(())
    }

    fn on_train_end(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_train_end {
            hook(ctx, logs);
        }
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_epoch_begin {
            hook(epoch, ctx, logs);
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_epoch_end {
            hook(epoch, ctx, logs);
        }
        Ok(())
    }

    fn on_train_batch_begin(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(hook) = &mut self.on_train_batch_begin {
            hook(batch, ctx, logs);
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(hook) = &mut self.on_train_batch_end {
            hook(batch, ctx, logs);
        }
        Ok(())
    }

    fn on_test_begin(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_test_begin {
            hook(ctx, logs);
        }
        Ok(())
    }

    fn on_test_end(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if let Some(hook) = &mut self.on_test_end {
            hook(ctx, logs);
        }
        Ok(())
    }

    fn on_test_batch_begin(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(hook) = &mut self.on_test_batch_begin {
            hook(batch, ctx, logs);
        }
        Ok(())
    }

    fn on_test_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(hook) = &mut self.on_test_batch_end {
            hook(batch, ctx, logs);
        }
        Ok(())
    }
}
