//! [`RetryPolicy`]: how often, and how far apart, an endpoint runs a failing handler again
//! before it gives the message up to the dead-letter place ([`crate::dead_letter`]).
//!
//! A handler **attempt fails** when it returns [`HandlerError::Retry`](crate::HandlerError),
//! panics, or runs past its timeout. The endpoint then waits the backoff and runs the handler
//! again **in place**: the message is not put back on the backend, so the later messages of the
//! same sender wait behind it (per-pair order holds) while other senders' lanes go on. After
//! [`RetryPolicy::max_attempts`] failed attempts the message is dead-lettered with the reason and
//! the attempt count, a request gets an `ERROR` reply, and the delivery is acknowledged.
//!
//! Backoff before attempt `n + 1` (after `n` failures): `initial * multiplier^(n-1)`, at most
//! `max_backoff`, each wait shortened by up to a tenth at random (jitter, so that many
//! receivers retrying one broken dependency do not retry in step).

use std::time::Duration;

/// Retries with exponential backoff, then the dead-letter place. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (the first run included) before the message is dead-lettered; at least 1.
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub initial_backoff: Duration,
    /// Growth of the wait after each further failure (at least 1).
    pub multiplier: f64,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

/// Default attempts: the first run and four retries (waits 200, 400, 800, 1600 ms: 3 s in all).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(200),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retry: the first failure dead-letters the message.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// `max_attempts` attempts with the default backoff.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }

    /// The same policy with waits starting at `initial` (growth and cap unchanged).
    pub fn with_initial_backoff(mut self, initial: Duration) -> Self {
        self.initial_backoff = initial;
        self
    }

    /// The wait before the next attempt, after `failures` failed attempts (1 = after the first),
    /// without jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        let growth = self
            .multiplier
            .max(1.0)
            .powi(i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX));
        let wait = self.initial_backoff.as_secs_f64() * growth;
        if !wait.is_finite() || wait >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(wait)
        }
    }

    /// [`RetryPolicy::backoff`] shortened by up to a tenth at random.
    pub fn jittered_backoff(&self, failures: u32) -> Duration {
        let wait = self.backoff(failures);
        let tenth = wait / 10;
        if tenth.is_zero() {
            return wait;
        }
        // The clock's low bits are random enough to spread retries apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        wait - tenth.mul_f64(f64::from(nanos % 1000) / 1000.0)
    }

    /// Whether a message that failed `failures` times is given up.
    pub fn exhausted(&self, failures: u32) -> bool {
        failures >= self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms = |n| p.backoff(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [200, 400, 800, 1600]);
        assert_eq!(p.backoff(40), Duration::from_secs(30));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
        for n in 1..10 {
            let j = p.jittered_backoff(n);
            assert!(j <= p.backoff(n) && j >= p.backoff(n) * 9 / 10);
        }
    }

    #[test]
    fn attempts_count_the_first_run() {
        let p = RetryPolicy::attempts(3);
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        assert!(RetryPolicy::never().exhausted(1));
        assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
    }
}
