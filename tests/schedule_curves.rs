//! Every schedule's learning rate as `fit` applies it on a fixed MNIST subset, against the
//! formula written out here and against Keras's reference values. The rates are checked per
//! update when the optimizer follows the schedule, per epoch through LearningRateScheduler, and
//! across a run resumed at an epoch boundary.
//!
//! A callback records `Context::learning_rate()` and the optimizer's update count at the start
//! of every training batch, which is the rate the batch's update uses.

use std::f64::consts::PI;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use grit::optim::{LearningRate, LearningRateSchedule};
use grit::prelude::*;
use ndarray::{Array1, s};

/// Training samples per epoch: the first 100 MNIST training images.
const SAMPLES: usize = 100;

fn mnist_dir() -> PathBuf {
    grit::data::dataset_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"), "mnist")
}

fn subset() -> &'static (ScaledU8, Array1<u8>) {
    static SUBSET: OnceLock<(ScaledU8, Array1<u8>)> = OnceLock::new();
    SUBSET.get_or_init(|| {
        let data = Mnist::load(mnist_dir())
            .unwrap_or_else(|e| panic!("{e}\nrun scripts/test.sh, which fetches the datasets"));
        let y = data.train_labels.slice(s![..SAMPLES]).to_owned();
        (data.train_images.take(SAMPLES), y)
    })
}

/// Builds a softmax regression on 28×28 images with SGD and momentum, so the optimizer has
/// state.
fn model(learning_rate: LearningRate) -> Sequential {
    let mut model = Sequential::new([28, 28])
        .seed(5)
        .add(Flatten::new())
        .add(Dense::new(10).activation(Activation::Softmax));
    model
        .compile(
            Sgd::new(learning_rate).momentum(0.9),
            Loss::SPARSE_CATEGORICAL_CROSSENTROPY,
            [],
        )
        .unwrap();
    model
}

/// One training batch as the recorder saw it before the update.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BatchRate {
    epoch: usize,
    /// The optimizer's update count before this batch's update.
    step: u64,
    rate: f32,
}

/// Records the learning rate and update count at the start of every training batch.
#[derive(Default)]
struct RateRecorder {
    epoch: usize,
    batches: Vec<BatchRate>,
}

