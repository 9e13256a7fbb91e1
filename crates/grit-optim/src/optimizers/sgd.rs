use ndarray::Zip;
use serde_json::json;

use super::{
    LearningRate, Optimizer, OptimizerState, ParamMut, ensure_slots, flush_tiny, load_slots,
    named_slots,
};
use crate::Result;
use crate::error::check_range;

/// Stochastic gradient descent with optional momentum and Nesterov momentum.
///
/// With Keras 3's formulas, for learning rate `lr`, momentum `μ` and gradient `g`:
/// - plain: `w ← w − lr·g`;
/// - momentum: `v ← μ·v − lr·g`, then `w ← w + v`;
/// - Nesterov: `v ← μ·v − lr·g`, then `w ← w + μ·v − lr·g`.
///
/// A velocity that decays below 2⁻¹⁰⁰ is set to zero, because Intel CPUs compute with
/// subnormal operands in microcode. Such a velocity moves no weight larger than about 1.3e-23.
///
/// Defaults as Keras: learning rate 0.01, momentum 0, Nesterov off.
#[derive(Debug, Clone)]
pub struct Sgd {
    learning_rate: LearningRate,
    momentum: f32,
    nesterov: bool,
    iterations: u64,
    velocities: Vec<grit_tensor::Tensor>,
}

