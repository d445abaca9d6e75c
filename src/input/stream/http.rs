//! HTTP streams (`http`, and `sse` on top): one GET whose response body is
//! read as it arrives — chunked, with a Content-Length, or until the server
//! closes — and split into lines (or parsed as Server-Sent Events when the
//! stream is `sse` or the answer is `Content-Type: text/event-stream`).
//!
//! This is a small HTTP/1.1 client of its own rather than ureq: an endless
//! body needs a per-read idle timeout and a stop check every 250 ms, and
//! ureq's per-call timeouts either bound the whole body or, with TLS, break
//! the connection when a short read timeout fires. Here the socket has a
//! 250 ms read timeout underneath native-tls (which resumes cleanly after
//! one), so the same loop serves http:// and https://. ureq still supplies
//! the proxy settings (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`,
//! via `Proxy::try_from_env`) and URL parsing (`http::Uri`).
//!
//! - The status line and headers must arrive within `connect_timeout`.
//! - 3xx with `Location` is followed up to 5 times, then "redirect loop".
//!   As curl does, a redirect to another origin (a scheme, host or port other than
//!   the configured URL's) is sent without `Authorization`, URL credentials or
//!   the configured `headers:`, and a redirect from https to http is refused.
//! - 401/403: "credentials were refused", retried at the maximum delay.
//! - Other non-2xx: logged with the status, retried with backoff.

use super::sse::Parser as SseParser;
use super::{is_timeout, tcp_connect, Conn, ReadBuf, StreamError};
use crate::config::{StreamSpec, StreamType};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use ureq::http::Uri;

/// Redirects followed before giving up with "redirect loop".
const MAX_REDIRECTS: usize = 5;

/// Largest status line + headers accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Connect once, read the body until the connection ends.
pub fn run(spec: &StreamSpec, conn: &mut Conn) -> Result<(), StreamError> {
    let mut url = spec.url.clone();
    // The configured URL: credentials and headers go to its origin only.
    let mut first: Option<(Origin, Option<String>)> = None;
    for _hop in 0..=MAX_REDIRECTS {
        let target = Target::parse(&url).map_err(StreamError::Refused)?;
        let (origin, first_userinfo) =
            first.get_or_insert_with(|| (target.origin(), target.userinfo.clone()));
        let creds = if target.origin() == *origin {
            // Same origin: everything, the configured URL's userinfo included
            // when the redirect's URL has none.
            Some(target.userinfo.as_deref().or(first_userinfo.as_deref()))
        } else {
            not_forwarded_once(&spec.name, &target);
            None
        };
        let proxy = proxy_for(&target);
        let proxy = proxy.as_ref();
        let mut wire = open(&target, proxy, spec, conn)?;
        let req = request(spec, &target, proxy, creds);
        wire.write_all(req.as_bytes()).map_err(|e| {
            StreamError::Lost(format!("{}: cannot send the request: {e}", target.shown))
        })?;
        let head = read_head(&mut wire, spec.connect_timeout, conn, &target.shown)?;
        match head.status {
            200..=299 => {
                let sse = spec.kind == StreamType::Sse
                    || head.header("content-type").is_some_and(|c| {
                        c.trim()
                            .to_ascii_lowercase()
                            .starts_with("text/event-stream")
                    });
                conn.connected(&format!(
                    "{} (HTTP {}{})",
                    target.shown,
                    head.status,
                    if sse { ", server-sent events" } else { "" }
                ));
                if head.status == 204 {
                    return Ok(());
                }
                let framing = framing(&head)?;
                return body(&mut wire, head.rest, framing, sse, spec, conn);
            }
            300..=399 => {
                let loc = head.header("location").ok_or_else(|| {
                    StreamError::Lost(format!(
                        "{}: HTTP {} without a Location header",
                        target.shown, head.status
                    ))
                })?;
                let next = resolve(&target, loc);
                log::debug!(
                    "stream {}: HTTP {} redirect to {}",
                    conn.name,
                    head.status,
                    crate::net::redact_url(&next)
                );
                if target.https
                    && next
                        .get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                {
                    return Err(StreamError::Refused(format!(
                        "{}: redirect from https to http refused ({})",
                        target.shown,
                        crate::net::redact_url(&next)
                    )));
                }
                url = next;
            }
            401 | 403 => {
                return Err(StreamError::Refused(format!(
                    "{}: credentials were refused (HTTP {})",
                    target.shown, head.status
                )));
            }
            s => {
                return Err(StreamError::Lost(format!(
                    "{}: HTTP {s} {}",
                    target.shown, head.reason
                )))
            }
        }
    }
    Err(StreamError::Lost(format!(
        "{}: redirect loop (more than {MAX_REDIRECTS} redirects)",
        crate::net::redact_url(&spec.url)
    )))
}

