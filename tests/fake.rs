//! Loopback fakes for the integration tests: real servers on 127.0.0.1 port 0,
//! started by a test, that report what they see over channels (so a test waits
//! for a condition with a deadline, never sleeps and hopes). Each fake stops
//! when dropped.
//!
//! - `Recorder`: a minimal HTTP/1.1 server standing in for a webhook (or any
//!   HTTP destination). It records every request (method, path, headers, body,
//!   arrival time) and answers each one as scripted (`Reply`): a status (with
//!   `Retry-After` and a body), a hang, or a closed connection.
//! - `refused_url()`: a URL on which nothing listens (connection refused).
//!
//! Add new fakes below, each in its own section with a doc comment.
#![allow(dead_code)]

use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// HTTP recorder (webhooks)
// ---------------------------------------------------------------------------

/// How the recorder answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with this status, an optional `Retry-After: SECONDS` and a body.
    Status {
        status: u16,
        retry_after: Option<u64>,
        body: String,
    },
    /// Read the request and never answer (until the client gives up or the
    /// recorder is dropped).
    Hang,
    /// Read the request and close the connection without answering.
    Close,
}

impl Reply {
    /// A plain status with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply::Status {
            status,
            retry_after: None,
            body: String::new(),
        }
    }
    /// A status with `Retry-After: secs`.
    pub fn retry_after(status: u16, secs: u64) -> Reply {
        Reply::Status {
            status,
            retry_after: Some(secs),
            body: String::new(),
        }
    }
    /// A status with a body.
    pub fn body(status: u16, body: &str) -> Reply {
        Reply::Status {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }
}

/// One request as the recorder received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// In the order received, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was complete.
    pub at: Instant,
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body_str()))
    }
}

/// A scriptable HTTP/1.1 server on 127.0.0.1 that records every request.
///
/// Requests are answered in arrival order from the script; once it is used
/// up, every request gets the default reply (`200` unless `set_default`).
/// Keep-alive is supported (requests on one connection are answered in turn);
/// `Connection: close` from the client closes after the answer. Request
/// bodies need a `Content-Length` (chunked uploads are not supported).
pub struct Recorder {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub port: u16,
    rx: Receiver<Request>,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

struct Script {
    queue: VecDeque<Reply>,
    default: Reply,
}

impl Recorder {
    /// Start a recorder with this script.
    pub fn start(script: Vec<Reply>) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = unbounded();
        let script = Arc::new(Mutex::new(Script {
            queue: script.into(),
            default: Reply::status(200),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (script2, stop2) = (script.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fake:recorder".into())
            .spawn(move || {
                for conn in l.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (tx, script, stop) = (tx.clone(), script2.clone(), stop2.clone());
                    std::thread::spawn(move || serve(conn, tx, script, stop));
                }
            })
            .unwrap();
        Recorder {
            base: format!("http://127.0.0.1:{port}"),
            port,
            rx,
            script,
            stop,
        }
    }

    /// `base` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Queue more replies after the current script.
    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().queue.push_back(reply);
    }

    /// The reply once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.script.lock().unwrap().default = reply;
    }

    /// The next request, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Request> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next request; panics after `timeout` with `what`.
    pub fn expect(&self, timeout: Duration, what: &str) -> Request {
        self.next(timeout)
            .unwrap_or_else(|| panic!("no request to the recorder within {timeout:?}: {what}"))
    }

