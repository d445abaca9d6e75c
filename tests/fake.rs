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
    Status { status: u16, retry_after: Option<u64>, body: String },
    /// Read the request and never answer (until the client gives up or the
    /// recorder is dropped).
    Hang,
    /// Read the request and close the connection without answering.
    Close,
}

impl Reply {
    /// A plain status with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply::Status { status, retry_after: None, body: String::new() }
    }
    /// A status with `Retry-After: secs`.
    pub fn retry_after(status: u16, secs: u64) -> Reply {
        Reply::Status { status, retry_after: Some(secs), body: String::new() }
    }
    /// A status with a body.
    pub fn body(status: u16, body: &str) -> Reply {
        Reply::Status { status, retry_after: None, body: body.to_string() }
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
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body_str()))
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
        let script = Arc::new(Mutex::new(Script { queue: script.into(), default: Reply::status(200) }));
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
        Recorder { base: format!("http://127.0.0.1:{port}"), port, rx, script, stop }
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
        self.next(timeout).unwrap_or_else(|| panic!("no request to the recorder within {timeout:?}: {what}"))
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
        let Some(req) = read_request(&mut r, &stop) else { return };
        let close = req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = {
            let mut s = script.lock().unwrap();
            s.queue.pop_front().unwrap_or_else(|| s.default.clone())
        };
        let _ = tx.send(req);
        match reply {
            Reply::Status { status, retry_after, body } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n", reason(status), body.len());
                if let Some(s) = retry_after {
                    head.push_str(&format!("Retry-After: {s}\r\n"));
                }
                if close {
                    head.push_str("Connection: close\r\n");
                }
                head.push_str("\r\n");
                if w.write_all(head.as_bytes()).and_then(|_| w.write_all(body.as_bytes())).and_then(|_| w.flush()).is_err() || close {
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
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
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
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut body[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) && !stop.load(Ordering::SeqCst) => {}
            Err(_) => return None,
        }
    }
    Some(Request { method, path, headers, body, at: Instant::now() })
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
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
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
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}
