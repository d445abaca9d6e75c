//! Self-monitoring counters: every bounded, counted loss (cut lines, replaced
//! UTF-8, dropped alerts…) increments one of these, and they are logged every
//! `stats_interval` seconds and at exit.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Process-wide counters (relaxed atomics; read only for reports).
        #[derive(Default)]
        pub struct Stats { $(#[doc = $doc] pub $name: AtomicU64,)* }
        impl Stats {
            /// `name=value` pairs of every non-zero counter, for the log.
            pub fn summary(&self) -> String {
                let mut s = String::new();
                $(
                    let v = self.$name.load(Ordering::Relaxed);
                    if v > 0 { if !s.is_empty() { s.push(' '); } s.push_str(&format!("{}={}", stringify!($name), v)); }
                )*
                if s.is_empty() { s.push_str("nothing counted yet"); }
                s
            }
        }
        pub static STATS: Stats = Stats { $($name: AtomicU64::new(0),)* };
    };
}

counters! {
    bytes: "bytes of whole lines handed to the matcher",
    lines_cut: "lines longer than max_line_bytes, cut",
    invalid_utf8: "batches with invalid UTF-8, replaced",
    read_errors: "read errors on inputs (retried)",
    stream_connects: "stream connections established (TCP up, HTTP 2xx, WebSocket handshake done)",
    stream_failures: "stream connection attempts that failed and connections lost (each retried)",
    sse_malformed: "malformed SSE input: a `retry:` that is not a number, an event without its blank line beyond 1 MiB",
    listen_refused: "tcp listener connections refused over max_connections",
    matches: "rule matches (before cooldown and threshold)",
    alerts: "alerts handed to destinations",
    suppressed: "matches held back by a cooldown",
    alerts_dropped_queue_full: "alerts dropped because a destination queue was full",
    alerts_delivered: "alerts delivered",
    alerts_failed: "alerts dropped after the last retry",
    retries: "delivery retries",
}

/// Add `n` to a counter.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A counter's value (for tests).
#[cfg(test)]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
