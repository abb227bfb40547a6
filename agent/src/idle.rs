//! The idle timeout of a session or a preview: one warning `IDLE_WARNING_SECS` before
//! `IDLE_TIMEOUT_SECS`, then the end. The two modes measure activity differently (runs and
//! prompts; proxy traffic) and say different things; when to warn and when to end is decided
//! here once.

use std::time::Duration;

use crate::config::Limits;

/// What the idle timeout asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEvent {
    /// Warn that the end comes in about `left`.
    Warn { left: Duration },
    /// Idle for the whole timeout: end.
    Expired,
}

/// Decides, from the time of the last activity, when to warn (once per quiet spell) and when to end.
#[derive(Debug, Clone)]
pub struct IdleWatch {
    timeout: Duration,
    warning: Duration,
    /// The activity the warning was given for: a new activity allows a new warning.
    warned_for: Option<i64>,
}

impl IdleWatch {
    pub fn new(limits: &Limits) -> Self {
        Self {
            timeout: limits.idle_timeout,
            warning: limits.idle_warning,
            warned_for: None,
        }
    }

    /// How often to check: a quarter of the warning period, between 100 ms and 30 s.
    pub fn tick(&self) -> Duration {
        (self.warning / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// The timeout itself.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What to do now (`now`, seconds), the last activity having been at `latest`.
    pub fn check(&mut self, latest: i64, now: i64) -> Option<IdleEvent> {
        let idle = Duration::from_secs(u64::try_from(now - latest).unwrap_or(0));
        if idle >= self.timeout {
            return Some(IdleEvent::Expired);
        }
        if idle >= self.timeout.saturating_sub(self.warning) && self.warned_for != Some(latest) {
            self.warned_for = Some(latest);
            return Some(IdleEvent::Warn {
                left: self.timeout - idle,
            });
        }
        None
    }
}

pub use cca_domain::texts::agent::human;

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> IdleWatch {
        IdleWatch::new(&Limits {
            idle_timeout: Duration::from_secs(60),
            idle_warning: Duration::from_secs(20),
            ..Limits::default()
        })
    }

    #[test]
    fn one_warning_per_quiet_spell_then_the_end() {
        let mut w = watch();
        assert_eq!(w.check(100, 139), None);
        assert_eq!(
            w.check(100, 140),
            Some(IdleEvent::Warn {
                left: Duration::from_secs(20)
            })
        );
        assert_eq!(w.check(100, 150), None, "warned once");
        assert_eq!(w.check(100, 160), Some(IdleEvent::Expired));
        // Activity starts a new spell, with a warning of its own.
        assert_eq!(w.check(170, 200), None);
        assert!(matches!(w.check(170, 215), Some(IdleEvent::Warn { .. })));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(40)), "40 s");
        assert_eq!(human(Duration::from_secs(300)), "5 min");
        assert_eq!(watch().tick(), Duration::from_secs(5));
    }
}
