//! Rebuilding optimizers and schedules from the JSON their `config()` methods return, so a
//! checkpoint can restore a compiled model without code.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schedules::{
    Constant, CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay,
    LearningRateSchedule, LinearWarmup, OneCycle, PiecewiseConstantDecay, PolynomialDecay,
    StepDecay,
};
use crate::{Adam, LearningRate, OptimError, Optimizer, Result, Sgd};

/// Rebuilds an optimizer, without its state, from the JSON that [`Optimizer::config`]
/// returned.
///
/// The learning rate is either a number (a fixed rate) or `{"schedule": name, "config": {...}}`
/// as read by [`schedule_from_config`]. The result has been checked with
/// [`Optimizer::validate`].
///
/// ```
/// use grit_optim::{Adam, Optimizer, optimizer_from_config};
///
/// let adam = Adam::new(0.01).beta_1(0.8);
/// let rebuilt = optimizer_from_config(&adam.config())?;
/// assert_eq!(rebuilt.config(), adam.config());
/// # Ok::<(), grit_optim::OptimError>(())
/// ```
///
/// # Errors
/// [`OptimError::InvalidConfig`] for an unknown optimizer or schedule name, a missing field or
/// a field of the wrong type, and [`OptimError::InvalidParameter`] for a value out of range.
pub fn optimizer_from_config(config: &Value) -> Result<Box<dyn Optimizer>> {
    let fields = Fields::new("optimizer", config)?;
    let name = fields.string("name")?;
    let learning_rate = learning_rate_from_config(fields.required("learning_rate")?)?;
    let optimizer: Box<dyn Optimizer> = match name {
        "Adam" => Box::new(
            Adam::new(learning_rate)
                .beta_1(fields.f32("beta_1")?)
                .beta_2(fields.f32("beta_2")?)
                .epsilon(fields.f32("epsilon")?)
                .amsgrad(fields.bool("amsgrad")?),
        ),
        "SGD" => Box::new(
            Sgd::new(learning_rate)
                .momentum(fields.f32("momentum")?)
                .nesterov(fields.bool("nesterov")?),
        ),
        other => {
            return Err(OptimError::InvalidConfig(format!(
                "unknown optimizer `{other}`. Known optimizers: Adam, SGD"
            )));
        }
    };
    optimizer.validate()?;
    Ok(optimizer)
}

/// Rebuilds a learning rate: a JSON number is a fixed rate, an object a schedule.
fn learning_rate_from_config(value: &Value) -> Result<LearningRate> {
    if let Some(rate) = value.as_f64() {
        return Ok(LearningRate::Fixed(rate as f32));
    }
    let fields = Fields::new("learning_rate", value)?;
    let schedule = schedule_from_config(fields.string("schedule")?, fields.required("config")?)?;
    Ok(LearningRate::Scheduled(Arc::from(schedule)))
}