/// Scheme (https or not), lowercased host and port: what must match for
/// credentials and configured headers to be sent.
type Origin = (bool, String, u16);

/// Log, once per stream and origin, that a redirect's request went out
/// without the stream's credentials and headers.
fn not_forwarded_once(stream: &str, t: &Target) {
    static SEEN: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashSet<(String, Origin)>>,
    > = std::sync::OnceLock::new();
    let new = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((stream.to_string(), t.origin()));
    if new {
        log::info!("stream {stream}: redirected to another origin ({}): credentials and configured headers were not forwarded", t.shown);
    }
}

/// A parsed URL, ready to connect to.
struct Target {
    uri: Uri,
    https: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
    /// `user:password` from the URL, if any.
    userinfo: Option<String>,
    /// The URL for logs (secrets hidden).
    shown: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let shown = crate::net::redact_url(url);
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{shown}: not a valid URL: {e}"))?;
        let https = match uri.scheme_str().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{shown}: expected an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{shown}: no host"))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let userinfo = uri
            .authority()
            .and_then(|a| a.as_str().rsplit_once('@').map(|(u, _)| u.to_string()));
        Ok(Target {
            uri,
            https,
            host,
            port,
            path,
            userinfo,
            shown,
        })
    }

    fn origin(&self) -> Origin {
        (self.https, self.host.to_ascii_lowercase(), self.port)
    }

    /// `host` or `host:port` as the Host header wants it.
    fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A `Location` resolved against the URL it came from.
fn resolve(base: &Target, loc: &str) -> String {
    let loc = loc.trim();
    if loc.contains("://") {
        return loc.to_string();
    }
    let scheme = if base.https { "https" } else { "http" };
    let origin = format!("{scheme}://{}", base.host_header());
    if let Some(rest) = loc.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{origin}{loc}")
    } else {
        let dir = base.path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        format!("{origin}{dir}{loc}")
    }
}

/// The connection: a socket, or TLS over one.
enum Wire {
    Plain(std::net::TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<native_tls::TlsStream<std::net::TcpStream>>),
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(b),
            #[cfg(feature = "tls")]
            Wire::Tls(s) => s.read(b),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(b),
            #[cfg(feature = "tls")]
            Wire::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Wire::Tls(s) => s.flush(),
        }
    }
}

