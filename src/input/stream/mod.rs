//! Network streams: one OS thread per stream, blocking I/O, reconnecting
//! forever. This module holds what every stream type shares: the thread, the
//! reconnect loop (exponential backoff with full jitter, reset after a healthy
//! connection, state changes logged once rather than once per retry), and
//! `Conn`, the per-connection context through which a protocol hands bytes to
//! the line splitter and on to the matcher.
//!
//! A protocol is one function, `run(spec, conn) -> Result<(), StreamError>`,
//! that connects once, reads until the connection ends, and says why it ended.
//! It must notice `conn.stopped()` at least every `READ_SLICE` (use socket
//! read timeouts of that length), so that shutdown is prompt.
//!
//! When is a connection healthy enough to reset the backoff? When it stayed up
//! for 30 s, or when it delivered data *and* outlived the delay that preceded
//! it. The second half keeps a server that closes after every line from being
//! hammered (each such connection delivers data but lasts a few ms), while a
//! server that streams for a while and then ends is reconnected quickly.

pub mod http;
pub mod sse;
pub mod tcp;
pub mod websocket;

use super::lines::Lines;
use super::send;
use crate::backoff::Backoff;
use crate::config::{StreamSpec, StreamType};
use crate::event::{Event, Source, Stop};
use crate::stats::{self, STATS};
use crossbeam_channel::Sender;
use std::io::Read;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a stream thread blocks in one read (set as the socket's read
/// timeout), so that the stop flag and the idle timeout are checked this often.
pub const READ_SLICE: Duration = Duration::from_millis(250);

/// Sleeps between retries are cut into slices this long, checking the stop flag.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// A connection that stayed up this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Bytes read from a socket at once.
pub const READ_BUF: usize = 64 * 1024;

/// A stream's read buffer: it starts small (an idle stream costs little
/// memory: fifty of them must fit in a few MB) and doubles, up to
/// `READ_BUF`, each time a read fills it (a busy stream reads in big chunks).
pub struct ReadBuf(Vec<u8>);

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf(vec![0; 4096])
    }

    /// Read once into the buffer; the bytes read.
    pub fn read<R: Read + ?Sized>(&mut self, r: &mut R) -> std::io::Result<&[u8]> {
        let n = r.read(&mut self.0)?;
        if n == self.0.len() && n < READ_BUF {
            self.0.resize((n * 2).min(READ_BUF), 0);
            return Ok(&self.0[..n]);
        }
        Ok(&self.0[..n])
    }
}

/// Why a connection ended (or never started).
#[derive(Debug)]
pub enum StreamError {
    /// The stop flag is set or the matcher is gone: end the thread.
    Stopped,
    /// Could not connect, or the connection was lost: retried with backoff.
    Lost(String),
    /// Credentials refused (HTTP 401/403) or a TLS certificate that did not
    /// verify: a configuration problem, retried at the maximum delay.
    Refused(String),
}

impl StreamError {
    /// `Refused` when a TLS error says the certificate did not verify, else `Lost`.
    #[cfg(feature = "tls")]
    pub fn from_tls(msg: String) -> StreamError {
        if msg.contains("did not verify") {
            StreamError::Refused(msg)
        } else {
            StreamError::Lost(msg)
        }
    }
}

/// A stream run with a state file (`--state`/`state_file:`): it reports each
/// new SSE last event id (`Event::Mark`) right after the lines of the event
/// that carried it, and its first connection already sends the saved one.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The id saved for this stream, if any.
    pub last_event_id: Option<String>,
}

/// Start a stream input on its own thread (`input:stream:NAME`).
pub fn spawn(
    spec: StreamSpec,
    max_line_bytes: usize,
    tx: Sender<Event>,
    stop: Stop,
    resume: Option<Resume>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("input:stream:{}", spec.name))
        // TLS handshakes (OpenSSL) want more than the 128 KiB of a file input.
        .stack_size(256 * 1024)
        .spawn(move || run(spec, max_line_bytes, tx, stop, resume))
        .expect("cannot start a stream input thread")
}

/// Dispatch one connection attempt on the stream's type.
fn connect_once(spec: &StreamSpec, conn: &mut Conn) -> Result<(), StreamError> {
    match spec.kind {
        StreamType::Tcp => tcp::run(spec, conn),
        StreamType::Http | StreamType::Sse => http::run(spec, conn),
        StreamType::Websocket => websocket::run(spec, conn),
    }
}

