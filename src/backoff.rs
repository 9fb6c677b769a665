//! Waits that grow with each try: delivery retries, function restarts, readiness polls and
//! the embedded broker's start on a locked database all take theirs from [`Backoff`].
//!
//! Wait number `n` (from 1) is the base delay times 1, `n` or 2<sup>n−1</sup> (constant,
//! linear, exponential), capped at the maximum, then spread by a jitter factor drawn from
//! [1 − jitter, 1 + jitter] and capped again. Nothing overflows: a wait too long for a
//! [`Duration`] is the maximum.

use std::time::Duration;

use rand::Rng;

/// How the wait grows from one try to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The same wait each time.
    Constant,
    /// `n` times the base delay.
    Linear,
    /// The base delay, doubled each time.
    Exponential,
}

/// A backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    growth: Growth,
    jitter: f64,
}

impl Backoff {
    /// Waits of `base`, growing as `growth` says, never above `max`; no jitter.
    pub const fn new(growth: Growth, base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            growth,
            jitter: 0.0,
        }
    }

    /// The same wait each time.
    pub const fn constant(delay: Duration) -> Self {
        Self::new(Growth::Constant, delay, delay)
    }

    /// Doubling from `base`, capped at `max`.
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self::new(Growth::Exponential, base, max)
    }

    /// Each wait spread over [1 − `jitter`, 1 + `jitter`] times its base (`jitter` is taken
    /// within 0–1), so that retries that failed together do not come back together.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Wait number `n` (1 for the first; 0 counts as 1) before jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let n = n.max(1);
        let factor = match self.growth {
            Growth::Constant => Some(1),
            Growth::Linear => Some(u128::from(n)),
            Growth::Exponential => 1u128.checked_shl(n - 1),
        };
        factor
            .and_then(|f| scaled(self.base, f))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Wait number `n`, with jitter.
    pub fn delay(&self, n: u32) -> Duration {
        if self.jitter == 0.0 {
            return self.base_delay(n);
        }
        self.delay_at(n, rand::rng().random_range(0.0..=1.0))
    }

    /// Wait number `n` with the jitter factor at `unit` (0 to 1) of its range.
    fn delay_at(&self, n: u32, unit: f64) -> Duration {
        let base = self.base_delay(n);
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// `base` × `factor`; `None` past what a [`Duration`] holds.
fn scaled(base: Duration, factor: u128) -> Option<Duration> {
    if base.is_zero() {
        return Some(Duration::ZERO);
    }
    let nanos = base.as_nanos().checked_mul(factor)?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn growth() -> impl Strategy<Value = Growth> {
        prop_oneof![
            Just(Growth::Constant),
            Just(Growth::Linear),
            Just(Growth::Exponential)
        ]
    }

    /// Durations from nothing to far past any config, in nanoseconds.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0..10_000_000_000u64).prop_map(Duration::from_nanos),
            any::<u64>().prop_map(Duration::from_secs),
        ]
    }

    proptest! {
        #[test]
        fn waits_grow_as_said_and_stay_under_the_cap(
            growth in growth(),
            base in duration(),
            max in duration(),
            n in 1..200u32,
        ) {
            let backoff = Backoff::new(growth, base, max);
            let this = backoff.base_delay(n);
            let next = backoff.base_delay(n + 1);
            prop_assert!(this <= max && next <= max);
            prop_assert!(this <= next, "{this:?} then {next:?}");
            prop_assert_eq!(backoff.base_delay(1), base.min(max));
            let expected = match growth {
                Growth::Constant => Some(base),
                Growth::Linear => base.checked_mul(n + 1),
                Growth::Exponential => this.checked_mul(2),
            };
            prop_assert_eq!(next, expected.map_or(max, |d| d.min(max)));
        }

        #[test]
        fn jitter_spreads_within_its_range_and_under_the_cap(
            growth in growth(),
            base in duration(),
            max in duration(),
            n in any::<u32>(),
            jitter in 0.0..=1.0f64,
            unit in 0.0..=1.0f64,
        ) {
            let backoff = Backoff::new(growth, base, max).with_jitter(jitter);
            let plain = backoff.base_delay(n).as_secs_f64();
            let got = backoff.delay_at(n, unit);
            prop_assert!(got <= max);
            // A nanosecond and a trillionth either way for the float's rounding.
            let low = plain * (1.0 - jitter) * (1.0 - 1e-12) - 1e-9;
            let high = (plain * (1.0 + jitter)).min(max.as_secs_f64()) * (1.0 + 1e-12) + 1e-9;
            prop_assert!(got.as_secs_f64() >= low, "{got:?} below {low}");
            prop_assert!(got.as_secs_f64() <= high, "{got:?} above {high}");
            prop_assert!(backoff.delay(n) <= max);
        }
    }

    #[test]
    fn exponential_and_linear_waits_are_capped() {
        let ms = Duration::from_millis;
        let exponential = Backoff::exponential(ms(200), Duration::from_secs(30));
        let got: Vec<u128> = (1..=10)
            .map(|n| exponential.base_delay(n).as_millis())
            .collect();
        assert_eq!(
            got,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(exponential.base_delay(u32::MAX), Duration::from_secs(30));
        let linear = Backoff::new(Growth::Linear, ms(200), Duration::from_secs(30));
        let got: Vec<u128> = (1..=4).map(|n| linear.base_delay(n).as_millis()).collect();
        assert_eq!(got, [200, 400, 600, 800]);
        assert_eq!(Backoff::constant(ms(5)).base_delay(9), ms(5));
    }

    #[test]
    fn jitter_out_of_range_is_taken_within_it() {
        let base = Backoff::constant(Duration::from_secs(1));
        assert_eq!(base.with_jitter(-1.0), base);
        assert_eq!(base.with_jitter(f64::NAN), base);
        assert_eq!(base.with_jitter(7.0).jitter, 1.0);
    }
}
