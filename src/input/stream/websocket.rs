//! `websocket` streams (ws://, wss://): one connection per call of `run`, on
//! the stream's own thread, with blocking tungstenite over a std `TcpStream`
//! (wrapped in native-tls for wss://); the reconnect loop in `mod.rs` calls it
//! again after an error or an end.
//!
//! tungstenite's `read()` blocks forever when the peer vanishes, so the socket
//! has a short read timeout (at most `READ_SLICE`): every slice the stop flag,
//! our own ping (`ping_interval`) and the idle timer (`idle_timeout`: nothing
//! at all, not even a pong, for that long) are checked. A server's ping is
//! answered at once (tungstenite queues the pong; we flush it). On shutdown
//! we send Close and wait (briefly) for the server's.
//!
//! Each text or binary message is whole lines: a message that does not end in
//! a newline still ends its last line. The Kubernetes stream subprotocols are
//! byte streams instead (a line may span messages): `binary.k8s.io` raw,
//! `base64.binary.k8s.io` base64 (what the API server offers for pod logs),
//! and the channel protocols of exec/attach (`channel.k8s.io`,
//! `v4.channel.k8s.io`…: a channel byte in front; `base64.channel.k8s.io`: a
//! channel digit, then base64), whose output channels share one splitter.
//!
//! Lines are handed over in batches: after a message the socket is read
//! without blocking until it has nothing more, then the batch goes on (a burst
//! of small messages costs one channel send, and no message waits).
//!
//! `max_message_bytes` is tungstenite's `max_message_size` and
//! `max_frame_size`: a frame whose header claims more is refused before any of
//! it is buffered, and the connection is dropped (the loop reconnects).

use super::{fmt_secs, idle_error, is_timeout, tcp_connect, Conn, StreamError, READ_SLICE};
use crate::config::{AuthCfg, StreamSpec};
use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error as WsError, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Bytes of lines gathered before they are handed over even if more is waiting.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the close handshake may take on shutdown.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// Connect once, read messages until the connection ends, say why it ended.
pub fn run(spec: &StreamSpec, conn: &mut Conn) -> Result<(), StreamError> {
    let t = parse_url(&spec.url).map_err(StreamError::Refused)?;
    let (mut ws, protocol) = connect(spec, &t, conn)?;
    let scheme = if t.tls { "wss" } else { "ws" };
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    match &protocol {
        Some(p) => conn.connected(&format!("{scheme}://{host}:{} (subprotocol {p})", t.port)),
        None => conn.connected(&format!("{scheme}://{host}:{}", t.port)),
    }
    let mut r = Reader {
        spec,
        decoding: Decoding::of(protocol.as_deref()),
        pending: Vec::new(),
        warned_base64: false,
    };
    let res = r.read_loop(&mut ws, conn);
    // Whatever ended the connection, the lines already read go to the matcher
    // (the loop flushes a held partial line after we return).
    let handed = r.hand_over(conn);
    match (res, handed) {
        (Err(StreamError::Stopped), _) | (_, Err(StreamError::Stopped)) => {
            close(&mut ws);
            Err(StreamError::Stopped)
        }
        (res, _) => res,
    }
}

// ---------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------

/// The parts of a `ws://` or `wss://` URL we need.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// `user:password` from the URL, if any (sent as basic auth).
    userinfo: Option<String>,
    /// The URL without its userinfo and fragment, for the request.
    url: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let bad = || format!("{}: not a ws:// or wss:// URL", crate::net::redact_url(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "ws" => false,
        "wss" => true,
        _ => return Err(bad()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        if !after.is_empty() && !after.starts_with(':') {
            return Err(bad());
        }
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None if tls => 443,
        None => 80,
    };
    let tail = tail.split('#').next().unwrap_or("");
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        userinfo,
        url: format!("{scheme}://{hostport}{tail}"),
    })
}