impl Callback for RateRecorder {
    fn on_epoch_begin(
        &mut self,
        epoch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_train_batch_begin(
        &mut self,
        _batch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit::train::Result<()> {
        self.batches.push(BatchRate {
            epoch: self.epoch,
            step: ctx.iterations(),
            rate: ctx.learning_rate(),
        });
        Ok(())
    }
}

/// Asserts `actual` is within `relative` of `expected`, or within 1e-9 of it near 0.
#[track_caller]
fn assert_rate(actual: f32, expected: f64, relative: f64, context: &str) {
    let difference = (f64::from(actual) - expected).abs();
    let tolerance = (relative * expected.abs()).max(1e-9);
    assert!(
        difference <= tolerance,
        "{context}: rate {actual}, expected {expected} (tolerance {tolerance:e})"
    );
}

/// A schedule, the formula it should follow, and values at and around its boundaries.
struct Case {
    label: &'static str,
    schedule: Arc<dyn LearningRateSchedule>,
    formula: Box<dyn Fn(u64) -> f64>,
    /// (step, value) pairs: Keras's reference values where Keras has the schedule, and the
    /// steps on both sides of every boundary.
    points: Vec<(u64, f64)>,
}

impl Case {
    fn new(
        label: &'static str,
        schedule: impl LearningRateSchedule + 'static,
        formula: impl Fn(u64) -> f64 + 'static,
        points: &[(u64, f64)],
    ) -> Self {
        Case {
            label,
            schedule: Arc::new(schedule),
            formula: Box::new(formula),
            points: points.to_vec(),
        }
    }

    fn last_point(&self) -> u64 {
        self.points.iter().map(|&(step, _)| step).max().unwrap_or(0)
    }
}

// ---- the formulas, each written from its definition ----
//
// The schedules store their parameters as f32 and compute in f64, so the formulas widen each
// rate, factor and exponent from f32 too. Without that, 0.96^46 would differ by 46 times the
// f32 rounding error of 0.96, about 1e-6 relative.

fn stored(value: f64) -> f64 {
    f64::from(value as f32)
}

fn exponential(
    initial: f64,
    decay_steps: u64,
    decay_rate: f64,
    staircase: bool,
) -> impl Fn(u64) -> f64 {
    let (initial, decay_rate) = (stored(initial), stored(decay_rate));
    move |step| {
        let periods = step as f64 / decay_steps as f64;
        let exponent = if staircase { periods.floor() } else { periods };
        initial * decay_rate.powf(exponent)
    }
}

fn piecewise(boundaries: Vec<u64>, values: Vec<f64>) -> impl Fn(u64) -> f64 {
    let values: Vec<f64> = values.into_iter().map(stored).collect();
    move |step| {
        values[boundaries
            .iter()
            .filter(|&&boundary| boundary < step)
            .count()]
    }
}

fn polynomial(
    initial: f64,
    decay_steps: u64,
    end: f64,
    power: f64,
    cycle: bool,
) -> impl Fn(u64) -> f64 {
    let (initial, end, power) = (stored(initial), stored(end), stored(power));
    move |step| {
        let d = decay_steps as f64;
        let (s, span) = if cycle {
            let multiple = if step == 0 {
                1.0
            } else {
                (step as f64 / d).ceil()
            };
            (step as f64, d * multiple)
        } else {
            ((step as f64).min(d), d)
        };
        (initial - end) * (1.0 - s / span).powf(power) + end
    }
}

fn inverse_time(
    initial: f64,
    decay_steps: u64,
    decay_rate: f64,
    staircase: bool,
) -> impl Fn(u64) -> f64 {
    let (initial, decay_rate) = (stored(initial), stored(decay_rate));
    move |step| {
        let periods = step as f64 / decay_steps as f64;
        let periods = if staircase { periods.floor() } else { periods };
        initial / (1.0 + decay_rate * periods)
    }
}

fn cosine(
    initial: f64,
    decay_steps: u64,
    alpha: f64,
    warmup: Option<(f64, u64)>,
) -> impl Fn(u64) -> f64 {
    let (initial, alpha) = (stored(initial), stored(alpha));
    let warmup = warmup.map(|(target, steps)| (stored(target), steps));
    move |step| {
        let decayed = |start: f64, done: f64| {
            let fraction = done.min(decay_steps as f64) / decay_steps as f64;
            start * ((1.0 - alpha) * 0.5 * (1.0 + (PI * fraction).cos()) + alpha)
        };
        match warmup {
            None => decayed(initial, step as f64),
            Some((target, warmup_steps)) if step < warmup_steps => {
                initial + (target - initial) * step as f64 / warmup_steps as f64
            }
            Some((target, warmup_steps)) => decayed(target, (step - warmup_steps) as f64),
        }
    }
}

/// Walks the periods one by one, without the closed form that the schedule uses.
fn cosine_restarts(
    initial: f64,
    first_decay_steps: u64,
    t_mul: f64,
    m_mul: f64,
    alpha: f64,
) -> impl Fn(u64) -> f64 {
    // `t_mul` stays decimal: the schedule reads it through its shortest decimal form.
    let (initial, m_mul, alpha) = (stored(initial), stored(m_mul), stored(alpha));
    move |step| {
        let (mut start, mut length, mut period) = (0.0, first_decay_steps as f64, 0);
        while step as f64 >= start + length {
            start += length;
            length *= t_mul;
            period += 1;
        }
        let position = (step as f64 - start) / length;
        let cosine = 0.5 * (1.0 + (PI * position).cos());
        initial * ((1.0 - alpha) * m_mul.powi(period) * cosine + alpha)
    }
}

fn step_at(initial: f64, factor: f64, milestones: Vec<u64>) -> impl Fn(u64) -> f64 {
    let (initial, factor) = (stored(initial), stored(factor));
    move |step| {
        let passed = milestones
            .iter()
            .filter(|&&milestone| milestone <= step)
            .count();
        initial * factor.powi(passed as i32)
    }
}

fn step_every(initial: f64, factor: f64, every: u64) -> impl Fn(u64) -> f64 {
    let (initial, factor) = (stored(initial), stored(factor));
    move |step| initial * factor.powi((step / every) as i32)
}

fn linear_warmup(inner: impl Fn(u64) -> f64, warmup_steps: u64, start: f64) -> impl Fn(u64) -> f64 {
    let start = stored(start);
    move |step| {
        if step >= warmup_steps {
            inner(step - warmup_steps)
        } else {
            start + (inner(0) - start) * step as f64 / warmup_steps as f64
        }
    }
}

/// PyTorch's `OneCycleLR` with cosine annealing and two phases, held at its minimum from the
/// last step on.
fn one_cycle(
    max: f64,
    total: u64,
    pct_start: f64,
    div: f64,
    final_div: f64,
) -> impl Fn(u64) -> f64 {
    // `pct_start` stays decimal: the schedule reads it through its shortest decimal form.
    let (max, div, final_div) = (stored(max), stored(div), stored(final_div));
    move |step| {
        let initial = max / div;
        let min = initial / final_div;
        let warmup_end = pct_start * total as f64 - 1.0;
        let last = (total - 1) as f64;
        let anneal = |from: f64, to: f64, progress: f64| {
            to + (from - to) * 0.5 * (1.0 + (PI * progress).cos())
        };
        let s = step as f64;
        if s >= last {
            min
        } else if warmup_end > 0.0 && s <= warmup_end {
            anneal(initial, max, s / warmup_end)
        } else {
            anneal(max, min, (s - warmup_end) / (last - warmup_end))
        }
    }
}

// ---- per update ----

/// Returns Keras's schedules with the reference values of Keras's schedule tests.
fn keras_cases() -> Vec<Case> {
    vec![
        Case::new(
            "ExponentialDecay(0.05, 10, 0.96)",
            ExponentialDecay::new(0.05, 10, 0.96).unwrap(),
            exponential(0.05, 10, 0.96, false),
            &[(0, 0.05), (5, 0.048_989_8), (10, 0.048)],
        ),
        Case::new(
            "ExponentialDecay(0.1, 3, 0.96, staircase)",
            ExponentialDecay::new(0.1, 3, 0.96).unwrap().staircase(true),
            exponential(0.1, 3, 0.96, true),
            &[(1, 0.1), (2, 0.1), (3, 0.096), (100, 0.025_998_6)],
        ),
        Case::new(
            "PiecewiseConstantDecay([100, 110, 120], [1, 0.1, 0.01, 0.001])",
            PiecewiseConstantDecay::new(vec![100, 110, 120], vec![1.0, 0.1, 0.01, 0.001]).unwrap(),
            piecewise(vec![100, 110, 120], vec![1.0, 0.1, 0.01, 0.001]),
            &[
                (0, 1.0),
                (99, 1.0),
                (100, 1.0),
                (101, 0.1),
                (105, 0.1),
                (110, 0.1),
                (111, 0.01),
                (120, 0.01),
                (121, 0.001),
                (999, 0.001),
            ],
        ),
        Case::new(
            "PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])",
            PiecewiseConstantDecay::new(vec![1, 2, 3], vec![0.4, 0.5, 0.6, 0.7]).unwrap(),
            piecewise(vec![1, 2, 3], vec![0.4, 0.5, 0.6, 0.7]),
            &[(0, 0.4), (1, 0.4), (2, 0.5), (3, 0.6), (4, 0.7)],
        ),
        Case::new(
            "PolynomialDecay(0.05, 10, end 0)",
            PolynomialDecay::new(0.05, 10)
                .unwrap()
                .end_learning_rate(0.0)
                .unwrap(),
            polynomial(0.05, 10, 0.0, 1.0, false),
            &[(5, 0.025), (9, 0.005), (10, 0.0), (11, 0.0)],
        ),
        Case::new(
            "PolynomialDecay(0.05, 10, end 0.001)",
            PolynomialDecay::new(0.05, 10)
                .unwrap()
                .end_learning_rate(0.001)
                .unwrap(),
            polynomial(0.05, 10, 0.001, 1.0, false),
            &[(5, 0.0255), (10, 0.001), (15, 0.001)],
        ),
        Case::new(
            "PolynomialDecay(0.05, 10, end 0.001, cycle)",
            PolynomialDecay::new(0.05, 10)
                .unwrap()
                .end_learning_rate(0.001)
                .unwrap()
                .cycle(true),
            polynomial(0.05, 10, 0.001, 1.0, true),
            // Step 11 starts the second span of 20 steps: 0.049 · (1 − 11/20) + 0.001.
            &[(9, 0.0059), (10, 0.001), (11, 0.023_05), (15, 0.013_25)],
        ),
        Case::new(
            "PolynomialDecay(0.05, 10, end 0.001, power 0.5, cycle)",
            PolynomialDecay::new(0.05, 10)
                .unwrap()
                .end_learning_rate(0.001)
                .unwrap()
                .power(0.5)
                .unwrap()
                .cycle(true),
            polynomial(0.05, 10, 0.001, 0.5, true),
            &[(15, 0.049 * 0.5 + 0.001)],
        ),
        Case::new(
            "PolynomialDecay(0.001, 10, cycle)",
            PolynomialDecay::new(0.001, 10).unwrap().cycle(true),
            polynomial(0.001, 10, 1e-4, 1.0, true),
            &[(0, 0.001)],
        ),
        Case::new(
            "InverseTimeDecay(0.1, 10, 0.96)",
            InverseTimeDecay::new(0.1, 10, 0.96).unwrap(),
            inverse_time(0.1, 10, 0.96, false),
            &[
                (0, 0.1),
                (1, 0.1 / 1.096),
                (2, 0.1 / 1.192),
                (10, 0.1 / 1.96),
            ],
        ),
        Case::new(
            "InverseTimeDecay(0.1, 10, 0.96, staircase)",
            InverseTimeDecay::new(0.1, 10, 0.96)
                .unwrap()
                .staircase(true),
            inverse_time(0.1, 10, 0.96, true),
            &[(9, 0.1), (10, 0.051_020_4), (19, 0.051_020_4)],
        ),
        Case::new(
            "CosineDecay(1.0, 1000)",
            CosineDecay::new(1.0, 1000).unwrap(),
            cosine(1.0, 1000, 0.0, None),
            &[
                (0, 1.0),
                (250, 0.853_553),
                (500, 0.5),
                (1000, 0.0),
                (1250, 0.0),
            ],
        ),
        Case::new(
            "CosineDecay(1.0, 1000, alpha 0.1)",
            CosineDecay::new(1.0, 1000).unwrap().alpha(0.1).unwrap(),
            cosine(1.0, 1000, 0.1, None),
            &[(500, 0.55), (1250, 0.1)],
        ),
        Case::new(
            "CosineDecay(0.0, 1000, warm-up to 10 over 2000)",
            CosineDecay::new(0.0, 1000)
                .unwrap()
                .warmup(10.0, 2000)
                .unwrap(),
            cosine(0.0, 1000, 0.0, Some((10.0, 2000))),
            &[
                (1000, 5.0),
                (1999, 9.995),
                (2000, 10.0),
                (2500, 5.0),
                (3000, 0.0),
            ],
        ),
        Case::new(
            "CosineDecay(0.1, 1000, warm-up to 1.0 over 100)",
            CosineDecay::new(0.1, 1000)
                .unwrap()
                .warmup(1.0, 100)
                .unwrap(),
            cosine(0.1, 1000, 0.0, Some((1.0, 100))),
            &[(50, 0.55), (99, 0.991), (100, 1.0)],
        ),
        Case::new(
            "CosineDecayRestarts(1.0, 1000)",
            CosineDecayRestarts::new(1.0, 1000).unwrap(),
            cosine_restarts(1.0, 1000, 2.0, 1.0, 0.0),
            &[(500, 0.5), (1000, 1.0), (1250, 0.961_940), (3000, 1.0)],
        ),
        Case::new(
            "CosineDecayRestarts(1.0, 1000, m_mul 0.9)",
            CosineDecayRestarts::new(1.0, 1000)
                .unwrap()
                .m_mul(0.9)
                .unwrap(),
            cosine_restarts(1.0, 1000, 2.0, 0.9, 0.0),
            &[(1250, 0.865_746)],
        ),
        Case::new(
            "CosineDecayRestarts(1.0, 1000, t_mul 1.0)",
            CosineDecayRestarts::new(1.0, 1000)
                .unwrap()
                .t_mul(1.0)
                .unwrap(),
            cosine_restarts(1.0, 1000, 1.0, 1.0, 0.0),
            &[(1250, 0.853_553)],
        ),
        Case::new(
            "CosineDecayRestarts(1.0, 1000, m_mul 0.5, alpha 0.1)",
            CosineDecayRestarts::new(1.0, 1000)
                .unwrap()
                .m_mul(0.5)
                .unwrap()
                .alpha(0.1)
                .unwrap(),
            cosine_restarts(1.0, 1000, 2.0, 0.5, 0.1),
            &[(1000, 0.55)],
        ),
    ]
}

/// Returns the schedules beyond Keras, with the steps on both sides of each boundary.
fn other_cases() -> Vec<Case> {
    vec![
        Case::new(
            "Constant(0.03)",
            Constant::new(0.03).unwrap(),
            |_| 0.03,
            &[(0, 0.03), (150, 0.03)],
        ),
        Case::new(
            "StepDecay::at(0.1, 0.1, [100, 200])",
            StepDecay::at(0.1, 0.1, [100, 200]).unwrap(),
            step_at(0.1, 0.1, vec![100, 200]),
            &[
                (0, 0.1),
                (99, 0.1),
                (100, 0.01),
                (101, 0.01),
                (199, 0.01),
                (200, 0.001),
                (201, 0.001),
            ],
        ),
        Case::new(
            "StepDecay::every(1.0, 0.5, 10)",
            StepDecay::every(1.0, 0.5, 10).unwrap(),
            step_every(1.0, 0.5, 10),
            &[
                (9, 1.0),
                (10, 0.5),
                (11, 0.5),
                (19, 0.5),
                (20, 0.25),
                (21, 0.25),
            ],
        ),
        Case::new(
            "LinearWarmup(StepDecay::every(1.0, 0.5, 10), 100, 0.0)",
            LinearWarmup::new(StepDecay::every(1.0, 0.5, 10).unwrap(), 100, 0.0).unwrap(),
            linear_warmup(step_every(1.0, 0.5, 10), 100, 0.0),
            &[
                (0, 0.0),
                (50, 0.5),
                (99, 0.99),
                (100, 1.0),
                (109, 1.0),
                (110, 0.5),
            ],
        ),
        Case::new(
            "OneCycle(1.0, 100)",
            OneCycle::new(1.0, 100).unwrap(),
            one_cycle(1.0, 100, 0.3, 25.0, 1e4),
            &[
                (0, 0.04),
                (28, 0.997_186_219_434_092_6),
                (29, 1.0),
                (30, 0.999_496_535_284_524_3),
                (64, 0.500_002),
                (98, 5.074_647_154_757_879e-4),
                (99, 4e-6),
                (100, 4e-6),
            ],
        ),
        Case::new(
            "OneCycle(0.1, 20, pct_start 0.25, div 10, final_div 100)",
            OneCycle::new(0.1, 20)
                .unwrap()
                .pct_start(0.25)
                .unwrap()
                .div_factor(10.0)
                .unwrap()
                .final_div_factor(100.0)
                .unwrap(),
            one_cycle(0.1, 20, 0.25, 10.0, 100.0),
            &[
                (0, 0.01),
                (2, 0.055),
                (3, 0.086_819_8),
                (4, 0.1),
                (5, 0.098_908_5),
                (19, 1e-4),
            ],
        ),
    ]
}

/// Trains with the optimizer following each case's schedule, for one update more than the last
/// listed step, and checks every update against the formula and each listed value.
fn check_per_update(cases: Vec<Case>) {
    let (x, y) = subset();
    for case in cases {
        let updates = case.last_point() + 1;
        let epochs = updates.div_ceil(SAMPLES as u64) as usize;
        let mut model = model(LearningRate::Scheduled(Arc::clone(&case.schedule)));
        let mut recorder = RateRecorder::default();
        let options = FitOptions::new().epochs(epochs).batch_size(1).verbose(0);
        model.fit(x, y, &options, &mut [&mut recorder]).unwrap();

        let expected_updates = (epochs * SAMPLES) as u64;
        assert_eq!(
            recorder.batches.len() as u64,
            expected_updates,
            "{}",
            case.label
        );
        for (index, batch) in recorder.batches.iter().enumerate() {
            assert_eq!(
                batch.step, index as u64,
                "{}: update count of batch {index}",
                case.label
            );
            let context = format!("{} at step {}", case.label, batch.step);
            assert_rate(batch.rate, (case.formula)(batch.step), 1e-6, &context);
        }
        for &(step, value) in &case.points {
            let context = format!("{} at listed step {step}", case.label);
            assert_rate(recorder.batches[step as usize].rate, value, 1e-5, &context);
        }
        // As in Keras, the optimizer reports the rate of its next update: schedule(updates).
        let next = model.optimizer().unwrap().learning_rate();
        let context = format!("{} after {expected_updates} updates", case.label);
        assert_rate(next, (case.formula)(expected_updates), 1e-6, &context);
    }
}

#[test]
fn keras_schedules_per_update() {
    check_per_update(keras_cases());
}

#[test]
fn other_schedules_per_update() {
    check_per_update(other_cases());
}

// ---- per epoch ----

#[test]
fn schedules_per_epoch() {
    let (x, y) = subset();
    // Four batches per epoch.
    let options = FitOptions::new().epochs(8).batch_size(25).verbose(0);
    let cases = vec![
        Case::new(
            "StepDecay::at(0.1, 0.1, [3, 5])",
            StepDecay::at(0.1, 0.1, [3, 5]).unwrap(),
            step_at(0.1, 0.1, vec![3, 5]),
            &[(2, 0.1), (3, 0.01), (4, 0.01), (5, 0.001), (6, 0.001)],
        ),
        Case::new(
            "ExponentialDecay(0.1, 2, 0.5, staircase)",
            ExponentialDecay::new(0.1, 2, 0.5).unwrap().staircase(true),
            exponential(0.1, 2, 0.5, true),
            &[(1, 0.1), (2, 0.05), (3, 0.05), (4, 0.025)],
        ),
        Case::new(
            "PiecewiseConstantDecay([1, 4], [0.3, 0.2, 0.1])",
            PiecewiseConstantDecay::new(vec![1, 4], vec![0.3, 0.2, 0.1]).unwrap(),
            piecewise(vec![1, 4], vec![0.3, 0.2, 0.1]),
            &[(1, 0.3), (2, 0.2), (4, 0.2), (5, 0.1)],
        ),
        Case::new(
            "CosineDecay(0.01, 5, warm-up to 0.1 over 2)",
            CosineDecay::new(0.01, 5).unwrap().warmup(0.1, 2).unwrap(),
            cosine(0.01, 5, 0.0, Some((0.1, 2))),
            &[(0, 0.01), (1, 0.055), (2, 0.1), (7, 0.0)],
        ),
        Case::new(
            "OneCycle(0.1, 8)",
            OneCycle::new(0.1, 8).unwrap(),
            one_cycle(0.1, 8, 0.3, 25.0, 1e4),
            &[(0, 0.004), (7, 4e-7)],
        ),
        Case::new(
            "LinearWarmup(InverseTimeDecay(0.1, 1, 1.0), 2, 0.0)",
            LinearWarmup::new(InverseTimeDecay::new(0.1, 1, 1.0).unwrap(), 2, 0.0).unwrap(),
            linear_warmup(inverse_time(0.1, 1, 1.0, false), 2, 0.0),
            &[(0, 0.0), (1, 0.05), (2, 0.1), (3, 0.05)],
        ),
    ];
    for case in cases {
        let first_rate = case.schedule.learning_rate(0);
        let mut model = model(LearningRate::Fixed(first_rate));
        let schedule = Arc::clone(&case.schedule);
        let mut scheduler =
            LearningRateScheduler::new(move |epoch, _| schedule.learning_rate(epoch as u64));
        let mut recorder = RateRecorder::default();
        let history = model
            .fit(x, y, &options, &mut [&mut scheduler, &mut recorder])
            .unwrap();

        assert_eq!(recorder.batches.len(), 8 * 4, "{}", case.label);
        for batch in &recorder.batches {
            let context = format!(
                "{} in epoch {} (update {})",
                case.label, batch.epoch, batch.step
            );
            assert_rate(
                batch.rate,
                (case.formula)(batch.epoch as u64),
                1e-6,
                &context,
            );
        }
        let logged = history.values("learning_rate");
        assert_eq!(logged.len(), 8, "{}", case.label);
        for (epoch, &rate) in logged.iter().enumerate() {
            let context = format!("{} logged for epoch {epoch}", case.label);
            assert_rate(rate as f32, (case.formula)(epoch as u64), 1e-6, &context);
        }
        for &(epoch, value) in &case.points {
            let rate = recorder.batches[epoch as usize * 4].rate;
            let context = format!("{} at listed epoch {epoch}", case.label);
            assert_rate(rate, value, 1e-5, &context);
        }
    }
}

// ---- resumed runs ----

/// What a run leaves behind at an epoch boundary to be continued: the full training state that
/// the optimizer, the weights and the random generator (the batch order) hold.
struct Saved {
    weights: grit::train::callbacks::Weights,
    optimizer: grit::optim::OptimizerState,
    rng: grit::tensor::Rng,
}

fn save(model: &Sequential) -> Saved {
    Saved {
        weights: model.get_weights(),
        optimizer: model.optimizer().unwrap().state(),
        rng: model.rng().clone(),
    }
}

fn restore(model: &mut Sequential, saved: Saved) {
    model.set_weights(&saved.weights).unwrap();
    model
        .optimizer_mut()
        .unwrap()
        .load_state(saved.optimizer)
        .unwrap();
    model.set_rng(saved.rng);
}

/// Runs `epochs` epochs in one `fit`, and again as `split` epochs, a restore into a new model,
/// and `fit` from `initial_epoch(split)`. Returns the rates of both, and the final weights.
fn uninterrupted_and_resumed(
    learning_rate: LearningRate,
    schedule_per_epoch: Option<Arc<dyn LearningRateSchedule>>,
    epochs: usize,
    split: usize,
) -> [(Vec<BatchRate>, grit::train::callbacks::Weights, Vec<f64>); 2] {
    let (x, y) = subset();
    let options = FitOptions::new().batch_size(10).verbose(0);
    let run = |model: &mut Sequential, options: FitOptions<'_>| {
        let mut recorder = RateRecorder::default();
        let history = match &schedule_per_epoch {
            Some(schedule) => {
                let schedule = Arc::clone(schedule);
                let mut scheduler = LearningRateScheduler::new(move |epoch, _| {
                    schedule.learning_rate(epoch as u64)
                });
                model.fit(x, y, &options, &mut [&mut scheduler, &mut recorder])
            }
            None => model.fit(x, y, &options, &mut [&mut recorder]),
        };
        (recorder.batches, history.unwrap().values("loss"))
    };

    let mut whole = model(learning_rate.clone());
    let (whole_rates, whole_losses) = run(&mut whole, options.epochs(epochs));

    let mut first = model(learning_rate.clone());
    let (mut rates, mut losses) = run(&mut first, options.epochs(split));
    let saved = save(&first);
    let mut second = model(learning_rate);
    restore(&mut second, saved);
    let (later_rates, later_losses) = run(&mut second, options.epochs(epochs).initial_epoch(split));
    rates.extend(later_rates);
    losses.extend(later_losses);

    [
        (whole_rates, whole.get_weights(), whole_losses),
        (rates, second.get_weights(), losses),
    ]
}

#[test]
fn resumed_per_update_run_follows_curve() {
    // 10 updates per epoch, 60 in all: the warm-up ends at update 17 and the split at 30 falls
    // in the decay.
    let schedule: Arc<dyn LearningRateSchedule> = Arc::new(OneCycle::new(0.05, 60).unwrap());
    let [
        (whole, whole_weights, whole_losses),
        (resumed, resumed_weights, resumed_losses),
    ] = uninterrupted_and_resumed(LearningRate::Scheduled(Arc::clone(&schedule)), None, 6, 3);

    assert_eq!(resumed.len(), 60);
    assert_eq!(
        resumed, whole,
        "rates, update counts and epochs of every batch"
    );
    for batch in &resumed {
        let expected = one_cycle(0.05, 60, 0.3, 25.0, 1e4)(batch.step);
        assert_rate(
            batch.rate,
            expected,
            1e-6,
            &format!("update {}", batch.step),
        );
    }
    assert_eq!(resumed_losses, whole_losses);
    assert_eq!(resumed_weights, whole_weights);
}

#[test]
fn resumed_per_epoch_run_follows_curve() {
    let schedule: Arc<dyn LearningRateSchedule> =
        Arc::new(StepDecay::at(0.05, 0.5, [2, 4]).unwrap());
    let first_rate = LearningRate::Fixed(schedule.learning_rate(0));
    let [
        (whole, whole_weights, whole_losses),
        (resumed, resumed_weights, resumed_losses),
    ] = uninterrupted_and_resumed(first_rate, Some(Arc::clone(&schedule)), 6, 3);

    assert_eq!(resumed.len(), 60);
    assert_eq!(
        resumed, whole,
        "rates, update counts and epochs of every batch"
    );
    for batch in &resumed {
        let expected = step_at(0.05, 0.5, vec![2, 4])(batch.epoch as u64);
        assert_rate(
            batch.rate,
            expected,
            1e-6,
            &format!("epoch {}", batch.epoch),
        );
    }
    assert_eq!(resumed_losses, whole_losses);
    assert_eq!(resumed_weights, whole_weights);
}

#[test]
fn resume_without_update_count_restarts_curve() {
    // The same split as above, but the new model keeps its update count at 0: the schedule
    // starts over, which is what restoring the optimizer state prevents.
    let (x, y) = subset();
    let schedule: Arc<dyn LearningRateSchedule> = Arc::new(OneCycle::new(0.05, 60).unwrap());
    let options = FitOptions::new().batch_size(10).verbose(0);
    let mut first = model(LearningRate::Scheduled(Arc::clone(&schedule)));
    first.fit(x, y, &options.epochs(3), &mut []).unwrap();
    let mut second = model(LearningRate::Scheduled(Arc::clone(&schedule)));
    second.set_weights(&first.get_weights()).unwrap();
    let mut recorder = RateRecorder::default();
    second
        .fit(
            x,
            y,
            &options.epochs(6).initial_epoch(3),
            &mut [&mut recorder],
        )
        .unwrap();
    assert_eq!(recorder.batches[0].step, 0);
    assert_rate(
        recorder.batches[0].rate,
        0.002,
        1e-6,
        "first update after the split",
    );
    assert!((recorder.batches[0].rate - schedule.learning_rate(30)).abs() > 1e-3);
}