/// The proxy for a target, chosen by its scheme as curl does: `https_proxy`
/// (or `HTTPS_PROXY`) for https, `http_proxy` (or `HTTP_PROXY`) for http, then
/// `all_proxy`/`ALL_PROXY`; none when `NO_PROXY` names the host.
fn proxy_for(t: &Target) -> Option<ureq::Proxy> {
    // ureq reads NO_PROXY along with the first proxy variable it finds.
    if ureq::Proxy::try_from_env()?.is_no_proxy(&t.uri) {
        return None;
    }
    let names: [&str; 4] = if t.https {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        .and_then(|v| ureq::Proxy::new(&v).ok())
}

/// Connect (through the proxy when there is one), TLS for https.
fn open(
    t: &Target,
    proxy: Option<&ureq::Proxy>,
    spec: &StreamSpec,
    conn: &mut Conn,
) -> Result<Wire, StreamError> {
    let s = match proxy {
        None => tcp_connect(&t.host, t.port, spec.connect_timeout, &conn.stop)?,
        Some(p) => {
            if p.protocol() != ureq::ProxyProtocol::Http {
                return Err(StreamError::Refused(format!(
                    "proxy {}:{}: only http:// proxies are supported for streams ({:?})",
                    p.host(),
                    p.port(),
                    p.protocol()
                )));
            }
            let s = tcp_connect(p.host(), p.port(), spec.connect_timeout, &conn.stop)?;
            if !t.https {
                // Plain http goes to the proxy as an absolute-form request.
                return Ok(Wire::Plain(s));
            }
            let mut w = Wire::Plain(s);
            let mut req = format!(
                "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {ua}\r\n",
                host = t.host,
                port = t.port,
                ua = crate::net::USER_AGENT
            );
            if let Some(a) = proxy_auth(p) {
                req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
            }
            req.push_str("\r\n");
            let shown = format!("proxy {}:{}", p.host(), p.port());
            w.write_all(req.as_bytes())
                .map_err(|e| StreamError::Lost(format!("{shown}: {e}")))?;
            let head = read_head(&mut w, spec.connect_timeout, conn, &shown)?;
            if !(200..300).contains(&head.status) {
                return Err(StreamError::Lost(format!(
                    "{shown}: CONNECT to {}:{} answered HTTP {} {}",
                    t.host, t.port, head.status, head.reason
                )));
            }
            match w {
                Wire::Plain(s) => s,
                #[cfg(feature = "tls")]
                Wire::Tls(_) => unreachable!(),
            }
        }
    };
    if !t.https {
        return Ok(Wire::Plain(s));
    }
    #[cfg(feature = "tls")]
    {
        // Bounded by connect_timeout, and stopped within a read slice on shutdown.
        let tls = super::tls_handshake(s, &t.host, spec, conn)?;
        Ok(Wire::Tls(Box::new(tls)))
    }
    #[cfg(not(feature = "tls"))]
    Err(StreamError::Refused(
        crate::net::tls_unavailable(&spec.url).unwrap_or_else(|| "https:// needs TLS".into()),
    ))
}

fn proxy_auth(p: &ureq::Proxy) -> Option<String> {
    p.username().map(|u| {
        format!(
            "Basic {}",
            super::base64_encode(format!("{u}:{}", p.password().unwrap_or("")).as_bytes())
        )
    })
}

/// The GET request. `creds` is `Some(URL userinfo)` when the request may
/// carry the stream's credentials and configured headers (the configured
/// URL's origin), `None` for another origin: neither is sent there.
fn request(
    spec: &StreamSpec,
    t: &Target,
    proxy: Option<&ureq::Proxy>,
    creds: Option<Option<&str>>,
) -> String {
    let target = match proxy {
        Some(_) if !t.https => format!("http://{}{}", t.host_header(), t.path),
        _ => t.path.clone(),
    };
    let mut r = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n",
        t.host_header(),
        crate::net::USER_AGENT
    );
    let headers: &[(String, String)] = if creds.is_some() { &spec.headers } else { &[] };
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("accept") {
        r.push_str(if spec.kind == StreamType::Sse {
            "Accept: text/event-stream\r\n"
        } else {
            "Accept: */*\r\n"
        });
    }
    if spec.kind == StreamType::Sse && !has("cache-control") {
        r.push_str("Cache-Control: no-cache\r\n");
    }
    if let Some(userinfo) = creds.filter(|_| !has("authorization")) {
        if let Some(a) = super::authorization(spec.auth.as_ref(), userinfo) {
            r.push_str(&format!("Authorization: {a}\r\n"));
        }
    }
    if let Some(p) = proxy {
        if !t.https {
            if let Some(a) = proxy_auth(p) {
                r.push_str(&format!("Proxy-Authorization: {a}\r\n"));
            }
        }
    }
    if matches!(spec.kind, StreamType::Sse | StreamType::Http) && !has("last-event-id") {
        if let Some(id) = super::sse::last_event_id(&spec.name) {
            if !id.contains(['\r', '\n']) {
                r.push_str(&format!("Last-Event-ID: {id}\r\n"));
            }
        }
    }
    for (k, v) in headers {
        if !v.contains(['\r', '\n']) && !k.contains(['\r', '\n', ':']) {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    r.push_str("\r\n");
    r
}

/// A response's status line and headers.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    /// Body bytes read along with the head.
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read the status line and headers within `deadline` (1xx answers skipped).
fn read_head(
    w: &mut Wire,
    deadline: Duration,
    conn: &Conn,
    shown: &str,
) -> Result<Head, StreamError> {
    let end = Instant::now()
        + if deadline.is_zero() {
            Duration::from_secs(10)
        } else {
            deadline
        };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((len, body_at)) = find_head_end(&buf) {
            let head =
                parse_head(&buf[..len]).map_err(|e| StreamError::Lost(format!("{shown}: {e}")))?;
            let rest = buf[body_at..].to_vec();
            if (100..200).contains(&head.0) && head.0 != 101 {
                buf = rest;
                continue;
            }
            return Ok(Head {
                status: head.0,
                reason: head.1,
                headers: head.2,
                rest,
            });
        }
        if buf.len() > MAX_HEAD {
            return Err(StreamError::Lost(format!(
                "{shown}: the response headers are larger than {MAX_HEAD} bytes"
            )));
        }
        if conn.stopped() {
            return Err(StreamError::Stopped);
        }
        if Instant::now() >= end {
            return Err(StreamError::Lost(format!(
                "{shown}: no HTTP answer within {} s (connect_timeout)",
                super::fmt_secs(deadline)
            )));
        }
        match w.read(&mut chunk) {
            Ok(0) => {
                return Err(StreamError::Lost(format!(
                    "{shown}: the server closed the connection without an HTTP answer"
                )))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Lost(format!("{shown}: read error: {e}"))),
        }
    }
}

/// The end of the head: (its length, where the body starts).
fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    for i in 0..b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
    }
    None
}