/// TCP connect, TLS for `wss://`, then the WebSocket handshake, each bounded
/// by `connect_timeout`. Returns the socket (read timeout back to a short
/// slice) and the subprotocol the server chose.
fn connect(
    spec: &StreamSpec,
    t: &Target,
    conn: &Conn,
) -> Result<(Ws, Option<String>), StreamError> {
    if t.tls && !cfg!(feature = "tls") {
        return Err(StreamError::Refused(format!(
            "{}: wss:// needs TLS, and this tinywatcher was built without the `tls` feature",
            crate::net::redact_url(&spec.url)
        )));
    }
    let timeout = if spec.connect_timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        spec.connect_timeout
    };
    let shown = if t.host.contains(':') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    };
    // The socket's read timeout is READ_SLICE: the TLS and WebSocket
    // handshakes are resumed after each slice, until the stop flag or
    // `timeout` (so a silent server holds up neither shutdown nor the loop).
    let tcp = tcp_connect(&t.host, t.port, timeout, &conn.stop)?;
    let deadline = Instant::now() + timeout;
    let stream = wrap_tls(tcp, t, spec, deadline, conn)?;
    let req = request(spec, t)?;
    let config = WebSocketConfig::default()
        // Allocated per connection: 32 KiB keeps 50 idle streams small.
        .read_buffer_size(32 * 1024)
        // Only pings, pongs and Close are written: send each at once.
        .write_buffer_size(0)
        .max_message_size(Some(spec.max_message_bytes))
        .max_frame_size(Some(spec.max_message_bytes));
    let mut res = tungstenite::client::client_with_config(req, stream, Some(config));
    let (mut ws, resp) = loop {
        match res {
            Ok(x) => break x,
            Err(HandshakeError::Interrupted(_)) if conn.stopped() => {
                return Err(StreamError::Stopped)
            }
            Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                res = mid.handshake()
            }
            Err(HandshakeError::Interrupted(_)) => {
                return Err(StreamError::Lost(format!(
                    "{shown}: no WebSocket handshake answer within {} s (connect_timeout)",
                    fmt_secs(timeout)
                )))
            }
            Err(HandshakeError::Failure(e)) => {
                return Err(handshake_error(e, &shown, timeout, spec))
            }
        }
    };
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    tcp_of(&mut ws)
        .set_read_timeout(Some(tick(spec)))
        .map_err(|e| StreamError::Lost(format!("{shown}: socket: {e}")))?;
    Ok((ws, protocol))
}

/// The handshake request: the URL, our User-Agent, `auth` (or the URL's
/// userinfo) as `Authorization`, the offered subprotocols, then `headers`
/// (which win over all of these).
fn request(
    spec: &StreamSpec,
    t: &Target,
) -> Result<tungstenite::handshake::client::Request, StreamError> {
    let bad = |what: String| StreamError::Refused(format!("stream {}: {what}", spec.name));
    let mut req = t
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| bad(format!("url {}: {e}", crate::net::redact_url(&spec.url))))?;
    let h = req.headers_mut();
    h.insert(
        "User-Agent",
        HeaderValue::from_static(crate::net::USER_AGENT),
    );
    if let Some(a) = super::authorization(spec.auth.as_ref(), t.userinfo.as_deref()) {
        let mut v = HeaderValue::from_str(&a).map_err(|_| {
            bad("auth: the credentials hold characters not allowed in a header".into())
        })?;
        v.set_sensitive(true);
        h.insert("Authorization", v);
    }
    if !spec.subprotocols.is_empty() {
        let v = HeaderValue::from_str(&spec.subprotocols.join(", ")).map_err(|_| {
            bad("subprotocols: a name holds characters not allowed in a header".into())
        })?;
        h.insert("Sec-WebSocket-Protocol", v);
    }
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("headers: {k:?} is not a valid header name")))?;
        let mut value = HeaderValue::from_str(v).map_err(|_| {
            bad(format!(
                "headers: the value of {k} holds characters not allowed in a header"
            ))
        })?;
        value.set_sensitive(true);
        h.insert(name, value);
    }
    Ok(req)
}

