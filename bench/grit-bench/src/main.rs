//! Trains one of the benchmark models on MNIST with grit and prints one JSON line of results.
//!
//! `bench/run.py` runs this binary next to `bench/keras_train.py`, which trains the same model
//! in Keras 3 and prints a line with the same fields. Both sides train without validation,
//! with progress output off, and evaluate the test set in batches of 1000.
//!
//! ```text
//! grit-bench --model mlp|cnn [--epochs N] [--batch-size B] [--hidden H] [--seed S] [--data DIR]
//! ```
//!
//! grit computes on rayon's global pool: `RAYON_NUM_THREADS` threads, or one per CPU when it
//! is unset. The JSON line records the pool's thread count.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use grit::prelude::*;
use grit::tensor::ndarray::IxDyn;
use serde_json::json;

/// Test-set evaluation batch size, the same in `keras_train.py`.
const EVALUATE_BATCH_SIZE: usize = 1000;

const USAGE: &str = "\
usage: grit-bench --model mlp|cnn [options]
       grit-bench --probe

Trains a model on MNIST and prints one JSON line with per-epoch wall times and test accuracy.

options:
  --model mlp|cnn     mlp: 784-H-10 with ReLU and softmax; cnn: Keras's MNIST convnet
  --epochs N          training epochs (default: 3 for mlp, 2 for cnn)
  --batch-size B      training batch size (default: 128)
  --hidden H          hidden units of the mlp (default: 128; rejected for cnn)
  --seed S            seed for weights, shuffling and dropout (default: 42)
  --data DIR          folder with the four MNIST IDX files (default: <workspace>/datasets/mnist)
  --probe             print the median round trip between two threads, in ns, and exit
  -h, --help          print this help";

/// The benchmark models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelKind {
    /// Flatten, Dense(hidden, relu), Dense(10, softmax).
    Mlp,
    /// Keras's "Simple MNIST convnet" example.
    Cnn,
}

impl ModelKind {
    fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
}

/// Parsed command-line settings.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    model: ModelKind,
    epochs: usize,
    batch_size: usize,
    /// Hidden units of the MLP; `None` for the convnet.
    hidden: Option<usize>,
    seed: u64,
    data: PathBuf,
}

/// The action the command line requests.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Settings),
    /// Measure the round trip between two threads and print it.
    Probe,
    Help,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist")
}

fn parse_number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {option}: expected a whole number"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut model = None;
    let mut epochs = None;
    let mut batch_size = 128;
    let mut hidden = None;
    let mut seed = 42;
    let mut data = default_data_dir();

    let mut args = args.into_iter();
    while let Some(option) = args.next() {
        if option == "-h" || option == "--help" {
            return Ok(Command::Help);
        }
        if option == "--probe" {
            return Ok(Command::Probe);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {option}"))?;
        match option.as_str() {
            "--model" => {
                model = Some(match value.as_str() {
                    "mlp" => ModelKind::Mlp,
                    "cnn" => ModelKind::Cnn,
                    _ => return Err(format!("invalid model {value:?}: expected mlp or cnn")),
                })
            }
            "--epochs" => epochs = Some(parse_number(&option, &value)?),
            "--batch-size" => batch_size = parse_number(&option, &value)?,
            "--hidden" => hidden = Some(parse_number(&option, &value)?),
            "--seed" => seed = parse_number(&option, &value)?,
            "--data" => data = PathBuf::from(value),
            _ => return Err(format!("unknown option {option:?}")),
        }
    }

    let model = model.ok_or("missing --model (mlp or cnn)")?;
    let hidden = match (model, hidden) {
        (ModelKind::Mlp, hidden) => Some(hidden.unwrap_or(128)),
        (ModelKind::Cnn, None) => None,
        (ModelKind::Cnn, Some(_)) => return Err("--hidden applies to the mlp only".into()),
    };
    let epochs = epochs.unwrap_or(match model {
        ModelKind::Mlp => 3,
        ModelKind::Cnn => 2,
    });
    if epochs == 0 || batch_size == 0 || hidden == Some(0) {
        return Err("--epochs, --batch-size and --hidden must be at least 1".into());
    }
    Ok(Command::Run(Settings {
        model,
        epochs,
        batch_size,
        hidden,
        seed,
        data,
    }))
}