/// The reconnect loop: connect, read until the connection ends, wait, again.
fn run(
    spec: StreamSpec,
    max_line_bytes: usize,
    tx: Sender<Event>,
    stop: Stop,
    resume: Option<Resume>,
) {
    let shown = crate::net::redact_url(&spec.url);
    let shown = if spec.url.contains("://") {
        shown
    } else {
        spec.url.clone()
    };
    let mut backoff = Backoff::new(spec.reconnect_delay, spec.max_reconnect_delay);
    let mut retry_base: Option<Duration> = None;
    let mut conn = Conn::new(&spec, max_line_bytes, tx, stop);
    if let Some(r) = resume {
        conn.marks = true;
        if let Some(id) = r.last_event_id.filter(|id| !id.is_empty()) {
            log::debug!(
                "stream {}: resuming after SSE event id {id:?} (state file)",
                spec.name
            );
            sse::set_last_event_id(&spec.name, &id);
        }
    }
    // The reason of the last failure logged at warn, and how often it repeated since.
    let mut last_reason: Option<String> = None;
    let mut repeats: u64 = 0;
    let mut attempts: u64 = 0;
    log::debug!("stream {}: starting ({:?} {shown})", spec.name, spec.kind);
    loop {
        if conn.stopped() {
            break;
        }
        attempts += 1;
        conn.begin(repeats > 0);
        let res = connect_once(&spec, &mut conn);
        if conn.finish().is_err() {
            break;
        }
        // The server's SSE `retry:` becomes the base of the backoff.
        if conn.retry.is_some() && conn.retry != retry_base {
            retry_base = conn.retry;
            // Kept within [100 ms, max_reconnect_delay]: a server can neither
            // stop us reconnecting nor make us hammer it (`retry: 0`).
            let base = conn
                .retry
                .unwrap_or(spec.reconnect_delay)
                .clamp(crate::config::MIN_RECONNECT_DELAY, spec.max_reconnect_delay);
            backoff = Backoff::new(base, spec.max_reconnect_delay);
        }
        let up = conn.connected_at.map(|t| t.elapsed());
        let healthy =
            up.is_some_and(|d| d >= HEALTHY_AFTER || (conn.delivered && d >= backoff.ceiling()));
        if healthy {
            backoff.reset();
            last_reason = None;
            repeats = 0;
        }
        let (reason, at_max) = match res {
            Err(StreamError::Stopped) => break,
            Ok(()) if conn.connected_at.is_some() => {
                ("the server ended the stream".to_string(), false)
            }
            Ok(()) => (
                "the connection ended before the stream started".to_string(),
                false,
            ),
            Err(StreamError::Lost(m)) => (m, false),
            Err(StreamError::Refused(m)) => (m, true),
        };
        if conn.stopped() {
            break;
        }
        stats::add(&STATS.stream_failures, 1);
        let delay = if at_max {
            spec.max_reconnect_delay
        } else {
            backoff.next_delay()
        };
        let next = format!("next try in {:.1} s", delay.as_secs_f64());
        if last_reason.as_deref() == Some(reason.as_str()) {
            repeats += 1;
            log::debug!("stream {}: {reason} (again: {repeats} time(s), {attempts} attempt(s) so far); {next}", spec.name);
        } else {
            if at_max {
                log::error!(
                    "stream {}: {reason}; retrying at the maximum delay, {next}",
                    spec.name
                );
            } else {
                log::warn!("stream {}: {reason}; {next}", spec.name);
            }
            if repeats > 0 {
                log::debug!(
                    "stream {}: the previous failure repeated {repeats} time(s)",
                    spec.name
                );
            }
            last_reason = Some(reason);
            repeats = 0;
        }
        if !sleep(delay, &conn.stop) {
            break;
        }
    }
    log::debug!(
        "stream {}: stopped after {attempts} connection attempt(s)",
        spec.name
    );
}

/// Sleep `d` in small slices; false when the stop flag was set meanwhile.
pub fn sleep(d: Duration, stop: &Stop) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(SLEEP_SLICE));
    }
}