#[cfg(feature = "tls")]
fn wrap_tls(
    tcp: TcpStream,
    t: &Target,
    spec: &StreamSpec,
    deadline: Instant,
    conn: &Conn,
) -> Result<MaybeTlsStream<TcpStream>, StreamError> {
    if !t.tls {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    match crate::net::tls_connect_until(tcp, &t.host, &spec.tls, Some((deadline, &conn.stop))) {
        Ok(s) => Ok(MaybeTlsStream::NativeTls(s)),
        Err(_) if conn.stopped() => Err(StreamError::Stopped),
        Err(e) => Err(StreamError::from_tls(e)),
    }
}

#[cfg(not(feature = "tls"))]
fn wrap_tls(
    tcp: TcpStream,
    _t: &Target,
    _spec: &StreamSpec,
    _deadline: Instant,
    _conn: &Conn,
) -> Result<MaybeTlsStream<TcpStream>, StreamError> {
    // `connect` refused wss:// already.
    Ok(MaybeTlsStream::Plain(tcp))
}

/// The TCP socket under the WebSocket (and TLS): timeouts, blocking mode.
fn tcp_of(ws: &mut Ws) -> &mut TcpStream {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => s,
        #[cfg(feature = "tls")]
        MaybeTlsStream::NativeTls(s) => s.get_mut(),
        _ => unreachable!("only plain and native-tls streams are made here"),
    }
}

/// Say plainly why the handshake failed.
fn handshake_error(e: WsError, shown: &str, timeout: Duration, spec: &StreamSpec) -> StreamError {
    match e {
        WsError::Http(resp) => {
            let st = resp.status();
            let what = format!("{} {}", st.as_u16(), st.canonical_reason().unwrap_or(""));
            let what = what.trim_end();
            if st.as_u16() == 401 || st.as_u16() == 403 {
                StreamError::Refused(format!("{shown}: WebSocket handshake answered HTTP {what}: the credentials were refused (check `auth` and `headers`)"))
            } else if st.is_redirection() {
                StreamError::Lost(format!("{shown}: WebSocket handshake answered HTTP {what} (redirects are not followed; use the final URL)"))
            } else {
                StreamError::Lost(format!(
                    "{shown}: WebSocket handshake answered HTTP {what} (not a WebSocket endpoint?)"
                ))
            }
        }
        WsError::Io(e) if is_timeout(&e) => StreamError::Lost(format!(
            "{shown}: no WebSocket handshake answer within {} s (connect_timeout)",
            fmt_secs(timeout)
        )),
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            StreamError::Lost(format!(
                "{shown}: the server accepted none of the offered subprotocols ({})",
                spec.subprotocols.join(", ")
            ))
        }
        other => {
            let mut secrets: Vec<&str> = spec.headers.iter().map(|(_, v)| v.as_str()).collect();
            if let Some(AuthCfg::Basic(s) | AuthCfg::Bearer(s)) = &spec.auth {
                secrets.push(&s.0);
            }
            StreamError::Lost(format!(
                "{shown}: WebSocket handshake failed: {}",
                crate::net::scrub(&other.to_string(), &spec.url, &secrets)
            ))
        }
    }
}

/// The read timeout: at most `READ_SLICE`, shorter when pings or the idle
/// timeout are due more often.
fn tick(spec: &StreamSpec) -> Duration {
    let mut t = READ_SLICE;
    for d in [spec.ping_interval, spec.idle_timeout] {
        if !d.is_zero() {
            t = t.min(d / 2);
        }
    }
    t.max(Duration::from_millis(10))
}