fn build_mlp(hidden: usize, seed: u64) -> Sequential {
    Sequential::new([28, 28])
        .seed(seed)
        .add(Flatten::new())
        .add(Dense::new(hidden).activation(Activation::Relu))
        .add(Dense::new(10).activation(Activation::Softmax))
}

/// Builds Keras's MNIST convnet for channels-last 28×28×1 images.
fn build_cnn(seed: u64) -> Sequential {
    use grit::nn::{Conv2D, Dropout, MaxPooling2D};

    Sequential::new([28, 28, 1])
        .seed(seed)
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new().pool_size((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Activation::Relu))
        .add(MaxPooling2D::new().pool_size((2, 2)))
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(10).activation(Activation::Softmax))
}

/// Adds a trailing channel axis: `[n, 28, 28]` becomes `[n, 28, 28, 1]`, as Keras's
/// convnet example does with `np.expand_dims(x, -1)`.
fn with_channel_axis(images: &ScaledU8) -> Result<ScaledU8, Box<dyn std::error::Error>> {
    let mut shape = images.data().shape().to_vec();
    shape.push(1);
    let data = images.data().clone().into_shape_with_order(IxDyn(&shape))?;
    Ok(ScaledU8::new(data, images.scale()))
}

/// Per-epoch wall times, training losses and accuracies, filled by a [`LambdaCallback`].
#[derive(Default)]
struct EpochTimes {
    started: Option<Instant>,
    seconds: Vec<f64>,
    losses: Vec<f64>,
    accuracies: Vec<f64>,
}

/// Round trips that [`core_round_trip_ns`] times.
const PROBE_ROUND_TRIPS: u64 = 20_000;

/// Returns the median time, in nanoseconds, for one thread to hand a value to another and get
/// one back, over blocks of round trips through one atomic variable. Returns `None` when
/// the process may run on fewer than 2 CPUs, where the two spinning threads would wait for each
/// other's time slices.
///
/// The value depends on how far apart the machine places the two threads. On the 2-vCPU VMs the benchmarks ran
/// on, it was 60 to 130 ns at some times and 350 to 400 ns at others, and in the second state
/// grit's MLP took about twice as long per epoch on two threads as in the first.
fn core_round_trip_ns() -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let turn = AtomicU64::new(0);
    let mut blocks = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..PROBE_ROUND_TRIPS {
                while turn.load(Ordering::Acquire) != 2 * round + 1 {
                    std::hint::spin_loop();
                }
                turn.store(2 * round + 2, Ordering::Release);
            }
        });
        let block = PROBE_ROUND_TRIPS / 10;
        let mut started = Instant::now();
        for round in 0..PROBE_ROUND_TRIPS {
            turn.store(2 * round + 1, Ordering::Release);
            while turn.load(Ordering::Acquire) != 2 * round + 2 {
                std::hint::spin_loop();
            }
            if (round + 1) % block == 0 {
                blocks.push(started.elapsed().as_nanos() as f64 / block as f64);
                started = Instant::now();
            }
        }
    });
    blocks.sort_by(f64::total_cmp);
    Some(blocks[blocks.len() / 2])
}

