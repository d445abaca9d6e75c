//! WebSocket streams, against a loopback WebSocket server built on
//! tungstenite's server side (`WsServer`: port 0, a thread per connection, a
//! script per test, everything it sees reported over a channel), and against
//! a real peer (`websocketd`) when installed.

use crate::util::{wait_for, TempDir, Watcher};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------
// The loopback WebSocket server
// ---------------------------------------------------------------------------

/// A socket the server speaks WebSocket over (plain TCP, or TLS in tests/tls.rs).
pub trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

/// Turns an accepted TCP connection into the stream the WebSocket runs on.
pub type Wrap = Arc<dyn Fn(TcpStream) -> Option<Box<dyn Rw>> + Send + Sync>;

/// The handshake as the server received it.
#[derive(Clone, Debug)]
pub struct Hs {
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Hs {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server saw, each tagged with the connection number (0, 1, …).
#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    /// A handshake arrived (accepted or refused).
    Handshake(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Text(String),
    /// The client sent a Close frame.
    Close,
    /// The connection ended (script done, error or end of stream).
    Ended,
}

/// How the server answers a handshake: `Ok(Some(p))` accepts with
/// subprotocol `p`, `Ok(None)` accepts without one, `Err(status)` refuses.
pub type Accept = Arc<dyn Fn(&Hs) -> Result<Option<String>, u16> + Send + Sync>;

/// One accepted connection, for the test's script.
pub struct Peer {
    pub ws: WebSocket<Box<dyn Rw>>,
    /// 0 for the first connection, 1 for the next…
    pub n: usize,
    ev: Sender<(usize, Ev)>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    pub fn text(&mut self, s: &str) -> bool {
        self.ws.send(Message::text(s)).is_ok()
    }
    pub fn binary(&mut self, b: &[u8]) -> bool {
        self.ws.send(Message::binary(b.to_vec())).is_ok()
    }
    /// Read (answering pings, as tungstenite does) and report for `d`, or
    /// until the connection ends or the server is dropped. False if it ended.
    pub fn pump(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::SeqCst) {
            match self.ws.read() {
                Ok(Message::Ping(p)) => {
                    let _ = self.ws.flush();
                    self.report(Ev::Ping(p.to_vec()));
                }
                Ok(Message::Pong(p)) => self.report(Ev::Pong(p.to_vec())),
                Ok(Message::Text(t)) => self.report(Ev::Text(t.to_string())),
                Ok(Message::Close(_)) => {
                    self.report(Ev::Close);
                    let _ = self.ws.flush();
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }
    /// Pump until the connection ends or the server is dropped.
    pub fn hold(&mut self) {
        self.pump(Duration::from_secs(3600));
    }
    /// Stay connected but read nothing (so answer no ping) for `d`.
    pub fn silent(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pub fn report(&self, e: Ev) {
        let _ = self.ev.send((self.n, e));
    }
}

/// A WebSocket server on 127.0.0.1, port 0. Each connection runs `script`
/// on its own thread after the handshake. Stops when dropped.
pub struct WsServer {
    pub port: u16,
    pub ev: Receiver<(usize, Ev)>,
    /// Handshakes received so far (accepted or not), in order.
    pub handshakes: Arc<std::sync::Mutex<Vec<Hs>>>,
    stop: Arc<AtomicBool>,
}

impl WsServer {
    pub fn start(accept: Accept, script: impl Fn(&mut Peer) + Send + Sync + 'static) -> WsServer {
        Self::start_wrapped(
            Arc::new(|s| Some(Box::new(s) as Box<dyn Rw>)),
            accept,
            script,
        )
    }

    /// Accept everything, no subprotocol.
    pub fn simple(script: impl Fn(&mut Peer) + Send + Sync + 'static) -> WsServer {
        Self::start(Arc::new(|_| Ok(None)), script)
    }

    pub fn start_wrapped(
        wrap: Wrap,
        accept: Accept,
        script: impl Fn(&mut Peer) + Send + Sync + 'static,
    ) -> WsServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let handshakes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let (stop2, hs2) = (stop.clone(), handshakes.clone());
        std::thread::spawn(move || {
            let count = AtomicUsize::new(0);
            for s in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (tx, stop, hs, accept, script, wrap) = (
                    tx.clone(),
                    stop2.clone(),
                    hs2.clone(),
                    accept.clone(),
                    script.clone(),
                    wrap.clone(),
                );
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                    let _ = s.set_nodelay(true);
                    let Some(s) = wrap(s) else {
                        let _ = tx.send((n, Ev::Ended));
                        return;
                    };
                    // The error type is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let cb =
                        |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                            let h = Hs {
                                path: req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default(),
                                headers: req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                            };
                            hs.lock().unwrap().push(h.clone());
                            let _ = tx.send((n, Ev::Handshake(h.path.clone())));
                            match accept(&h) {
                                Ok(Some(p)) => {
                                    resp.headers_mut()
                                        .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
                                    Ok(resp)
                                }
                                Ok(None) => Ok(resp),
                                Err(status) => {
                                    let mut e = ErrorResponse::new(Some("refused".into()));
                                    *e.status_mut() =
                                        tungstenite::http::StatusCode::from_u16(status).unwrap();
                                    Err(e)
                                }
                            }
                        };
                    // The handshake may see read timeouts: retry it.
                    let mut hs_res = tungstenite::accept_hdr(s, cb);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let ws = loop {
                        match hs_res {
                            Ok(ws) => break Some(ws),
                            Err(tungstenite::HandshakeError::Interrupted(mid))
                                if Instant::now() < deadline =>
                            {
                                hs_res = mid.handshake()
                            }
                            Err(_) => break None,
                        }
                    };
                    if let Some(ws) = ws {
                        let mut p = Peer {
                            ws,
                            n,
                            ev: tx.clone(),
                            stop,
                        };
                        script(&mut p);
                    }
                    let _ = tx.send((n, Ev::Ended));
                });
            }
        });
        WsServer {
            port,
            ev: rx,
            handshakes,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Wait for an event matching `f` (events before it are dropped); panics after `timeout`.
    pub fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(usize, &Ev) -> bool,
    ) -> (usize, Ev) {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.ev.recv_timeout(left) {
                Ok((n, e)) if f(n, &e) => return (n, e),
                Ok(_) => {}
                Err(_) => {
                    panic!("timed out after {timeout:?} waiting for the server to see: {what}")
                }
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.handshakes.lock().unwrap().len()
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A config with one websocket stream (extra YAML keys in `extra`, e.g.
/// `"idle_timeout: 1, ping_interval: 0.3"`) and a rule printing every line
/// matching `pattern` on stdout (cooldown 0).
pub fn ws_config(dir: &TempDir, url: &str, extra: &str, pattern: &str) -> std::path::PathBuf {
    // Quick reconnects unless `extra` says otherwise.
    let mut keys = String::new();
    for (k, v) in [("reconnect_delay", "0.1"), ("max_reconnect_delay", "0.3")] {
        if !extra
            .split(',')
            .any(|kv| kv.trim().starts_with(&format!("{k}:")))
        {
            keys.push_str(&format!(", {k}: {v}"));
        }
    }
    if !extra.is_empty() {
        keys.push_str(&format!(", {extra}"));
    }
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n    - {{ name: ws, type: websocket, url: {url:?}{keys} }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: {pattern:?}\n    alert: console\n    cooldown: 0\n"
    );
    dir.write("cfg.yaml", &s)
}

pub const T: Duration = Duration::from_secs(5);

/// The alert printed for `line` by `ws_config`'s rule.
pub fn alert(line: &str) -> String {
    format!("ALERT [test] [r]: {line}")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn text_and_binary_messages_are_split_into_lines() {
    let srv = WsServer::simple(|p| {
        if p.n == 0 {
            p.text("ERR one\nok line\nERR two\n");
            // No newline at the end: still a line of its own.
            p.text("ERR partial");
            p.binary(b"ERR three\nERR four");
            // Invalid UTF-8 in a binary message: replaced, still matched.
            p.binary(b"ERR bad \xff\xfe utf8\n");
            p.text("");
            p.text("ERR last\r\n");
        }
        p.hold();
    });
    let dir = TempDir::new("ws-lines");
    let cfg = ws_config(&dir, &srv.url("/logs"), "", "ERR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    for l in [
        "ERR one",
        "ERR two",
        "ERR partial",
        "ERR three",
        "ERR four",
        "ERR bad \u{FFFD}\u{FFFD} utf8",
        "ERR last",
    ] {
        w.wait_out(&alert(l), T);
    }
    assert_eq!(w.count_out("ALERT"), 7, "{:?}", w.stdout());
    assert_eq!(w.count_out("ok line"), 0);
    // Lines are whole: the partial message did not glue onto the next one.
    assert_eq!(w.count_out("ERR partialERR"), 0);
    assert_eq!(srv.handshakes.lock().unwrap()[0].path, "/logs");
    assert!(w.stop().success());
}

#[test]
fn headers_and_subprotocols_are_sent_on_the_handshake() {
    let srv = WsServer::simple(|p| p.hold());
    let dir = TempDir::new("ws-headers");
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n\
         \x20   - {{ name: one, type: websocket, url: \"{u}/a\", headers: {{ X-Api-Key: k-12345, X-Other: two }} }}\n\
         \x20   - {{ name: two, type: websocket, url: \"{u}/b\", headers: {{ Authorization: \"Bearer tok-987\" }}, subprotocols: [chat, superchat] }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERR, alert: console }}\n",
        u = srv.url("").trim_end_matches('/')
    );
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    wait_for(T, "two handshakes", || srv.connections() >= 2);
    let hs = srv.handshakes.lock().unwrap().clone();
    let a = hs.iter().find(|h| h.path == "/a").expect("handshake on /a");
    assert_eq!(a.header("X-Api-Key"), Some("k-12345"));
    assert_eq!(a.header("X-Other"), Some("two"));
    assert!(
        a.header("User-Agent")
            .is_some_and(|u| u.starts_with("tinywatcher/")),
        "{a:?}"
    );
    assert_eq!(a.header("Sec-WebSocket-Protocol"), None);
    let b = hs.iter().find(|h| h.path == "/b").expect("handshake on /b");
    assert_eq!(b.header("Authorization"), Some("Bearer tok-987"));
    assert_eq!(b.header("Sec-WebSocket-Protocol"), Some("chat, superchat"));
    // Secrets are not logged.
    w.wait_err("connected to ws://127.0.0.1", T);
    assert!(w.stop().success());
    let err = w.stderr().join("\n");
    for secret in ["k-12345", "tok-987"] {
        assert!(!err.contains(secret), "{secret} in stderr: {err}");
    }
}

/// `auth: { basic: "user:pass" }` and `auth: { bearer: TOKEN }` become the
/// Authorization header; credentials in the URL are basic auth too.
#[test]
fn auth_is_sent_on_the_handshake() {
    let srv = WsServer::simple(|p| p.hold());
    let dir = TempDir::new("ws-auth");
    let u = srv.url("").trim_end_matches('/').to_string();
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n\
         \x20   - {{ name: basic, type: websocket, url: \"{u}/basic\", auth: {{ basic: \"user:pa ss\" }} }}\n\
         \x20   - {{ name: bearer, type: websocket, url: \"{u}/bearer\", auth: {{ bearer: tok-987 }} }}\n\
         \x20   - {{ name: inurl, type: websocket, url: \"ws://bob:s3cret@{hp}/inurl\" }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERR, alert: console }}\n",
        hp = u.trim_start_matches("ws://")
    );
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    wait_for(
        T,
        &format!("three handshakes; stderr: {:?}", w.stderr()),
        || srv.connections() >= 3,
    );
    let hs = srv.handshakes.lock().unwrap().clone();
    let get = |p: &str| {
        hs.iter()
            .find(|h| h.path == p)
            .unwrap_or_else(|| panic!("handshake on {p}"))
            .header("Authorization")
            .map(str::to_string)
    };
    assert_eq!(
        get("/basic").as_deref(),
        Some("Basic dXNlcjpwYSBzcw=="),
        "base64 of user:pa ss"
    );
    assert_eq!(get("/bearer").as_deref(), Some("Bearer tok-987"));
    assert_eq!(
        get("/inurl").as_deref(),
        Some("Basic Ym9iOnMzY3JldA=="),
        "base64 of bob:s3cret"
    );
    assert!(w.stop().success());
    let err = w.stderr().join("\n");
    for secret in ["tok-987", "dXNlcjpwYSBzcw", "s3cret", "pa ss"] {
        assert!(!err.contains(secret), "{secret} in stderr: {err}");
    }
}

/// A Kubernetes API server stand-in: pod logs over WebSocket, a bearer token
/// checked (401 otherwise), subprotocol `base64.binary.k8s.io` chosen when
/// offered, the log stream sent base64-encoded in messages that cut lines.
#[test]
fn kubernetes_pod_logs_over_websocket() {
    let accept: Accept = Arc::new(|h: &Hs| {
        if h.header("Authorization") != Some("Bearer k8s-token-1") {
            return Err(401);
        }
        let offered = h.header("Sec-WebSocket-Protocol").unwrap_or("");
        if offered
            .split(',')
            .any(|p| p.trim() == "base64.binary.k8s.io")
        {
            Ok(Some("base64.binary.k8s.io".into()))
        } else {
            Err(400)
        }
    });
    let srv = WsServer::start(accept, |p| {
        // "2026-01-01T00:00:00Z ERR pod one\n2026-01-01T00:00:01Z ok\n2026-01-01T00:00:02Z ERR pod two\n",
        // cut in the middle of a line, each piece base64 (as the API server does).
        let log = "2026-01-01T00:00:00Z ERR pod one\n2026-01-01T00:00:01Z ok\n2026-01-01T00:00:02Z ERR pod two\n";
        let (a, b) = log.split_at(45);
        p.text(&b64(a.as_bytes()));
        p.text(&b64(b.as_bytes()));
        p.hold();
    });
    let dir = TempDir::new("ws-k8s");
    let path = "/api/v1/namespaces/default/pods/p/log?follow=true&timestamps=true";
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n\
         \x20   - {{ name: k8s, type: websocket, url: \"{u}\", headers: {{ Authorization: \"Bearer ${{K8S_TOKEN}}\" }}, subprotocols: [base64.binary.k8s.io] }}\n\
         \x20   - {{ name: k8s-wrong, type: websocket, url: \"{u}\", headers: {{ Authorization: \"Bearer wrong\" }}, subprotocols: [base64.binary.k8s.io], reconnect_delay: 0.1, max_reconnect_delay: 30 }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERR, alert: console, cooldown: 0 }}\n",
        u = srv.url(path)
    );
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.env("K8S_TOKEN", "k8s-token-1");
    });
    w.wait_out(&alert("2026-01-01T00:00:00Z ERR pod one"), T);
    w.wait_out(&alert("2026-01-01T00:00:02Z ERR pod two"), T);
    assert_eq!(w.count_out("ALERT"), 2, "{:?}", w.stdout());
    assert!(srv
        .handshakes
        .lock()
        .unwrap()
        .iter()
        .all(|h| h.path == path));
    // The wrong token: said plainly, retried at the maximum delay (not hammered).
    w.wait_err("credentials were refused", T);
    let refused = srv
        .handshakes
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.header("Authorization") == Some("Bearer wrong"))
        .count();
    assert_eq!(
        refused, 1,
        "a refused stream waits max_reconnect_delay before retrying"
    );
    let err = w.stderr().join("\n");
    assert!(err.contains("k8s-wrong") && err.contains("401"), "{err}");
    assert!(w.stop().success());
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

#[test]
fn a_server_ping_is_answered() {
    let srv = WsServer::simple(|p| {
        let _ = p.ws.send(Message::Ping(b"are you there".to_vec().into()));
        p.hold();
    });
    let dir = TempDir::new("ws-ping");
    // Our own pings rarely, so the pong we wait for is the answer to the server's ping.
    let cfg = ws_config(&dir, &srv.url("/"), "ping_interval: 60", "ERR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    srv.wait(T, "Pong(\"are you there\")", |_, e| {
        *e == Ev::Pong(b"are you there".to_vec())
    });
    assert!(w.stop().success());
}

/// Our pings keep a quiet connection alive (the pongs count as traffic); a
/// peer that stops answering them is noticed after `idle_timeout`, and we
/// reconnect.
#[test]
fn a_peer_that_stops_answering_pings_is_dropped_after_idle_timeout() {
    let srv = WsServer::simple(|p| {
        if p.n == 0 {
            // 1.6 s of answering pings (more than idle_timeout), then silence.
            p.pump(Duration::from_millis(1600));
            p.silent(Duration::from_secs(10));
        } else {
            p.text("ERR after reconnect");
            p.hold();
        }
    });
    let dir = TempDir::new("ws-idle");
    let cfg = ws_config(
        &dir,
        &srv.url("/"),
        "idle_timeout: 1, ping_interval: 0.3",
        "ERR",
    );
    let start = Instant::now();
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    // Our pings arrive about every 0.3 s.
    srv.wait(T, "first ping", |n, e| n == 0 && matches!(e, Ev::Ping(_)));
    srv.wait(T, "second ping", |n, e| n == 0 && matches!(e, Ev::Ping(_)));
    srv.wait(T, "third ping", |n, e| n == 0 && matches!(e, Ev::Ping(_)));
    w.wait_out(&alert("ERR after reconnect"), Duration::from_secs(8));
    let took = start.elapsed();
    // Not before 1.6 s (answered pings kept it alive) + 1 s (idle).
    assert!(
        took >= Duration::from_millis(2400),
        "reconnected after {took:?}"
    );
    w.wait_err("no data for 1 s", T);
    assert_eq!(srv.connections(), 2);
    assert!(w.stop().success());
}

/// A frame claiming 1 GB, then a message just over max_message_bytes: each
/// drops the connection (nothing buffered), the stream reconnects, and later
/// small messages are matched.
#[test]
fn an_oversized_message_drops_the_connection_and_we_reconnect() {
    let srv = WsServer::simple(|p| match p.n {
        0 => {
            // A binary frame header claiming 1 GiB, and a little of it.
            let mut hdr = vec![0x82u8, 127];
            hdr.extend_from_slice(&(1u64 << 30).to_be_bytes());
            hdr.extend_from_slice(b"ERR never\n");
            let _ = p.ws.get_mut().write_all(&hdr);
            let _ = p.ws.get_mut().flush();
            p.hold();
        }
        1 => {
            // One byte over the limit.
            let big = format!("ERR big {}\n", "x".repeat(1024));
            p.text(&big[..1025]);
            p.hold();
        }
        _ => {
            p.text("ERR small after");
            p.hold();
        }
    });
    let dir = TempDir::new("ws-big");
    let cfg = ws_config(&dir, &srv.url("/"), "max_message_bytes: 1024", "ERR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_out(&alert("ERR small after"), T);
    assert_eq!(w.count_out("ALERT"), 1, "{:?}", w.stdout());
    assert_eq!(srv.connections(), 3);
    let err = w.stderr().join("\n");
    assert!(
        err.contains("1073741824 bytes is over max_message_bytes (1024)"),
        "{err}"
    );
    assert!(
        err.contains("1025 bytes is over max_message_bytes (1024)"),
        "{err}"
    );
    assert!(w.stop().success());
}

#[test]
fn shutdown_while_blocked_in_a_read_sends_close() {
    let srv = WsServer::simple(|p| p.hold());
    let dir = TempDir::new("ws-shutdown");
    let cfg = ws_config(
        &dir,
        &srv.url("/"),
        "ping_interval: 60, idle_timeout: 0",
        "ERR",
    );
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    srv.wait(T, "a handshake", |_, e| matches!(e, Ev::Handshake(_)));
    w.wait_err("connected to ws://", T);
    let t = Instant::now();
    w.signal(15);
    let st = w.wait(Duration::from_secs(5));
    assert!(st.success(), "{st:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    srv.wait(Duration::from_secs(2), "a Close frame", |_, e| {
        *e == Ev::Close
    });
}

#[test]
fn a_handshake_refused_or_wrong_is_said_plainly() {
    // Not a WebSocket endpoint at all: an HTTP server answering 404.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let dir = TempDir::new("ws-404");
    let cfg = ws_config(&dir, &format!("ws://127.0.0.1:{port}/nope"), "", "ERR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("WebSocket handshake answered HTTP 404 Not Found", T);
    assert!(w.stop().success());
}

/// A real WebSocket server: websocketd runs a script and sends each line of
/// its output as a message.
#[test]
fn websocketd_serves_a_scripts_lines() {
    let Some(wsd) = crate::util::peer("websocketd") else {
        return;
    };
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(wsd)
        .args([
            &format!("--port={port}"),
            "--address=127.0.0.1",
            "sh",
            "-c",
            "printf 'ERR from websocketd 1\\nok\\nERR from websocketd 2\\n'; sleep 30",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    wait_for(T, "websocketd listening", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let dir = TempDir::new("ws-websocketd");
    let cfg = ws_config(&dir, &format!("ws://127.0.0.1:{port}/"), "", "ERR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_out(&alert("ERR from websocketd 1"), T);
    w.wait_out(&alert("ERR from websocketd 2"), T);
    assert_eq!(w.count_out("ALERT"), 2);
    assert!(w.stop().success());
}
