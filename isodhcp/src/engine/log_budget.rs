//! Rate limit for log lines about single client messages.

use super::Millis;

/// A log-line budget: at most [`LogBudget::LINES`] lines per window of
/// [`LogBudget::WINDOW_MS`], so a guest cannot fill the journal with lines
/// about its own messages. The first line of a window after one that
/// suppressed lines says how many.
#[derive(Debug, Default, Clone)]
pub struct LogBudget {
    start: Millis,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Lines allowed per window.
    pub const LINES: u32 = 20;
    /// Window length, ms (10 s); a window starts at the first line asked for
    /// after the previous one ended.
    pub const WINDOW_MS: Millis = 10_000;

    /// Whether a line may be written at `now` (Unix ms).
    pub fn allow(&mut self, now: Millis) -> bool {
        if now.saturating_sub(self.start) >= Self::WINDOW_MS {
            if self.suppressed > 0 {
                tracing::info!(
                    suppressed = self.suppressed,
                    "log lines about client messages were left out (rate limit)"
                );
            }
            *self = LogBudget {
                start: now,
                ..LogBudget::default()
            };
        }
        if self.used < Self::LINES {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}