impl Sgd {
    /// Creates plain SGD with a fixed rate or a schedule.
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        Sgd {
            learning_rate: learning_rate.into(),
            momentum: 0.0,
            nesterov: false,
            iterations: 0,
            velocities: Vec::new(),
        }
    }

    /// Sets the momentum, in `[0, 1]`.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd::new(0.01)
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "SGD"
    }

    fn validate(&self) -> Result<()> {
        self.learning_rate.validate("SGD")?;
        check_range(
            "SGD",
            "momentum",
            self.momentum,
            0.0,
            1.0,
            true,
            "a value in [0, 1]",
        )
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate.at(self.iterations)
    }

    fn set_learning_rate(&mut self, rate: f32) -> Result<()> {
        self.learning_rate.set(rate, "SGD")
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn apply(&mut self, params: &mut [ParamMut<'_>]) {
        let lr = self.learning_rate.at(self.iterations);
        let momentum = self.momentum;
        if momentum == 0.0 {
            for p in params.iter_mut() {
                Zip::from(&mut *p.value)
                    .and(p.grad)
                    .for_each(|w, &g| *w -= lr * g);
            }
        } else {
            ensure_slots(&mut self.velocities, params);
            for (p, v) in params.iter_mut().zip(self.velocities.iter_mut()) {
                if self.nesterov {
                    Zip::from(&mut *p.value)
                        .and(v)
                        .and(p.grad)
                        .for_each(|w, v, &g| {
                            *v = flush_tiny(momentum * *v - lr * g);
                            *w += momentum * *v - lr * g;
                        });
                } else {
                    Zip::from(&mut *p.value)
                        .and(v)
                        .and(p.grad)
                        .for_each(|w, v, &g| {
                            *v = flush_tiny(momentum * *v - lr * g);
                            *w += *v;
                        });
                }
            }
        }
        self.iterations += 1;
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "name": "SGD",
            "learning_rate": self.learning_rate.config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
        })
    }

    fn state(&self) -> OptimizerState {
        OptimizerState {
            iterations: self.iterations,
            learning_rate: match self.learning_rate {
                LearningRate::Fixed(rate) => Some(rate),
                LearningRate::Scheduled(_) => None,
            },
            slots: named_slots("momentum", &self.velocities),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        load_slots(&mut self.velocities, "momentum", &state.slots)?;
        self.iterations = state.iterations;
        if let (LearningRate::Fixed(current), Some(rate)) =
            (&mut self.learning_rate, state.learning_rate)
        {
            *current = rate;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grit_tensor::Tensor;
    use ndarray::array;

    fn step(optimizer: &mut Sgd, w: &mut Tensor, g: &Tensor) {
        optimizer.apply(&mut [ParamMut { value: w, grad: g }]);
    }

    #[test]
    fn plain_step() {
        let mut w = array![1.0f32, -2.0].into_dyn();
        let g = array![0.5f32, -1.0].into_dyn();
        let mut sgd = Sgd::new(0.1);
        step(&mut sgd, &mut w, &g);
        assert_eq!(w, array![0.95f32, -1.9].into_dyn());
        assert_eq!(sgd.iterations(), 1);
    }

    /// Momentum 0.9, rate 0.1, gradient 1 at both steps: v1 = −0.1, w1 = 0.9;
    /// v2 = 0.9·(−0.1) − 0.1 = −0.19, w2 = 0.71.
    #[test]
    fn momentum_two_steps() {
        let mut w = array![1.0f32].into_dyn();
        let g = array![1.0f32].into_dyn();
        let mut sgd = Sgd::new(0.1).momentum(0.9);
        step(&mut sgd, &mut w, &g);
        assert!((w[0] - 0.9).abs() < 1e-6);
        step(&mut sgd, &mut w, &g);
        assert!((w[0] - 0.71).abs() < 1e-6);
    }

    /// Momentum 0.5, rate 1: a gradient of 4e-30 gives v = −4e-30, and zero gradients then
    /// halve it to −2e-30 and −1e-30 (above 2⁻¹⁰⁰, about 7.9e-31) and −5e-31, which becomes
    /// zero.
    #[test]
    fn tiny_velocity_becomes_zero() {
        let mut w = array![0.5f32].into_dyn();
        let mut sgd = Sgd::new(1.0).momentum(0.5);
        step(&mut sgd, &mut w, &array![4e-30f32].into_dyn());
        let zero = array![0.0f32].into_dyn();
        let velocity = |sgd: &Sgd| sgd.state().slots[0].1[0];
        step(&mut sgd, &mut w, &zero);
        assert_eq!(velocity(&sgd), -2e-30);
        step(&mut sgd, &mut w, &zero);
        assert_eq!(velocity(&sgd), -1e-30);
        step(&mut sgd, &mut w, &zero);
        assert_eq!(velocity(&sgd), 0.0);
        assert_eq!(w[0], 0.5);
    }

    /// Nesterov, same setting: w1 = 1 + 0.9·(−0.1) − 0.1 = 0.81;
    /// v2 = −0.19, w2 = 0.81 + 0.9·(−0.19) − 0.1 = 0.539.
    #[test]
    fn nesterov_two_steps() {
        let mut w = array![1.0f32].into_dyn();
        let g = array![1.0f32].into_dyn();
        let mut sgd = Sgd::new(0.1).momentum(0.9).nesterov(true);
        step(&mut sgd, &mut w, &g);
        assert!((w[0] - 0.81).abs() < 1e-6);
        step(&mut sgd, &mut w, &g);
        assert!((w[0] - 0.539).abs() < 1e-6);
    }

    #[test]
    fn invalid_momentum_is_named() {
        let error = Sgd::new(0.1).momentum(1.5).validate().unwrap_err();
        assert!(error.to_string().contains("momentum"), "{error}");
        assert!(Sgd::new(f32::NAN).validate().is_err());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let g = array![0.3f32, -0.2].into_dyn();
        let mut a = Sgd::new(0.1).momentum(0.9);
        let mut wa = array![1.0f32, 1.0].into_dyn();
        step(&mut a, &mut wa, &g);
        let mut b = Sgd::new(0.1).momentum(0.9);
        b.load_state(a.state()).unwrap();
        let mut wb = wa.clone();
        step(&mut a, &mut wa, &g);
        step(&mut b, &mut wb, &g);
        assert_eq!(wa, wb);
        assert_eq!(b.iterations(), 2);
    }
}