/// One stream's context, handed to its protocol for each connection: where
/// the bytes go (line splitter, channel), the stop flag, and what the
/// connection achieved (connected, data delivered, SSE `retry:`).
pub struct Conn {
    /// `stream:NAME`.
    pub source: Source,
    /// The stream's name (for log messages).
    pub name: String,
    tx: Sender<Event>,
    pub stop: Stop,
    max_line_bytes: usize,
    lines: Lines,
    /// When the current connection was established (`connected()`).
    connected_at: Option<Instant>,
    /// The current connection delivered at least one line.
    delivered: bool,
    /// Log "connected" at debug only (a failure is repeating).
    quiet: bool,
    /// A reconnect delay the server asked for (SSE `retry:`).
    pub retry: Option<Duration>,
    /// A state file is in use: report SSE event ids (`mark_event_id`).
    marks: bool,
}

impl Conn {
    fn new(spec: &StreamSpec, max_line_bytes: usize, tx: Sender<Event>, stop: Stop) -> Conn {
        Conn {
            source: Arc::from(format!("stream:{}", spec.name)),
            name: spec.name.clone(),
            tx,
            stop,
            max_line_bytes,
            lines: Lines::new(max_line_bytes),
            connected_at: None,
            delivered: false,
            quiet: false,
            retry: None,
            marks: false,
        }
    }

    /// A fresh start for a new connection.
    fn begin(&mut self, quiet: bool) {
        self.connected_at = None;
        self.delivered = false;
        self.quiet = quiet;
        self.lines = Lines::new(self.max_line_bytes);
    }

    /// The connection ended: its partial last line is a line of its own.
    fn finish(&mut self) -> Result<(), StreamError> {
        match self.lines.flush_partial() {
            Some(text) => self.send_text(text),
            None => Ok(()),
        }
    }

    /// The connection is established and the stream has started (the TCP
    /// connection is up, the HTTP status was 2xx, the WebSocket handshake
    /// completed): logged once.
    pub fn connected(&mut self, what: &str) {
        self.connected_at = Some(Instant::now());
        stats::add(&STATS.stream_connects, 1);
        if self.quiet {
            log::debug!("stream {}: connected to {what}", self.name);
        } else {
            log::info!("stream {}: connected to {what}", self.name);
        }
    }

    /// The stop flag is set.
    pub fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    /// The largest line handed on (`max_line_bytes`).
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Bytes of the stream: whole lines go on to the matcher, a partial last
    /// line is held for the next call. `Err(Stopped)`: end now.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), StreamError> {
        match self.lines.feed(data) {
            Some(text) => self.send_text(text),
            None => Ok(()),
        }
    }

    /// An SSE stream's new last event id, after the lines of its event were
    /// handed on (`feed`): with a state file, an `Event::Mark` for it.
    pub fn mark_event_id(&mut self, id: String) -> Result<(), StreamError> {
        if !self.marks {
            return Ok(());
        }
        let mark = crate::state::Mark::Stream {
            name: self.name.clone(),
            last_event_id: id,
        };
        send(
            &self.tx,
            &self.stop,
            Event::Mark {
                source: self.source.clone(),
                mark,
            },
        )
        .map_err(|_| StreamError::Stopped)
    }

    fn send_text(&mut self, text: String) -> Result<(), StreamError> {
        self.delivered = true;
        send(
            &self.tx,
            &self.stop,
            Event::Lines {
                source: self.source.clone(),
                text,
            },
        )
        .map_err(|_| StreamError::Stopped)
    }
}

/// Where `pump` hands each chunk read.
pub type Sink<'a> = dyn FnMut(&mut Conn, &[u8]) -> Result<(), StreamError> + 'a;

