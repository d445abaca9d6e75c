//! Standard input (`--file -`): lines piped in, read in big chunks and sent
//! as source `stdin`. End of input (a last line without newline still counts)
//! sends `Event::End`, which ends the run once every input has ended.

use super::lines::Lines;
use super::send;
use crate::event::{Event, Source, Stop};
use crate::stats::{self, STATS};
use crossbeam_channel::Sender;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

const CHUNK: usize = 128 * 1024;

pub fn spawn(max_line_bytes: usize, tx: Sender<Event>, stop: Stop) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("input:stdin".into())
        .stack_size(128 * 1024)
        .spawn(move || run(max_line_bytes, tx, stop))
        .expect("cannot start the stdin input thread")
}

fn run(max_line_bytes: usize, tx: Sender<Event>, stop: Stop) {
    let source: Source = Arc::from("stdin");
    // fd 0 read directly (no BufReader in between, so poll(2) tells the truth);
    // ManuallyDrop: never close it.
    let mut input = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let mut lines = Lines::new(max_line_bytes);
    let mut buf = vec![0u8; CHUNK];
    loop {
        if stop.is_stopped() {
            return;
        }
        if !readable(250) {
            continue;
        }
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(text) = lines.feed(&buf[..n]) {
                    if send(
                        &tx,
                        &stop,
                        Event::Lines {
                            source: source.clone(),
                            text,
                        },
                    )
                    .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::error!("stdin: read error: {e}; treating it as the end of input");
                stats::add(&STATS.read_errors, 1);
                break;
            }
        }
    }
    if let Some(text) = lines.flush_partial() {
        if send(
            &tx,
            &stop,
            Event::Lines {
                source: source.clone(),
                text,
            },
        )
        .is_err()
        {
            return;
        }
    }
    log::debug!("stdin: end of input");
    let _ = send(&tx, &stop, Event::End { source });
}

/// Wait up to `ms` for fd 0 to be readable (or at its end); true when it is.
fn readable(ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        // EINTR: look again; anything else: let the read report it.
        return std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted;
    }
    r > 0
}