type ParsedHead = (u16, String, Vec<(String, String)>);

fn parse_head(b: &[u8]) -> Result<ParsedHead, String> {
    let text = String::from_utf8_lossy(b);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "not an HTTP answer: {:?}",
            status_line.chars().take(60).collect::<String>()
        ));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        format!(
            "bad HTTP status line: {:?}",
            status_line.chars().take(60).collect::<String>()
        )
    })?;
    let reason = parts.next().unwrap_or("").trim().to_string();
    let mut headers = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, reason, headers))
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    Close,
}

fn framing(h: &Head) -> Result<Framing, StreamError> {
    if h.header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Framing::Chunked);
    }
    match h.header("content-length") {
        Some(v) => v
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| StreamError::Lost(format!("bad Content-Length: {v:?}"))),
        None => Ok(Framing::Close),
    }
}

/// Read the body to its end, decoding its framing, as lines or as SSE.
fn body(
    w: &mut Wire,
    rest: Vec<u8>,
    framing: Framing,
    sse: bool,
    spec: &StreamSpec,
    conn: &mut Conn,
) -> Result<(), StreamError> {
    let mut parser = if sse {
        Some(SseParser::new(&spec.name, conn.max_line_bytes()))
    } else {
        None
    };
    let mut events = Vec::new();
    let mut deliver = |conn: &mut Conn, payload: &[u8]| -> Result<(), StreamError> {
        match &mut parser {
            None => conn.feed(payload),
            Some(p) => {
                p.feed(payload, &mut events);
                let mut r = if events.is_empty() {
                    Ok(())
                } else {
                    conn.feed(&events)
                };
                if p.retry.is_some() {
                    conn.retry = p.retry;
                }
                events.clear();
                // The id goes to the state file after the data of its event.
                if let (Ok(()), Some(id)) = (&r, p.take_new_id()) {
                    r = conn.mark_event_id(id);
                }
                r
            }
        }
    };
    let mut dec = Decoder::new(framing);
    let map = |e| match e {
        DecodeError::Sink(s) => s,
        DecodeError::Bad(m) => StreamError::Lost(m),
    };
    // Body bytes that came along with the head.
    if !rest.is_empty() && dec.decode(&rest, &mut |p| deliver(conn, p)).map_err(map)? {
        return Ok(());
    }
    let mut buf = ReadBuf::new();
    let mut last = Instant::now();
    let idle = spec.idle_timeout;
    loop {
        if conn.stopped() {
            return Err(StreamError::Stopped);
        }
        let data = match buf.read(w) {
            Ok([]) => {
                return match dec.at_close() {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StreamError::Lost(e)),
                }
            }
            Ok(data) => data,
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                if !idle.is_zero() && last.elapsed() >= idle {
                    return Err(super::idle_error(idle));
                }
                continue;
            }
            Err(e) => return Err(StreamError::Lost(format!("read error: {e}"))),
        };
        last = Instant::now();
        let done = dec.decode(data, &mut |p| deliver(conn, p)).map_err(map)?;
        if done {
            return Ok(());
        }
    }
}