    /// Requests already received and not yet taken, without waiting.
    pub fn drain(&self) -> Vec<Request> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One connection: read requests, record them, answer as scripted.
fn serve(conn: TcpStream, tx: Sender<Request>, script: Arc<Mutex<Script>>, stop: Arc<AtomicBool>) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let Some(req) = read_request(&mut r, &stop) else {
            return;
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = {
            let mut s = script.lock().unwrap();
            s.queue.pop_front().unwrap_or_else(|| s.default.clone())
        };
        let _ = tx.send(req);
        match reply {
            Reply::Status {
                status,
                retry_after,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
                    reason(status),
                    body.len()
                );
                if let Some(s) = retry_after {
                    head.push_str(&format!("Retry-After: {s}\r\n"));
                }
                if close {
                    head.push_str("Connection: close\r\n");
                }
                head.push_str("\r\n");
                if w.write_all(head.as_bytes())
                    .and_then(|_| w.write_all(body.as_bytes()))
                    .and_then(|_| w.flush())
                    .is_err()
                    || close
                {
                    return;
                }
            }
            Reply::Hang => {
                // Hold the connection until the client closes it or we stop.
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::SeqCst) {
                    match r.read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
                return;
            }
            Reply::Close => {
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Read one request (line, headers, Content-Length body); `None` at the end
/// of the connection, on a broken request, or when the recorder stops.
fn read_request(r: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Request> {
    let line = read_line(r, stop)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let h = read_line(r, stop)?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut body[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !stop.load(Ordering::SeqCst) => {}
            Err(_) => return None,
        }
    }
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// One CRLF- or LF-terminated line, without its end; retries read timeouts
/// (which only exist so that a stopped recorder's threads end).
fn read_line(r: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<String> {
    let mut buf = Vec::new();
    loop {
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) if buf.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// An `http://127.0.0.1:PORT` URL on which nothing listens: connecting to it
/// is refused at once. (The port was free a moment ago; nothing else in the
/// tests binds a fixed port, so it stays free.)
pub fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------
// Stream servers: TCP lines, HTTP streaming bodies, Server-Sent Events
// ---------------------------------------------------------------------------

/// A TCP server on 127.0.0.1 that hands every connection to `handler`
/// (with the connection's number, from 0) on its own thread, and counts and
/// reports connections. The handler writes what the test wants; the server's
/// `stop` flag (`TcpServer::stopping`) tells long-running handlers to end.
pub struct TcpServer {
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    conns: Arc<std::sync::atomic::AtomicUsize>,
    rx: Receiver<(usize, Instant)>,
    stop: Arc<AtomicBool>,
}

impl TcpServer {
    pub fn start(
        handler: impl Fn(TcpStream, usize, &AtomicBool) + Send + Sync + 'static,
    ) -> TcpServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = unbounded();
        let handler = Arc::new(handler);
        let (conns2, stop2) = (conns.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fake:tcp".into())
            .spawn(move || {
                for c in l.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(c) = c else { continue };
                    let n = conns2.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send((n, Instant::now()));
                    let (h, stop) = (handler.clone(), stop2.clone());
                    std::thread::spawn(move || h(c, n, &stop));
                }
            })
            .unwrap();
        TcpServer {
            port,
            addr: format!("127.0.0.1:{port}"),
            conns,
            rx,
            stop,
        }
    }

    /// A server that writes `text` to each connection, then holds it open
    /// until the client closes it (or the server is dropped).
    pub fn lines(text: &str) -> TcpServer {
        let text = text.as_bytes().to_vec();
        TcpServer::start(move |mut c, _, stop| {
            if c.write_all(&text).is_ok() {
                hold(&mut c, stop);
            }
        })
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Wait for the `n`-th connection (counting from 1); panics after `timeout`.
    pub fn wait_connections(&self, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.connections() < n {
            if Instant::now() > end {
                panic!(
                    "expected {n} connection(s) within {timeout:?}, got {}",
                    self.connections()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// When each connection arrived (taken from the queue).
    pub fn arrivals(&self) -> Vec<(usize, Instant)> {
        self.rx.try_iter().collect()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Keep a connection open, reading and discarding, until the peer closes it
/// or `stop` is set. Returns true when the peer closed it.
pub fn hold(c: &mut TcpStream, stop: &AtomicBool) -> bool {
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// How an HTTP stream server frames a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    ContentLength,
    /// No length: the body ends when the server closes the connection.
    UntilClose,
}

/// One answer of `HttpStream`.
#[derive(Clone, Debug)]
pub struct StreamReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Written one after the other, each flushed (a chunk each when chunked),
    /// with `gap` between them.
    pub parts: Vec<Vec<u8>>,
    pub framing: Framing,
    pub gap: Duration,
    /// After the parts, keep the connection open (the stream goes on, silently)
    /// instead of ending the body.
    pub hold: bool,
    /// Read the request and never answer.
    pub hang: bool,
}

impl StreamReply {
    /// 200 with these body parts.
    pub fn body(framing: Framing, parts: &[&str], hold: bool) -> StreamReply {
        StreamReply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            parts: parts.iter().map(|p| p.as_bytes().to_vec()).collect(),
            framing,
            gap: Duration::from_millis(20),
            hold,
            hang: false,
        }
    }
    /// 200 `text/event-stream`, chunked, with these parts.
    pub fn sse(parts: &[&str], hold: bool) -> StreamReply {
        let mut r = StreamReply::body(Framing::Chunked, parts, hold);
        r.headers = vec![("Content-Type".into(), "text/event-stream".into())];
        r
    }
    /// A status with a short body, connection closed after it.
    pub fn status(status: u16) -> StreamReply {
        let mut r = StreamReply::body(Framing::ContentLength, &["no\n"], false);
        r.status = status;
        r
    }
    /// A redirect to `location`.
    pub fn redirect(location: &str) -> StreamReply {
        let mut r = StreamReply::status(302);
        r.headers.push(("Location".into(), location.into()));
        r
    }
    /// Never answer.
    pub fn hang() -> StreamReply {
        let mut r = StreamReply::status(200);
        r.hang = true;
        r
    }
}

/// An HTTP/1.1 server for streaming GETs: every request is recorded (with its
/// headers: `Authorization`, `Last-Event-ID`…) and answered by `script`,
/// given the request and its number (from 0). One request per connection.
pub struct HttpStream {
    pub base: String,
    pub port: u16,
    rx: Receiver<Request>,
    count: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpStream {
    pub fn start(
        script: impl Fn(&Request, usize) -> StreamReply + Send + Sync + 'static,
    ) -> HttpStream {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = unbounded();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (count2, stop2) = (count.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fake:http-stream".into())
            .spawn(move || {
                for c in l.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(c) = c else { continue };
                    let (tx, script, stop, count) =
                        (tx.clone(), script.clone(), stop2.clone(), count2.clone());
                    std::thread::spawn(move || {
                        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                        let Ok(mut w) = c.try_clone() else { return };
                        let mut r = BufReader::new(c);
                        let Some(req) = read_request(&mut r, &stop) else {
                            return;
                        };
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let reply = script(&req, n);
                        let _ = tx.send(req);
                        answer_stream(&mut w, r.get_mut(), reply, &stop);
                    });
                }
            })
            .unwrap();
        HttpStream {
            base: format!("http://127.0.0.1:{port}"),
            port,
            rx,
            count,
            stop,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    /// The next request, waiting up to `timeout`; panics with `what` otherwise.
    pub fn expect(&self, timeout: Duration, what: &str) -> Request {
        self.rx
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("no request within {timeout:?}: {what}"))
    }
    /// Requests received and not yet taken.
    pub fn drain(&self) -> Vec<Request> {
        self.rx.try_iter().collect()
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer_stream(w: &mut TcpStream, r: &mut TcpStream, reply: StreamReply, stop: &AtomicBool) {
    if reply.hang {
        hold(r, stop);
        return;
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match reply.framing {
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::ContentLength => {
            let len: usize = reply.parts.iter().map(|p| p.len()).sum();
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        Framing::UntilClose => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    for p in &reply.parts {
        std::thread::sleep(reply.gap);
        let ok = match reply.framing {
            Framing::Chunked => w
                .write_all(format!("{:x}\r\n", p.len()).as_bytes())
                .and_then(|_| w.write_all(p))
                .and_then(|_| w.write_all(b"\r\n")),
            _ => w.write_all(p),
        };
        if ok.and_then(|_| w.flush()).is_err() {
            return;
        }
    }
    if reply.hold {
        hold(r, stop);
        return;
    }
    if reply.framing == Framing::Chunked {
        let _ = w.write_all(b"0\r\n\r\n");
    }
    let _ = w.flush();
    let _ = w.shutdown(Shutdown::Both);
}
