//! The test servers' log, kept in memory so that a failing test can show what the server said
//! (the request lines carry path, status and latency): a wait that expires in a browser test
//! prints the last lines next to what the page showed.
//!
//! One tracing subscriber per process, so the lines of every test server running in this
//! process are mixed; the buffer keeps the last [`MAX_LINES`]. Secrets never reach the log
//! (the product's rule), so nothing here needs redacting.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Enough for the last seconds of a full parallel run; a line is a few hundred bytes.
pub const MAX_LINES: usize = 4_000;

static LINES: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Starts capturing INFO and above into the buffer, once per process; later calls do nothing.
/// If something else already set a global subscriber, the buffer stays empty.
pub fn capture() {
    INSTALLED.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_thread_names(true)
            .with_writer(|| LineWriter(Vec::new()))
            .try_init();
    });
}

/// The last `count` captured lines that `keep` accepts, oldest first.
pub fn tail(count: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let lines = LINES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut kept: Vec<String> = lines
        .iter()
        .rev()
        .filter(|line| keep(line))
        .take(count)
        .cloned()
        .collect();
    kept.reverse();
    kept
}

/// One formatted event: the fmt layer writes it in pieces and drops the writer at its end.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.0).trim_end().to_string();
        let mut lines = LINES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() >= MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}