enum DecodeError {
    Sink(StreamError),
    Bad(String),
}

/// Body framing decoder, resumable at any byte.
struct Decoder {
    framing: Framing,
    state: Chunk,
    /// Bytes left of a Content-Length body.
    left: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line: value so far, digits, in an extension.
    Size {
        n: u64,
        digits: u8,
        ext: bool,
    },
    Data(u64),
    /// After chunk data: CRLF expected.
    DataEnd {
        cr: bool,
    },
    /// Trailer lines: length of the current one.
    Trailer(usize),
    Done,
}

impl Decoder {
    fn new(framing: Framing) -> Decoder {
        let left = if let Framing::Length(n) = framing {
            n
        } else {
            0
        };
        Decoder {
            framing,
            state: Chunk::Size {
                n: 0,
                digits: 0,
                ext: false,
            },
            left,
        }
    }

    /// The connection closed: fine for a body that ends at close (or is complete).
    fn at_close(&self) -> Result<(), String> {
        match self.framing {
            Framing::Close => Ok(()),
            Framing::Length(_) if self.left == 0 => Ok(()),
            Framing::Length(_) => Err(format!(
                "the server closed the connection {} bytes before the end of the body",
                self.left
            )),
            Framing::Chunked if self.state == Chunk::Done => Ok(()),
            Framing::Chunked => {
                Err("the server closed the connection in the middle of a chunked body".into())
            }
        }
    }

    /// Decode `input`, handing payload to `sink`; true when the body is complete.
    fn decode(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), StreamError>,
    ) -> Result<bool, DecodeError> {
        match self.framing {
            Framing::Close => {
                sink(input).map_err(DecodeError::Sink)?;
                Ok(false)
            }
            Framing::Length(_) => {
                let n = (self.left.min(input.len() as u64)) as usize;
                if n > 0 {
                    sink(&input[..n]).map_err(DecodeError::Sink)?;
                }
                self.left -= n as u64;
                Ok(self.left == 0)
            }
            Framing::Chunked => self.chunked(input, sink),
        }
    }

    fn chunked(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), StreamError>,
    ) -> Result<bool, DecodeError> {
        let bad = |m: &str| DecodeError::Bad(format!("bad chunked body: {m}"));
        while !input.is_empty() {
            match self.state {
                Chunk::Size { n, digits, ext } => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'\n' if digits == 0 => {
                            return Err(bad("a chunk size line without a size"))
                        }
                        b'\n' if n == 0 => Chunk::Trailer(0),
                        b'\n' => Chunk::Data(n),
                        _ if ext => Chunk::Size { n, digits, ext },
                        b';' => Chunk::Size {
                            n,
                            digits,
                            ext: true,
                        },
                        b'\r' | b' ' | b'\t' => Chunk::Size { n, digits, ext },
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or_else(|| bad("a chunk size that is not hexadecimal"))?;
                            if digits >= 15 {
                                return Err(bad("a chunk size too large"));
                            }
                            Chunk::Size {
                                n: n * 16 + d as u64,
                                digits: digits + 1,
                                ext,
                            }
                        }
                    };
                }
                Chunk::Data(left) => {
                    let k = (left.min(input.len() as u64)) as usize;
                    sink(&input[..k]).map_err(DecodeError::Sink)?;
                    input = &input[k..];
                    self.state = if left - k as u64 == 0 {
                        Chunk::DataEnd { cr: false }
                    } else {
                        Chunk::Data(left - k as u64)
                    };
                }
                Chunk::DataEnd { cr } => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'\r' if !cr => Chunk::DataEnd { cr: true },
                        b'\n' => Chunk::Size {
                            n: 0,
                            digits: 0,
                            ext: false,
                        },
                        _ => return Err(bad("chunk data longer than its size")),
                    };
                }
                Chunk::Trailer(len) => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'\n' if len == 0 => Chunk::Done,
                        b'\n' => Chunk::Trailer(0),
                        b'\r' => Chunk::Trailer(len),
                        _ => Chunk::Trailer(len + 1),
                    };
                }
                Chunk::Done => return Ok(true),
            }
        }
        Ok(self.state == Chunk::Done)
    }
}
