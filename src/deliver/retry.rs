//! The retry policy: which answers are retried (Knative's rules), what `Retry-After` asks
//! for, and the wait before each retry.

use std::time::{Duration, SystemTime};

use hyper::StatusCode;

use crate::{
    backoff::{Backoff, Growth},
    config::{self, Delivery},
};

/// How far a retry's wait is spread around its backoff: 80% to 120%.
const JITTER: f64 = 0.2;

/// How a status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Success,
    /// Retried with backoff.
    Retry,
    /// Dead-lettered at once.
    Reject,
}

/// Knative's retry rules: 404, 408, 409, 425, 429 and 5xx are retried; other non-2xx are not.
pub fn classify(status: StatusCode) -> Class {
    match status.as_u16() {
        200..=299 => Class::Success,
        404 | 408 | 409 | 425 | 429 | 500..=599 => Class::Retry,
        _ => Class::Reject,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A trigger's waits between retries: exponential or linear in `backoff_delay`, capped at
/// `backoff_max`, with jitter.
pub fn policy(delivery: &Delivery) -> Backoff {
    let growth = match delivery.backoff {
        config::Backoff::Exponential => Growth::Exponential,
        config::Backoff::Linear => Growth::Linear,
    };
    Backoff::new(growth, delivery.backoff_delay, delivery.backoff_max).with_jitter(JITTER)
}

/// The wait before retry number `retry` (1 for the first). A `Retry-After` from the function
/// replaces the policy's wait, capped the same way.
pub fn retry_delay(policy: &Backoff, retry: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => asked.min(policy.max()),
        None => policy.delay(retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(backoff: config::Backoff) -> Delivery {
        Delivery {
            retry: 5,
            backoff,
            backoff_delay: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            batch: None,
        }
    }

    #[test]
    fn classifies_statuses_like_knative() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                Class::Success
            );
        }
        for code in [404, 408, 409, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(StatusCode::from_u16(code).unwrap()), Class::Retry);
        }
        for code in [100, 301, 304, 400, 401, 403, 405, 410, 413, 422] {
            assert_eq!(classify(StatusCode::from_u16(code).unwrap()), Class::Reject);
        }
    }

    #[test]
    fn the_policy_follows_the_config_and_spreads_by_a_fifth() {
        let exponential = policy(&delivery(config::Backoff::Exponential));
        let linear = policy(&delivery(config::Backoff::Linear));
        assert_eq!(exponential.base_delay(4), Duration::from_millis(1600));
        assert_eq!(linear.base_delay(4), Duration::from_millis(800));
        for retry in 1..=12 {
            let base = exponential.base_delay(retry);
            for _ in 0..50 {
                let got = retry_delay(&exponential, retry, None);
                assert!(
                    got >= base.mul_f64(0.8) && got <= base.mul_f64(1.2),
                    "{got:?}"
                );
                assert!(got <= Duration::from_secs(30));
            }
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = policy(&delivery(config::Backoff::Exponential));
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