fn run(settings: &Settings) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let load_start = Instant::now();
    let mut data = Mnist::load(&settings.data)?;
    if settings.model == ModelKind::Cnn {
        data.train_images = with_channel_axis(&data.train_images)?;
        data.test_images = with_channel_axis(&data.test_images)?;
    }
    let load_seconds = load_start.elapsed().as_secs_f64();

    let mut model = match (settings.model, settings.hidden) {
        (ModelKind::Mlp, Some(hidden)) => build_mlp(hidden, settings.seed),
        _ => build_cnn(settings.seed),
    };
    model.compile(
        Adam::new(1e-3),
        Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
        [Metric::Accuracy],
    )?;

    let times = Rc::new(RefCell::new(EpochTimes::default()));
    let on_begin = Rc::clone(&times);
    let on_end = Rc::clone(&times);
    let mut timer = LambdaCallback::new()
        .on_epoch_begin(move |_, _, _| on_begin.borrow_mut().started = Some(Instant::now()))
        .on_epoch_end(move |_, _, logs| {
            let mut times = on_end.borrow_mut();
            let elapsed = times
                .started
                .map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
            times.seconds.push(elapsed);
            times
                .losses
                .push(logs.get("loss").copied().unwrap_or(f64::NAN));
            times
                .accuracies
                .push(logs.get("accuracy").copied().unwrap_or(f64::NAN));
        });

    let options = FitOptions::new()
        .epochs(settings.epochs)
        .batch_size(settings.batch_size)
        .verbose(0);
    let round_trip_before = core_round_trip_ns();
    let fit_start = Instant::now();
    model.fit(
        &data.train_images,
        &data.train_labels,
        &options,
        &mut [&mut timer],
    )?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();

    let evaluate_start = Instant::now();
    let test = model.evaluate(&data.test_images, &data.test_labels, EVALUATE_BATCH_SIZE)?;
    let evaluate_seconds = evaluate_start.elapsed().as_secs_f64();

    let times = times.borrow();
    Ok(json!({
        "framework": "grit",
        "framework_version": env!("CARGO_PKG_VERSION"),
        "backend": null,
        "model": settings.model.name(),
        "hidden": settings.hidden,
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "seed": settings.seed,
        "params": model.count_params(),
        "threads": grit::tensor::parallel::num_threads(),
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
        "epoch_seconds": times.seconds,
        "core_round_trip_ns": round_trip_before,
        "train_loss": times.losses,
        "train_accuracy": times.accuracies,
        "test_loss": test.get("loss"),
        "test_accuracy": test.get("accuracy"),
    }))
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Probe) => {
            println!("{}", json!({ "core_round_trip_ns": core_round_trip_ns() }));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("grit-bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("grit-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn settings(args: &[&str]) -> Settings {
        match parse(args) {
            Ok(Command::Run(settings)) => settings,
            other => panic!("expected settings for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn mlp_defaults() {
        let s = settings(&["--model", "mlp"]);
        assert_eq!(s.model, ModelKind::Mlp);
        assert_eq!(s.epochs, 3);
        assert_eq!(s.batch_size, 128);
        assert_eq!(s.hidden, Some(128));
        assert_eq!(s.seed, 42);
    }

    #[test]
    fn cnn_defaults() {
        let s = settings(&["--model", "cnn"]);
        assert_eq!(s.model, ModelKind::Cnn);
        assert_eq!(s.epochs, 2);
        assert_eq!(s.hidden, None);
    }

    #[test]
    fn explicit_values() {
        let s = settings(&[
            "--model",
            "mlp",
            "--epochs",
            "5",
            "--batch-size",
            "512",
            "--hidden",
            "2048",
            "--seed",
            "7",
            "--data",
            "/tmp/mnist",
        ]);
        assert_eq!(s.epochs, 5);
        assert_eq!(s.batch_size, 512);
        assert_eq!(s.hidden, Some(2048));
        assert_eq!(s.seed, 7);
        assert_eq!(s.data, PathBuf::from("/tmp/mnist"));
    }

    #[test]
    fn invalid_arguments_rejected() {
        let cases: &[&[&str]] = &[
            &[],
            &["--model"],
            &["--model", "rnn"],
            &["--model", "mlp", "--epochs", "three"],
            &["--model", "mlp", "--epochs", "0"],
            &["--model", "mlp", "--hidden", "0"],
            &["--model", "cnn", "--hidden", "128"],
            &["--model", "mlp", "--verbose", "1"],
        ];
        for args in cases {
            assert!(parse(args).is_err(), "accepted {args:?}");
        }
    }

    #[test]
    fn help_flag() {
        assert_eq!(parse(&["--model", "mlp", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn probe_needs_no_model() {
        assert_eq!(parse(&["--probe"]), Ok(Command::Probe));
    }
}