/// Read `r` (whose socket has a read timeout of `READ_SLICE`) until the peer
/// closes it, handing each chunk to `sink`. Returns `Ok(())` at the end of the
/// stream; `Lost` after `idle` without a byte (zero: never) or on a read
/// error; `Stopped` when the stop flag is set.
pub fn pump<R: Read + ?Sized>(
    r: &mut R,
    conn: &mut Conn,
    idle: Duration,
    sink: &mut Sink,
) -> Result<(), StreamError> {
    let mut buf = ReadBuf::new();
    let mut last = Instant::now();
    loop {
        if conn.stopped() {
            return Err(StreamError::Stopped);
        }
        match buf.read(r) {
            Ok([]) => return Ok(()),
            Ok(data) => {
                last = Instant::now();
                sink(conn, data)?;
            }
            Err(e) if is_timeout(&e) => {
                if !idle.is_zero() && last.elapsed() >= idle {
                    return Err(idle_error(idle));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Lost(format!("read error: {e}"))),
        }
    }
}

/// The message for an idle timeout.
pub fn idle_error(idle: Duration) -> StreamError {
    StreamError::Lost(format!(
        "no data for {} s (idle_timeout); reconnecting",
        fmt_secs(idle)
    ))
}

/// `1.5`, `120`: seconds as a short number.
pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

/// A read that timed out (the socket's read timeout): look at the stop flag and read again.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Resolve `host:port` and connect within `timeout` (each address in turn),
/// with TCP keepalive on and the read timeout set to `READ_SLICE`.
pub fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
    stop: &Stop,
) -> Result<std::net::TcpStream, StreamError> {
    use std::net::ToSocketAddrs;
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<std::net::SocketAddr> = (h, port)
        .to_socket_addrs()
        .map_err(|e| StreamError::Lost(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(StreamError::Lost(format!(
            "cannot resolve {host}: no addresses"
        )));
    }
    let timeout = if timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        timeout
    };
    let mut last = String::new();
    for a in addrs {
        if stop.is_stopped() {
            return Err(StreamError::Stopped);
        }
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                set_keepalive(&s);
                let _ = s.set_nodelay(true);
                s.set_read_timeout(Some(READ_SLICE))
                    .map_err(|e| StreamError::Lost(format!("socket: {e}")))?;
                s.set_write_timeout(Some(timeout))
                    .map_err(|e| StreamError::Lost(format!("socket: {e}")))?;
                return Ok(s);
            }
            Err(e) if is_timeout(&e) => {
                last = format!(
                    "cannot connect to {host}:{port}: no answer within {} s (connect_timeout)",
                    fmt_secs(timeout)
                )
            }
            Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
        }
    }
    Err(StreamError::Lost(last))
}

/// The TLS handshake on a socket from `tcp_connect` (read timeout
/// `READ_SLICE`): resumed after each slice until `connect_timeout` has passed
/// or the stop flag is set, so a server that accepts and never answers holds
/// up neither shutdown nor the reconnect loop.
#[cfg(feature = "tls")]
pub fn tls_handshake(
    s: std::net::TcpStream,
    host: &str,
    spec: &StreamSpec,
    conn: &Conn,
) -> Result<native_tls::TlsStream<std::net::TcpStream>, StreamError> {
    let timeout = if spec.connect_timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        spec.connect_timeout
    };
    match crate::net::tls_connect_until(
        s,
        host,
        &spec.tls,
        Some((Instant::now() + timeout, &conn.stop)),
    ) {
        Ok(t) => Ok(t),
        Err(_) if conn.stopped() => Err(StreamError::Stopped),
        Err(e) if e.ends_with("timed out") => Err(StreamError::Lost(format!(
            "{e} (no answer within {} s, connect_timeout)",
            fmt_secs(timeout)
        ))),
        Err(e) => Err(StreamError::from_tls(e)),
    }
}

/// TCP keepalive on, probing after 60 s of silence: a peer that vanished
/// (power cut, NAT timeout) is noticed even without an idle timeout.
pub fn set_keepalive(s: &std::net::TcpStream) {
    use std::os::unix::io::AsRawFd;
    let fd = s.as_raw_fd();
    let on: libc::c_int = 1;
    // SAFETY: fd is a valid socket; the option value is a c_int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            &on as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let idle: libc::c_int = 60;
            let intvl: libc::c_int = 15;
            let cnt: libc::c_int = 4;
            let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE,
                &idle as *const _ as *const libc::c_void,
                sz,
            );
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPINTVL,
                &intvl as *const _ as *const libc::c_void,
                sz,
            );
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPCNT,
                &cnt as *const _ as *const libc::c_void,
                sz,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Credentials: the one `Authorization` value every HTTP-based stream sends
// ---------------------------------------------------------------------------

/// The `Authorization` header value for a stream: `auth:` if configured,
/// else the URL's `user:password` (percent-decoded) as basic auth.
pub fn authorization(
    auth: Option<&crate::config::AuthCfg>,
    userinfo: Option<&str>,
) -> Option<String> {
    use crate::config::AuthCfg;
    match (auth, userinfo) {
        (Some(AuthCfg::Basic(up)), _) => Some(format!("Basic {}", base64_encode(up.0.as_bytes()))),
        (Some(AuthCfg::Bearer(tok)), _) => Some(format!("Bearer {}", tok.0)),
        (None, Some(ui)) => Some(format!(
            "Basic {}",
            base64_encode(percent_decode(ui).as_bytes())
        )),
        (None, None) => None,
    }
}