/// Rebuilds the schedule called `name` from the JSON that its
/// [`LearningRateSchedule::config`] returned.
///
/// ```
/// use grit_optim::{CosineDecay, LearningRateSchedule, schedule_from_config};
///
/// let cosine = CosineDecay::new(0.1, 1000)?.alpha(0.05)?;
/// let rebuilt = schedule_from_config(cosine.name(), &cosine.config())?;
/// assert_eq!(rebuilt.learning_rate(500), cosine.learning_rate(500));
/// # Ok::<(), grit_optim::OptimError>(())
/// ```
///
/// # Errors
/// [`OptimError::InvalidConfig`] for an unknown name, a missing field or a field of the wrong
/// type, and [`OptimError::InvalidParameter`] for a value out of range.
pub fn schedule_from_config(name: &str, config: &Value) -> Result<Box<dyn LearningRateSchedule>> {
    let fields = Fields::new(name, config)?;
    let schedule: Box<dyn LearningRateSchedule> = match name {
        "Constant" => Box::new(Constant::new(fields.f32("learning_rate")?)?),
        "CosineDecay" => {
            let mut schedule = CosineDecay::new(
                fields.f32("initial_learning_rate")?,
                fields.u64("decay_steps")?,
            )?
            .alpha(fields.f32("alpha")?)?;
            if let Some(target) = fields.optional_f32("warmup_target")? {
                schedule = schedule.warmup(target, fields.u64("warmup_steps")?)?;
            }
            Box::new(schedule)
        }
        "CosineDecayRestarts" => Box::new(
            CosineDecayRestarts::new(
                fields.f32("initial_learning_rate")?,
                fields.u64("first_decay_steps")?,
            )?
            .t_mul(fields.f32("t_mul")?)?
            .m_mul(fields.f32("m_mul")?)?
            .alpha(fields.f32("alpha")?)?,
        ),
        "ExponentialDecay" => Box::new(
            ExponentialDecay::new(
                fields.f32("initial_learning_rate")?,
                fields.u64("decay_steps")?,
                fields.f32("decay_rate")?,
            )?
            .staircase(fields.bool("staircase")?),
        ),
        "InverseTimeDecay" => Box::new(
            InverseTimeDecay::new(
                fields.f32("initial_learning_rate")?,
                fields.u64("decay_steps")?,
                fields.f32("decay_rate")?,
            )?
            .staircase(fields.bool("staircase")?),
        ),
        "LinearWarmup" => {
            let inner = Fields::new("LinearWarmup.inner", fields.required("inner")?)?;
            let inner = schedule_from_config(inner.string("schedule")?, inner.required("config")?)?;
            Box::new(LinearWarmup::new(
                inner,
                fields.u64("warmup_steps")?,
                fields.f32("start_learning_rate")?,
            )?)
        }
        "OneCycle" => Box::new(
            OneCycle::new(fields.f32("max_learning_rate")?, fields.u64("total_steps")?)?
                .pct_start(fields.f32("pct_start")?)?
                .div_factor(fields.f32("div_factor")?)?
                .final_div_factor(fields.f32("final_div_factor")?)?,
        ),
        "PiecewiseConstantDecay" => {
            let boundaries = fields.array("boundaries")?;
            let boundaries = boundaries
                .iter()
                .map(|value| as_u64(name, "boundaries", value))
                .collect::<Result<Vec<u64>>>()?;
            let values = fields.array("values")?;
            let values = values
                .iter()
                .map(|value| as_f32(name, "values", value))
                .collect::<Result<Vec<f32>>>()?;
            Box::new(PiecewiseConstantDecay::new(boundaries, values)?)
        }
        "PolynomialDecay" => Box::new(
            PolynomialDecay::new(
                fields.f32("initial_learning_rate")?,
                fields.u64("decay_steps")?,
            )?
            .end_learning_rate(fields.f32("end_learning_rate")?)?
            .power(fields.f32("power")?)?
            .cycle(fields.bool("cycle")?),
        ),
        "StepDecay" => {
            let initial = fields.f32("initial_learning_rate")?;
            let factor = fields.f32("factor")?;
            let schedule = if fields.contains("milestones") {
                let milestones = fields.array("milestones")?;
                let milestones = milestones
                    .iter()
                    .map(|value| as_u64(name, "milestones", value))
                    .collect::<Result<Vec<u64>>>()?;
                StepDecay::at(initial, factor, milestones)?
            } else {
                StepDecay::every(initial, factor, fields.u64("decay_steps")?)?
            };
            Box::new(schedule)
        }
        other => {
            return Err(OptimError::InvalidConfig(format!(
                "unknown learning-rate schedule `{other}`. Known schedules: Constant, \
                 CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay, \
                 LinearWarmup, OneCycle, PiecewiseConstantDecay, PolynomialDecay, StepDecay"
            )));
        }
    };
    Ok(schedule)
}

/// The fields of one JSON object, read with errors that name the owner and the field.
struct Fields<'a> {
    owner: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(owner: &'a str, value: &'a Value) -> Result<Self> {
        match value.as_object() {
            Some(map) => Ok(Fields { owner, map }),
            None => Err(OptimError::InvalidConfig(format!(
                "{owner}: expected a JSON object, found {value}"
            ))),
        }
    }

    fn contains(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    fn required(&self, field: &str) -> Result<&'a Value> {
        self.map.get(field).ok_or_else(|| {
            OptimError::InvalidConfig(format!("{}: missing field `{field}`", self.owner))
        })
    }

    fn string(&self, field: &str) -> Result<&'a str> {
        let value = self.required(field)?;
        value
            .as_str()
            .ok_or_else(|| wrong_type(self.owner, field, "a string", value))
    }

    fn bool(&self, field: &str) -> Result<bool> {
        let value = self.required(field)?;
        value
            .as_bool()
            .ok_or_else(|| wrong_type(self.owner, field, "true or false", value))
    }

    fn f32(&self, field: &str) -> Result<f32> {
        as_f32(self.owner, field, self.required(field)?)
    }

    fn optional_f32(&self, field: &str) -> Result<Option<f32>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => as_f32(self.owner, field, value).map(Some),
        }
    }

    fn u64(&self, field: &str) -> Result<u64> {
        as_u64(self.owner, field, self.required(field)?)
    }

    fn array(&self, field: &str) -> Result<&'a Vec<Value>> {
        let value = self.required(field)?;
        value
            .as_array()
            .ok_or_else(|| wrong_type(self.owner, field, "an array", value))
    }
}

/// Reads a JSON number as `f32`. A config stores each `f32` widened to `f64`, so the narrowing
/// gives back the exact value.
fn as_f32(owner: &str, field: &str, value: &Value) -> Result<f32> {
    value
        .as_f64()
        .map(|number| number as f32)
        .ok_or_else(|| wrong_type(owner, field, "a number", value))
}

fn as_u64(owner: &str, field: &str, value: &Value) -> Result<u64> {
    value
        .as_u64()
        .ok_or_else(|| wrong_type(owner, field, "a non-negative integer", value))
}

