//! Listeners: devices push lines to us (syslog from routers, sensors, apps).
//! The source is `listen:NAME`; syslog prefixes (`<34>Oct 11 22:14:15 ...`,
//! RFC 5424 `<165>1 2003-10-11T22:14:15.003Z ...`) are kept in the line as
//! they came, so rules can match on them.
//!
//! - udp: one datagram holds one or more lines; one without a trailing
//!   newline is one line. Datagrams up to 64 KiB.
//! - tcp: a listener thread and one thread per connection (`listen:NAME:PEER`),
//!   at most `max_connections` at once: further connections are accepted and
//!   closed at once, counted and logged (at most once a minute). A connection
//!   silent for `idle_timeout` is closed; its thread ends with it.
//!
//! A bind error (address in use, no permission for a port below 1024) is
//! logged naming the address and retried every few seconds: the watcher
//! stays up and starts listening as soon as it can.

use super::lines::Lines;
use super::send;
use crate::config::{ListenSpec, ListenType};
use crate::event::{Event, Source, Stop};
use crate::stats::{self, STATS};
use crossbeam_channel::Sender;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reads and accepts wait at most this long, so the stop flag is seen.
const SLICE: Duration = Duration::from_millis(250);

/// Between attempts to bind an address that is in use.
const BIND_RETRY: Duration = Duration::from_secs(3);

/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 64 * 1024;

/// Start a listener on its own thread (`listen:NAME`).
pub fn spawn(
    spec: ListenSpec,
    max_line_bytes: usize,
    tx: Sender<Event>,
    stop: Stop,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("listen:{}", spec.name))
        .stack_size(192 * 1024)
        .spawn(move || match spec.kind {
            ListenType::Udp => udp(spec, max_line_bytes, tx, stop),
            ListenType::Tcp => tcp(spec, max_line_bytes, tx, stop),
        })
        .expect("cannot start a listener thread")
}

/// Bind with `bind`, retrying every `BIND_RETRY` while it fails (logged once
/// per distinct error); `None` when stopped meanwhile.
fn bind_retrying<T>(
    spec: &ListenSpec,
    stop: &Stop,
    bind: impl Fn(SocketAddr) -> std::io::Result<T>,
) -> Option<T> {
    let proto = match spec.kind {
        ListenType::Udp => "udp",
        ListenType::Tcp => "tcp",
    };
    let mut last_err: Option<String> = None;
    loop {
        if stop.is_stopped() {
            return None;
        }
        match bind(spec.address) {
            Ok(s) => {
                log::info!(
                    "listen {}: listening on {proto} {}",
                    spec.name,
                    spec.address
                );
                return Some(s);
            }
            Err(e) => {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => " (another program is listening there)",
                    std::io::ErrorKind::PermissionDenied => {
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    }
                    std::io::ErrorKind::AddrNotAvailable => " (no interface has this address)",
                    _ => "",
                };
                let msg = format!("{e}{hint}");
                if last_err.as_deref() != Some(msg.as_str()) {
                    log::error!(
                        "listen {}: cannot listen on {proto} {}: {msg}; retrying every {} s",
                        spec.name,
                        spec.address,
                        BIND_RETRY.as_secs()
                    );
                    last_err = Some(msg);
                }
                stats::add(&STATS.read_errors, 1);
                if !super::stream::sleep(BIND_RETRY, stop) {
                    return None;
                }
            }
        }
    }
}

fn udp(spec: ListenSpec, max_line_bytes: usize, tx: Sender<Event>, stop: Stop) {
    let Some(sock) = bind_retrying(&spec, &stop, UdpSocket::bind) else {
        return;
    };
    if let Err(e) = sock.set_read_timeout(Some(SLICE)) {
        log::error!("listen {}: {e}", spec.name);
        return;
    }
    let source: Source = Arc::from(format!("listen:{}", spec.name));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut lines = Lines::new(max_line_bytes);
    let mut batch = String::new();
    loop {
        if stop.is_stopped() {
            return;
        }
        match sock.recv(&mut buf) {
            Ok(n) => datagram(&mut lines, &buf[..n], &mut batch),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                stats::add(&STATS.read_errors, 1);
                log::debug!("listen {}: receive error: {e}", spec.name);
                continue;
            }
        }
        // Take whatever else is already queued, without waiting, into the same batch.
        while batch.len() < 256 * 1024 {
            // SAFETY: buf is valid for buf.len() bytes; the fd is the bound socket.
            let n = unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            datagram(&mut lines, &buf[..n as usize], &mut batch);
        }
        if !batch.is_empty()
            && send(
                &tx,
                &stop,
                Event::Lines {
                    source: source.clone(),
                    text: std::mem::take(&mut batch),
                },
            )
            .is_err()
        {
            return;
        }
    }
}

