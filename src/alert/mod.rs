//! Delivery: one sender thread per destination, each with a bounded queue, so
//! the matcher never waits on a destination. A full queue drops the alert and
//! counts it. HTTP destinations retry with backoff; secrets are redacted.
//!
//! INTERFACE (stub, to be filled in): see `Senders`.

use crate::config::AlertCfg;
use crate::event::Alert;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The running destinations, by index (the order of `names`).
pub struct Senders {
    pub names: Vec<String>,
}

impl Senders {
    /// Start one sender thread per destination. `json` forces JSON lines on
    /// stdout destinations (`--json`).
    pub fn start(alerts: &BTreeMap<String, AlertCfg>, json: bool) -> Result<Senders, String> {
        let _ = json;
        Ok(Senders { names: alerts.keys().cloned().collect() })
    }

    /// Index of a destination by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Hand an alert to destination `idx`. Never blocks: when its queue is full
    /// the alert is dropped and counted.
    pub fn dispatch(&self, idx: usize, alert: Arc<Alert>) {
        let _ = (idx, alert);
    }

    /// Close every queue and wait, until `deadline` at most, for the senders to
    /// deliver (or give up on) what is queued. Returns how many alerts were left.
    pub fn finish(self, deadline: Instant) -> usize {
        let _ = deadline;
        0
    }
}

/// `tinywatcher test --send`: send one test alert to destination `name` now,
/// synchronously, and say how it went.
pub fn send_test(name: &str, cfg: &AlertCfg, config: &crate::config::Config, json: bool) -> Result<(), String> {
    let _ = (name, cfg, config, json);
    Err("not implemented".into())
}