fn wrong_type(owner: &str, field: &str, expected: &str, found: &Value) -> OptimError {
    OptimError::InvalidConfig(format!(
        "{owner}: field `{field}` must be {expected}, found {found}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Asserts that `schedule` survives a trip through its config: same config, same rates.
    #[track_caller]
    fn assert_schedule_round_trip(schedule: impl LearningRateSchedule) {
        let rebuilt = schedule_from_config(schedule.name(), &schedule.config()).unwrap();
        assert_eq!(rebuilt.name(), schedule.name());
        assert_eq!(rebuilt.config(), schedule.config());
        for step in [0, 1, 7, 50, 99, 100, 101, 1000, 12345] {
            assert_eq!(
                rebuilt.learning_rate(step).to_bits(),
                schedule.learning_rate(step).to_bits(),
                "{} at step {step}",
                schedule.name()
            );
        }
    }

    #[test]
    fn every_schedule_round_trips() {
        assert_schedule_round_trip(Constant::new(0.3).unwrap());
        assert_schedule_round_trip(CosineDecay::new(0.1, 100).unwrap().alpha(0.1).unwrap());
        assert_schedule_round_trip(
            CosineDecay::new(0.01, 100)
                .unwrap()
                .warmup(0.1, 10)
                .unwrap(),
        );
        assert_schedule_round_trip(
            CosineDecayRestarts::new(1.0, 30)
                .unwrap()
                .t_mul(1.5)
                .unwrap()
                .m_mul(0.7)
                .unwrap()
                .alpha(0.1)
                .unwrap(),
        );
        assert_schedule_round_trip(ExponentialDecay::new(0.05, 7, 0.9).unwrap().staircase(true));
        assert_schedule_round_trip(InverseTimeDecay::new(0.1, 10, 0.5).unwrap());
        assert_schedule_round_trip(
            LinearWarmup::new(ExponentialDecay::new(0.1, 10, 0.5).unwrap(), 20, 0.001).unwrap(),
        );
        assert_schedule_round_trip(
            OneCycle::new(0.1, 200)
                .unwrap()
                .pct_start(0.25)
                .unwrap()
                .div_factor(10.0)
                .unwrap()
                .final_div_factor(100.0)
                .unwrap(),
        );
        assert_schedule_round_trip(
            PiecewiseConstantDecay::new(vec![10, 100], vec![0.1, 0.01, 0.001]).unwrap(),
        );
        assert_schedule_round_trip(
            PolynomialDecay::new(0.1, 100)
                .unwrap()
                .end_learning_rate(0.01)
                .unwrap()
                .power(2.0)
                .unwrap()
                .cycle(true),
        );
        assert_schedule_round_trip(StepDecay::at(0.1, 0.5, [10, 100]).unwrap());
        assert_schedule_round_trip(StepDecay::every(0.1, 0.5, 30).unwrap());
    }

    #[test]
    fn optimizers_round_trip() {
        let optimizers: Vec<Box<dyn Optimizer>> = vec![
            Box::new(Adam::new(0.003).beta_1(0.8).beta_2(0.99).epsilon(1e-6)),
            Box::new(Adam::new(0.001).amsgrad(true)),
            Box::new(Adam::new(ExponentialDecay::new(0.05, 1, 0.9).unwrap())),
            Box::new(Sgd::new(0.1).momentum(0.9).nesterov(true)),
            Box::new(Sgd::new(StepDecay::every(0.1, 0.1, 5).unwrap())),
        ];
        for optimizer in optimizers {
            let rebuilt = optimizer_from_config(&optimizer.config()).unwrap();
            assert_eq!(rebuilt.name(), optimizer.name());
            assert_eq!(rebuilt.config(), optimizer.config());
            assert_eq!(
                rebuilt.learning_rate().to_bits(),
                optimizer.learning_rate().to_bits()
            );
        }
    }

    /// Returns the message of the error that rebuilding `config` must fail with.
    #[track_caller]
    fn optimizer_error(config: Value) -> String {
        match optimizer_from_config(&config) {
            Ok(optimizer) => panic!("expected an error, rebuilt {}", optimizer.config()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn unknown_names_are_listed() {
        let error = optimizer_error(json!({"name": "RMSprop", "learning_rate": 0.1}));
        assert!(error.contains("`RMSprop`"), "{error}");
        assert!(error.contains("Adam, SGD"), "{error}");
        let error = schedule_from_config("Cyclic", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`Cyclic`"), "{error}");
        assert!(error.contains("ExponentialDecay"), "{error}");
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let error = optimizer_error(json!({"name": "SGD", "learning_rate": 0.1}));
        assert!(error.contains("`momentum`"), "{error}");
        let config = json!({"name": "SGD", "learning_rate": "fast", "momentum": 0.0,
                            "nesterov": false});
        let error = optimizer_error(config);
        assert!(error.contains("learning_rate"), "{error}");
        let error = schedule_from_config(
            "ExponentialDecay",
            &json!({
            "initial_learning_rate": 0.1, "decay_steps": -3, "decay_rate": 0.5,
            "staircase": false}),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`decay_steps`"), "{error}");
        assert!(error.contains("non-negative integer"), "{error}");
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let config = json!({"name": "Adam", "learning_rate": 0.1, "beta_1": 1.5,
                            "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": false});
        let error = optimizer_error(config);
        assert!(error.contains("beta_1"), "{error}");
    }
}