/// One datagram: its lines, the last one whole even without a newline.
fn datagram(lines: &mut Lines, d: &[u8], batch: &mut String) {
    if let Some(t) = lines.feed(d) {
        batch.push_str(&t);
    }
    if let Some(t) = lines.flush_partial() {
        batch.push_str(&t);
    }
}

fn tcp(spec: ListenSpec, max_line_bytes: usize, tx: Sender<Event>, stop: Stop) {
    let Some(l) = bind_retrying(&spec, &stop, TcpListener::bind) else {
        return;
    };
    let source: Source = Arc::from(format!("listen:{}", spec.name));
    let active = Arc::new(AtomicUsize::new(0));
    let mut refused: u64 = 0;
    let mut refused_logged: Option<Instant> = None;
    let mut refused_since_log: u64 = 0;
    loop {
        if stop.is_stopped() {
            return;
        }
        if !readable(&l, SLICE) {
            continue;
        }
        let (s, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    log::debug!("listen {}: accept: {e}", spec.name);
                    // Out of file descriptors and the like: do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= spec.max_connections {
            drop(s);
            refused += 1;
            refused_since_log += 1;
            stats::add(&STATS.listen_refused, 1);
            if refused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                log::warn!(
                    "listen {}: connection from {peer} refused: already {} connection(s) (max_connections); {refused_since_log} refused since the last report, {refused} in all",
                    spec.name,
                    spec.max_connections
                );
                refused_logged = Some(Instant::now());
                refused_since_log = 0;
            }
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = Active(active.clone());
        let (tx, stop, source, name, idle) = (
            tx.clone(),
            stop.clone(),
            source.clone(),
            spec.name.clone(),
            spec.idle_timeout,
        );
        let started = std::thread::Builder::new()
            .name(format!("listen:{}:{peer}", spec.name))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _guard = guard;
                connection(s, peer, &name, source, idle, max_line_bytes, tx, stop);
            });
        if let Err(e) = started {
            log::warn!(
                "listen {}: cannot start a thread for {peer}: {e}",
                spec.name
            );
        }
    }
}

/// Decrements the count of active connections when the connection's thread ends.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
fn connection(
    mut s: TcpStream,
    peer: SocketAddr,
    name: &str,
    source: Source,
    idle: Duration,
    max_line_bytes: usize,
    tx: Sender<Event>,
    stop: Stop,
) {
    log::debug!("listen {name}: connection from {peer}");
    let _ = s.set_nonblocking(false);
    if s.set_read_timeout(Some(SLICE)).is_err() {
        return;
    }
    let mut lines = Lines::new(max_line_bytes);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = Instant::now();
    let why = loop {
        if stop.is_stopped() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) => break "closed by the peer".to_string(),
            Ok(n) => {
                last = Instant::now();
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
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if !idle.is_zero() && last.elapsed() >= idle {
                    break format!(
                        "closed after {} s without data (idle_timeout)",
                        idle.as_secs_f64()
                    );
                }
            }
            Err(e) => {
                stats::add(&STATS.read_errors, 1);
                break format!("read error: {e}");
            }
        }
    };
    if let Some(text) = lines.flush_partial() {
        let _ = send(&tx, &stop, Event::Lines { source, text });
    }
    log::debug!("listen {name}: connection from {peer} {why}");
}

/// Wait up to `d` for a connection to accept.
fn readable(l: &TcpListener, d: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, d.as_millis() as libc::c_int) };
    r > 0
}