/// Shutdown: send Close, and read until the server closes too (at most `CLOSE_WAIT`).
fn close(ws: &mut Ws) {
    let _ = tcp_of(ws).set_nonblocking(false);
    if ws.close(None).is_err() {
        return;
    }
    let end = Instant::now() + CLOSE_WAIT;
    while Instant::now() < end {
        match ws.read() {
            Ok(_) => {}
            Err(WsError::Io(e)) if is_timeout(&e) => {
                let _ = ws.flush();
            }
            Err(_) => break,
        }
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// How message payloads become bytes of lines, by the negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// Any other (or no) subprotocol: each message is one or more lines.
    Plain,
    /// `binary.k8s.io`: a byte stream cut into messages anywhere.
    K8sRaw,
    /// `base64.binary.k8s.io`: the same, each message base64.
    K8sBase64,
    /// `channel.k8s.io`, `v4.channel.k8s.io`…: a channel byte, then data.
    K8sChannel,
    /// `base64.channel.k8s.io`, `v4.base64.channel.k8s.io`: a channel digit, then base64.
    K8sBase64Channel,
}

impl Decoding {
    fn of(protocol: Option<&str>) -> Decoding {
        let p = match protocol {
            Some(p) => p.to_ascii_lowercase(),
            None => return Decoding::Plain,
        };
        if p == "binary.k8s.io" {
            Decoding::K8sRaw
        } else if p == "base64.binary.k8s.io" {
            Decoding::K8sBase64
        } else if p.ends_with("base64.channel.k8s.io") {
            Decoding::K8sBase64Channel
        } else if p.ends_with("channel.k8s.io") {
            Decoding::K8sChannel
        } else {
            Decoding::Plain
        }
    }
}

struct Reader<'a> {
    spec: &'a StreamSpec,
    decoding: Decoding,
    /// Bytes of the stream read but not yet handed to `conn.feed` (a burst
    /// of messages goes over as one batch).
    pending: Vec<u8>,
    /// A warning about undecodable base64 was logged on this connection.
    warned_base64: bool,
}

