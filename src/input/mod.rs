//! Inputs: each follows one kind of source on its own OS thread and sends
//! batches of whole lines (`Event::Lines`) to the matcher. `lines` is the one
//! line splitter they all use; `send` is how they all hand a batch over.

pub mod file;
pub mod lines;
pub mod listen;
pub mod stdin;
pub mod stream;

use crate::config::Config;
use crate::event::{Event, Stop};
use crate::state::State;
use crossbeam_channel::{SendTimeoutError, Sender};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// How a run uses its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow until stopped.
    Watch,
    /// `--once`: files are read to their end, then end.
    Once,
    /// `--until-match`: follow, but a match in what is already there should
    /// end the run as fast as possible.
    UntilMatch,
}

/// Start every input of `cfg`, as `mode` says. `state`: the state file and what it saved, to resume file
/// positions and SSE event ids from (and to send `Event::Mark`s).
pub fn start(
    cfg: &Config,
    tx: Sender<Event>,
    stop: Stop,
    mode: Mode,
    state: Option<(&Path, &State)>,
) -> Vec<JoinHandle<()>> {
    let mut v = Vec::new();
    if !cfg.files.is_empty() {
        let resume = state.map(|(path, st)| file::Resume {
            state_file: path.to_path_buf(),
            files: st.files.clone(),
        });
        let opts = file::Options {
            once: mode == Mode::Once,
            resume,
            lazy_watch: mode == Mode::UntilMatch,
        };
        v.push(file::spawn(
            cfg.files.clone(),
            cfg.max_line_bytes,
            tx.clone(),
            stop.clone(),
            opts,
        ));
    }
    for s in &cfg.streams {
        let resume = state.map(|(_, st)| stream::Resume {
            last_event_id: st.streams.get(&s.name).cloned(),
        });
        v.push(stream::spawn(
            s.clone(),
            cfg.max_line_bytes,
            tx.clone(),
            stop.clone(),
            resume,
        ));
    }
    for l in &cfg.listen {
        v.push(listen::spawn(
            l.clone(),
            cfg.max_line_bytes,
            tx.clone(),
            stop.clone(),
        ));
    }
    if cfg.stdin {
        v.push(stdin::spawn(cfg.max_line_bytes, tx, stop));
    }
    v
}

/// The input should end: the stop flag is set or the matcher is gone.
#[derive(Debug)]
pub struct Closed;

/// Hand an event to the matcher, waiting while the channel is full but
/// noticing the stop flag within 250 ms. `Err` means: end this input now.
pub fn send(tx: &Sender<Event>, stop: &Stop, ev: Event) -> Result<(), Closed> {
    let mut ev = ev;
    loop {
        match tx.send_timeout(ev, Duration::from_millis(250)) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(e)) => {
                if stop.is_stopped() {
                    return Err(Closed);
                }
                ev = e;
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(Closed),
        }
    }
}