/// `%XX` decoded (userinfo in a URL).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// base64 (RFC 4648), both ways, small enough not to need a crate
// ---------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for `Authorization: Basic`).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(B64[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode base64: the standard and the URL-safe alphabet, padding optional,
/// ASCII whitespace ignored. `None` for anything else.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let (mut acc, mut n, mut pad) = (0u32, 0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None; // data after padding
        }
        acc = acc << 6 | v as u32;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match (n, pad) {
        (0, 0) => {}
        (2, 0 | 2) => out.push((acc >> 4) as u8),
        (3, 0 | 1) => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trips_and_known_values() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(
                base64_decode(enc.as_bytes()).unwrap(),
                plain.as_bytes(),
                "{enc}"
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(base64_decode(base64_encode(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn base64_decode_is_lenient_where_harmless_and_strict_elsewhere() {
        assert_eq!(base64_decode(b"Zm9v\r\nYmFy\n").unwrap(), b"foobar");
        assert_eq!(base64_decode(b"Zm8").unwrap(), b"fo"); // no padding
        assert_eq!(base64_decode(b"-_8=").unwrap(), [0xfb, 0xff]); // URL-safe
        assert_eq!(base64_decode(b"+/8=").unwrap(), [0xfb, 0xff]);
        for bad in [
            &b"Zm9v!"[..],
            b"Z",
            b"Zg==Zg==",
            b"Zg===",
            b"Zm9=v",
            b"\xff",
        ] {
            assert!(base64_decode(bad).is_none(), "{bad:?}");
        }
    }

    use super::*;
    use crate::config::TlsCfg;
    use std::io::Write;
    use std::net::TcpListener;

    fn spec(kind: StreamType, url: String) -> StreamSpec {
        StreamSpec {
            name: format!("{kind:?}"),
            kind,
            url,
            headers: vec![],
            reconnect_delay: Duration::from_millis(100),
            max_reconnect_delay: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            tls: TlsCfg::default(),
            auth: None,
            ping_interval: Duration::from_secs(30),
            max_message_bytes: 1 << 20,
            subprotocols: vec![],
        }
    }

    /// A server that answers `head` to every connection, then holds it open.
    fn server(head: &'static [u8]) -> (u16, Stop) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let done = Stop::new();
        let d = done.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                if d.is_stopped() {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let _ = c.write_all(head);
                held.push(c);
            }
        });
        (port, done)
    }

    /// Every stream type's thread ends within a second of the stop flag,
    /// whether blocked in a read, waiting for an HTTP answer, or sleeping
    /// before a retry at the maximum delay.
    #[test]
    fn every_stream_thread_exits_promptly_on_stop() {
        let (tcp, _a) = server(b"hello\n");
        let (http, _b) =
            server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n");
        let (sse, _c) =
            server(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: hi\n\n");
        let (silent, _d) = server(b"");
        let (refused, _e) = server(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
        let (tx, rx) = crossbeam_channel::bounded(1000);
        let stop = Stop::new();
        let specs = vec![
            spec(StreamType::Tcp, format!("127.0.0.1:{tcp}")),
            spec(StreamType::Http, format!("http://127.0.0.1:{http}/")),
            spec(StreamType::Sse, format!("http://127.0.0.1:{sse}/")),
            {
                let mut s = spec(StreamType::Http, format!("http://127.0.0.1:{silent}/"));
                s.name = "silent".into();
                s
            },
            {
                let mut s = spec(StreamType::Http, format!("http://127.0.0.1:{refused}/"));
                s.name = "refused".into();
                s
            },
            // websocket: covered in websocket.rs (its handshake is its own code).
        ];
        let handles: Vec<_> = specs
            .into_iter()
            .map(|s| spawn(s, 1024, tx.clone(), stop.clone(), None))
            .collect();
        // Three streams deliver a line each: they are connected and blocked in a read.
        let mut got = 0;
        let end = Instant::now() + Duration::from_secs(10);
        while got < 3 && Instant::now() < end {
            if let Ok(Event::Lines { text, .. }) = rx.recv_timeout(Duration::from_millis(100)) {
                got += text.lines().count();
            }
        }
        assert_eq!(got, 3);
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        stop.stop();
        for h in handles {
            let name = h.thread().name().unwrap_or("").to_string();
            h.join().unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "{name} took {:?} to stop",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn sleep_notices_stop() {
        let stop = Stop::new();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || sleep(Duration::from_secs(30), &s2));
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        stop.stop();
        assert!(!t.join().unwrap());
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
}