impl Reader<'_> {
    /// Read until the connection ends. `Ok(())`: the server closed it.
    fn read_loop(&mut self, ws: &mut Ws, conn: &mut Conn) -> Result<(), StreamError> {
        let spec = self.spec;
        let mut last_rx = Instant::now();
        let mut next_ping = last_rx + spec.ping_interval;
        // After a message the socket is read without blocking until it has
        // nothing more; then the batch is handed over and blocking resumes.
        let mut nonblocking = false;
        // A pong (or Close) that did not fit in the socket yet.
        let mut unflushed = false;
        let sock = |e: io::Error| StreamError::Lost(format!("socket: {e}"));
        loop {
            if conn.stopped() {
                return Err(StreamError::Stopped);
            }
            let now = Instant::now();
            if !spec.idle_timeout.is_zero() && now.duration_since(last_rx) >= spec.idle_timeout {
                // Nothing at all, not even a pong to our pings.
                return Err(idle_error(spec.idle_timeout));
            }
            if !spec.ping_interval.is_zero() && now >= next_ping {
                next_ping = now + spec.ping_interval;
                if nonblocking {
                    tcp_of(ws).set_nonblocking(false).map_err(sock)?;
                    nonblocking = false;
                }
                ws.send(Message::Ping(Default::default()))
                    .map_err(|e| self.error(e))?;
            }
            if unflushed {
                match ws.flush() {
                    Ok(()) => unflushed = false,
                    Err(WsError::Io(e)) if is_timeout(&e) => {}
                    Err(e) => return Err(self.error(e)),
                }
            }
            match ws.read() {
                Ok(msg) => {
                    last_rx = Instant::now();
                    match msg {
                        Message::Text(t) => self.message(t.as_bytes(), conn)?,
                        Message::Binary(b) => self.message(&b, conn)?,
                        // tungstenite queued the pong: send it now.
                        Message::Ping(_) => match ws.flush() {
                            Ok(()) => {}
                            Err(WsError::Io(e)) if is_timeout(&e) => unflushed = true,
                            Err(e) => return Err(self.error(e)),
                        },
                        Message::Pong(_) | Message::Frame(_) => {}
                        Message::Close(frame) => {
                            // tungstenite queued our reply: send it, then the server closes.
                            let _ = ws.flush();
                            match frame {
                                Some(f) => log::debug!(
                                    "stream {}: the server sent Close (code {}, {:?})",
                                    spec.name,
                                    u16::from(f.code),
                                    f.reason.as_str()
                                ),
                                None => log::debug!("stream {}: the server sent Close", spec.name),
                            }
                            return Ok(());
                        }
                    }
                    if self.pending.len() >= BATCH_BYTES {
                        self.hand_over(conn)?;
                    }
                    if !nonblocking && !self.pending.is_empty() {
                        tcp_of(ws).set_nonblocking(true).map_err(sock)?;
                        nonblocking = true;
                    }
                }
                Err(WsError::Io(e)) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    // Nothing more for now: hand the batch over, block again.
                    self.hand_over(conn)?;
                    if nonblocking {
                        tcp_of(ws).set_nonblocking(false).map_err(sock)?;
                        nonblocking = false;
                    }
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(()),
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// A read or write error, said plainly.
    fn error(&self, e: WsError) -> StreamError {
        StreamError::Lost(match e {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                format!("a message of {size} bytes is over max_message_bytes ({max_size}); connection dropped")
            }
            WsError::Io(e) if is_timeout(&e) => format!(
                "a write blocked for {} s (connect_timeout)",
                fmt_secs(self.spec.connect_timeout)
            ),
            WsError::Io(e) => format!("connection lost: {e}"),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                "the server dropped the connection without a close handshake".into()
            }
            other => other.to_string(),
        })
    }

    /// One message's payload, decoded, into the batch.
    fn message(&mut self, data: &[u8], conn: &mut Conn) -> Result<(), StreamError> {
        match self.decoding {
            Decoding::Plain => {
                // A message is whole lines: its last line ends with it.
                if !data.is_empty() {
                    self.push(data, conn)?;
                    if data.last() != Some(&b'\n') {
                        self.pending.push(b'\n');
                    }
                }
                Ok(())
            }
            Decoding::K8sRaw => self.push(data, conn),
            Decoding::K8sBase64 => {
                let bytes = self.base64(data);
                self.push(&bytes, conn)
            }
            // Channels 1 (stdout), 2 (stderr) and 3 (errors) are data; 255 (v5) closes a channel.
            Decoding::K8sChannel => match data.split_first() {
                Some((&ch, rest)) if ch != 255 && ch != 0 => self.push(rest, conn),
                _ => Ok(()),
            },
            Decoding::K8sBase64Channel => match data.split_first() {
                Some((&ch, rest)) if ch != b'0' => {
                    let bytes = self.base64(rest);
                    self.push(&bytes, conn)
                }
                _ => Ok(()),
            },
        }
    }

    /// Add to the batch; a big piece goes straight on (no copy).
    fn push(&mut self, data: &[u8], conn: &mut Conn) -> Result<(), StreamError> {
        if data.len() >= BATCH_BYTES {
            self.hand_over(conn)?;
            return conn.feed(data);
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Decode base64; what does not decode is taken as it is (and said once).
    fn base64(&mut self, data: &[u8]) -> Vec<u8> {
        match super::base64_decode(data) {
            Some(b) => b,
            None => {
                if !self.warned_base64 {
                    self.warned_base64 = true;
                    log::warn!("stream {}: a message is not valid base64 although the subprotocol says it is; taken as it is", self.spec.name);
                }
                data.to_vec()
            }
        }
    }

    /// Hand the batch to the line splitter and on to the matcher.
    fn hand_over(&mut self, conn: &mut Conn) -> Result<(), StreamError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = conn.feed(&self.pending);
        self.pending.clear();
        if self.pending.capacity() > 4 * BATCH_BYTES {
            self.pending = Vec::new();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t =
            parse_url("wss://k8s:6443/api/v1/namespaces/default/pods/p/log?follow=true").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "k8s".into(),
                port: 6443,
                userinfo: None,
                url: "wss://k8s:6443/api/v1/namespaces/default/pods/p/log?follow=true".into()
            }
        );
        let t = parse_url("ws://u:p@127.0.0.1").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.userinfo.as_deref(),
                t.url.as_str()
            ),
            (false, "127.0.0.1", 80, Some("u:p"), "ws://127.0.0.1/")
        );
        let t = parse_url("WSS://[::1]?x=1#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.url.as_str()),
            ("::1", 443, "WSS://[::1]/?x=1")
        );
        for bad in ["http://x", "ws://", "ws://h:99999/", "ws://[::1/"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    fn spec() -> StreamSpec {
        StreamSpec {
            name: "k".into(),
            kind: crate::config::StreamType::Websocket,
            url: "ws://127.0.0.1:1/".into(),
            headers: vec![],
            reconnect_delay: Duration::from_secs(1),
            max_reconnect_delay: Duration::from_secs(1),
            idle_timeout: Duration::ZERO,
            connect_timeout: Duration::from_secs(1),
            tls: Default::default(),
            auth: None,
            ping_interval: Duration::ZERO,
            max_message_bytes: 1 << 20,
            subprotocols: vec![],
        }
    }

    /// Feed `msgs` through a Reader with `protocol`; the lines the matcher gets.
    fn lines_of(protocol: Option<&str>, msgs: &[&[u8]]) -> String {
        let spec = spec();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut conn = Conn::new(&spec, 1024, tx, crate::event::Stop::new());
        let mut r = Reader {
            spec: &spec,
            decoding: Decoding::of(protocol),
            pending: Vec::new(),
            warned_base64: false,
        };
        for m in msgs {
            r.message(m, &mut conn).unwrap();
        }
        r.hand_over(&mut conn).unwrap();
        conn.finish().unwrap();
        drop(conn);
        rx.iter()
            .map(|e| match e {
                crate::event::Event::Lines { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn messages_become_lines_by_subprotocol() {
        // Plain: each message ends its last line.
        assert_eq!(
            lines_of(None, &[b"a\nb", b"", b"c\n", b"d"]),
            "a\nb\nc\nd\n"
        );
        // binary.k8s.io: a byte stream, lines span messages.
        assert_eq!(
            lines_of(Some("binary.k8s.io"), &[b"one\ntw", b"o\nthr", b"ee"]),
            "one\ntwo\nthree\n"
        );
        // base64.binary.k8s.io: the same, base64; what does not decode is kept.
        assert_eq!(
            lines_of(
                Some("base64.binary.k8s.io"),
                &[b"b25lCnR3", b"bwo=", b"not base64!\n"]
            ),
            "one\ntwo\nnot base64!\n"
        );
        // channel.k8s.io: the channel byte is stripped; stdin (0) and v5 close (255) are not data.
        assert_eq!(
            lines_of(
                Some("v4.channel.k8s.io"),
                &[
                    b"\x01out\n",
                    b"\x02err\n",
                    b"\x00in\n",
                    b"\xff\x01",
                    b"\x01"
                ]
            ),
            "out\nerr\n"
        );
        // base64.channel.k8s.io: a channel digit, then base64.
        assert_eq!(
            lines_of(
                Some("base64.channel.k8s.io"),
                &[b"1b25lCg==", b"2dHdvCg==", b"1"]
            ),
            "one\ntwo\n"
        );
    }

    #[test]
    fn subprotocols_choose_the_decoding() {
        assert_eq!(Decoding::of(None), Decoding::Plain);
        assert_eq!(Decoding::of(Some("chat")), Decoding::Plain);
        assert_eq!(Decoding::of(Some("binary.k8s.io")), Decoding::K8sRaw);
        assert_eq!(
            Decoding::of(Some("base64.binary.k8s.io")),
            Decoding::K8sBase64
        );
        assert_eq!(Decoding::of(Some("channel.k8s.io")), Decoding::K8sChannel);
        assert_eq!(
            Decoding::of(Some("v4.channel.k8s.io")),
            Decoding::K8sChannel
        );
        assert_eq!(
            Decoding::of(Some("base64.channel.k8s.io")),
            Decoding::K8sBase64Channel
        );
        assert_eq!(
            Decoding::of(Some("v4.base64.channel.k8s.io")),
            Decoding::K8sBase64Channel
        );
    }
}
