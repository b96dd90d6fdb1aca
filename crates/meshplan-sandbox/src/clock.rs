//! The sandbox's clock: one virtual clock for the whole cluster (cert-manager's validity and
//! renewal times, and the `Date` header of every answer, as real API servers send it), so
//! that clients judging certificates by the cluster's clock agree with the certificates the
//! simulated cert-manager issues.
//!
//! Virtual time runs `time_scale` times faster than real time from the sandbox's start
//! ([`crate::controllers::certmanager::Clock`]), and can be moved forward at once
//! ([`SandboxClock::advance`], admin endpoint `POST /_sandbox/clock/advance`), e.g. to bring a
//! certificate near its expiry.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::controllers::certmanager::Clock;

/// The shared virtual clock.
#[derive(Debug)]
pub(crate) struct SandboxClock {
    clock: Mutex<Clock>,
}

impl SandboxClock {
    /// A clock that starts now at real time, running `scale` times faster (a scale that is not
    /// a positive finite number runs at real time).
    pub(crate) fn new(scale: f64) -> Self {
        let now = Timestamp::now();
        let clock = Clock::new(now, now, scale).unwrap_or(Clock {
            start_real: now,
            start_virtual: now,
            scale: 1.0,
        });
        Self {
            clock: Mutex::new(clock),
        }
    }

    /// The clock as it is now (for a controller pass).
    pub(crate) fn get(&self) -> Clock {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Virtual now (whole seconds).
    pub(crate) fn now(&self) -> Timestamp {
        self.get().now(Timestamp::now())
    }

    /// Moves virtual time forward by `by` (negative moves are ignored); returns the new now.
    pub(crate) fn advance(&self, by: SignedDuration) -> Timestamp {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if by.is_positive() {
            clock.start_virtual = clock
                .start_virtual
                .checked_add(by)
                .unwrap_or(Timestamp::MAX);
        }
        clock.now(Timestamp::now())
    }

    /// Virtual now as an HTTP `Date` (IMF-fixdate, RFC 9110).
    pub(crate) fn http_date(&self) -> String {
        jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&self.now())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_virtual_time_and_the_date_header() {
        let clock = SandboxClock::new(1.0);
        let before = clock.now();
        let after = clock.advance(SignedDuration::from_hours(40));
        assert!(after.duration_since(before) >= SignedDuration::from_hours(40));
        let date = clock.http_date();
        assert!(date.ends_with(" GMT"), "{date}");
        let parsed = jiff::fmt::rfc2822::parse(&date).unwrap().timestamp();
        assert!(parsed >= after);
        // Backwards is refused.
        let again = clock.advance(SignedDuration::from_hours(-100));
        assert!(again >= after);
    }
}
