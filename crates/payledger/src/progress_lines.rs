//! Progress of long verifications as plain lines on stderr: one line every few seconds with the
//! position, the rate and the time left. Lines, not a redrawn bar, so that a run under cron or
//! `nohup` leaves a readable log (stdout keeps only the result).

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a line is written, at most.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Prints `label: done / total events (rate/s, eta …)` at most every [`PROGRESS_INTERVAL`].
/// A new `label` restarts the rate and the estimate (a new pass over the log).
pub struct ProgressLines {
    label: String,
    started: Instant,
    last_line: Instant,
    /// Events already through when the pass's first update came (not part of its rate).
    done_at_start: u64,
    interval: Duration,
}

impl ProgressLines {
    pub fn new() -> Self {
        Self::with_interval(PROGRESS_INTERVAL)
    }

    pub fn with_interval(interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            label: String::new(),
            started: now,
            last_line: now,
            done_at_start: 0,
            interval,
        }
    }

    /// Records that `done` of about `total` events of pass `label` are through; `position` is
    /// the last global position read when the pass reads in global order.
    pub fn update(&mut self, label: &str, done: u64, total: u64, position: Option<i64>) {
        let now = Instant::now();
        if label != self.label {
            self.label = label.to_string();
            self.started = now;
            self.last_line = now;
            self.done_at_start = done;
            return;
        }
        if now.duration_since(self.last_line) < self.interval {
            return;
        }
        self.last_line = now;
        let rate_per_s = done.saturating_sub(self.done_at_start) as f64
            / (now - self.started).as_secs_f64().max(0.001);
        let line = progress_line(label, done, total, position, rate_per_s);
        // Progress is best effort: a closed stderr must not stop the verification.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Default for ProgressLines {
    fn default() -> Self {
        Self::new()
    }
}

/// One progress line at `rate` events per second.
pub fn progress_line(
    label: &str,
    done: u64,
    total: u64,
    position: Option<i64>,
    rate: f64,
) -> String {
    let left = total.saturating_sub(done);
    let eta = if rate >= 1.0 {
        format!("{}s", (left as f64 / rate).round() as u64)
    } else {
        "unknown".to_string()
    };
    let at = position.map_or(String::new(), |p| format!(", at position {p}"));
    format!(
        "{label}: {done} / {total} events{at} ({:.0} events/s, eta {eta})",
        rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_rate_and_time_left() {
        let line = progress_line("chains", 1_000, 3_000, Some(1_000), 500.0);
        assert_eq!(
            line,
            "chains: 1000 / 3000 events, at position 1000 (500 events/s, eta 4s)"
        );
        let line = progress_line("links", 0, 10, None, 0.0);
        assert_eq!(line, "links: 0 / 10 events (0 events/s, eta unknown)");
    }
}
