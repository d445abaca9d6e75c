//! Inputs: each follows one kind of source on its own OS thread and sends
//! batches of whole lines (`Event::Lines`) to the matcher.
//!
//! INTERFACE (stub, to be filled in): `start`.

pub mod file;
pub mod stdin;

use crate::config::Config;
use crate::event::{Event, Stop};
use crossbeam_channel::Sender;
use std::thread::JoinHandle;

/// Start every input of `cfg`.
pub fn start(cfg: &Config, tx: Sender<Event>, stop: Stop) -> Vec<JoinHandle<()>> {
    let mut v = Vec::new();
    if !cfg.files.is_empty() {
        v.push(file::spawn(cfg.files.clone(), cfg.max_line_bytes, tx.clone(), stop.clone()));
    }
    if cfg.stdin {
        v.push(stdin::spawn(cfg.max_line_bytes, tx, stop));
    }
    v
}
