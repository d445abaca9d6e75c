//! TLS for streams (wss://, tls://): a test CA and a server certificate for
//! 127.0.0.1 and localhost live in tests/tls/ (see its README). Servers are
//! loopback fakes wrapped in native-tls: trusted via `tls.ca_file`, not
//! trusted without it (a clear error naming the host, retried, no crash), and
//! `tls.insecure: true` (connects, with a warning).

use crate::util::{TempDir, Watcher};
use crate::websocket::{alert, Ev, Rw, WsServer, T};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn acceptor() -> Arc<native_tls::TlsAcceptor> {
    let cert = std::fs::read(tls_dir().join("server.pem")).unwrap();
    let key = std::fs::read(tls_dir().join("server.key")).unwrap();
    let id =
        native_tls::Identity::from_pkcs8(&cert, &key).expect("tests/tls/server.pem + server.key");
    Arc::new(native_tls::TlsAcceptor::new(id).unwrap())
}

/// Accept TLS on `s` (blocking, 5 s at most), then give the socket back its
/// short read timeout. `None` when the client gave up (e.g. did not trust us).
fn tls_accept(
    acc: &native_tls::TlsAcceptor,
    s: TcpStream,
) -> Option<native_tls::TlsStream<TcpStream>> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let t = acc.accept(s).ok()?;
    let _ = t
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)));
    Some(t)
}

/// A wss:// server: the WebSocket fake over native-tls.
fn wss_server(script: impl Fn(&mut crate::websocket::Peer) + Send + Sync + 'static) -> WsServer {
    let acc = acceptor();
    WsServer::start_wrapped(
        Arc::new(move |s| tls_accept(&acc, s).map(|t| Box::new(t) as Box<dyn Rw>)),
        Arc::new(|_| Ok(None)),
        script,
    )
}

fn wss_config(dir: &TempDir, port: u16, tls: &str) -> PathBuf {
    crate::websocket::ws_config(dir, &format!("wss://127.0.0.1:{port}/logs"), tls, "ERR")
}

fn ca_file() -> String {
    format!(
        "tls: {{ ca_file: {:?} }}",
        tls_dir().join("ca.pem").to_str().unwrap()
    )
}

#[test]
fn wss_with_a_private_ca_in_ca_file() {
    let srv = wss_server(|p| {
        p.text("ERR over wss\nok\n");
        p.hold();
    });
    let dir = TempDir::new("wss-ca");
    let cfg = wss_config(&dir, srv.port, &ca_file());
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_out(&alert("ERR over wss"), T);
    w.wait_err("connected to wss://127.0.0.1", T);
    assert_eq!(srv.handshakes.lock().unwrap()[0].path, "/logs");
    assert!(w.stop().success());
}

#[test]
fn wss_with_an_untrusted_certificate_is_refused_plainly() {
    let srv = wss_server(|p| {
        p.text("ERR must not arrive");
        p.hold();
    });
    let dir = TempDir::new("wss-untrusted");
    // No ca_file: the system roots do not know our test CA.
    let cfg = crate::websocket::ws_config(
        &dir,
        &format!("wss://127.0.0.1:{}/", srv.port),
        "max_reconnect_delay: 30",
        "ERR",
    );
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("TLS certificate of 127.0.0.1 did not verify", T);
    // Still running (no crash), retried at the maximum delay, nothing matched.
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "tinywatcher exited: {:?}",
        w.stderr()
    );
    assert!(srv.connections() == 0 && w.count_out("ALERT") == 0);
    let err = w.stderr().join("\n");
    assert!(!err.contains("ended the stream"), "{err}");
    assert!(w.stop().success());
}

#[test]
fn wss_insecure_connects_with_a_warning() {
    let srv = wss_server(|p| {
        p.text("ERR insecure but read");
        p.hold();
    });
    let dir = TempDir::new("wss-insecure");
    let cfg = wss_config(&dir, srv.port, "tls: { insecure: true }");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_out(&alert("ERR insecure but read"), T);
    w.wait_err("NOT verified", T);
    assert!(w.stop().success());
    let warnings = w
        .stderr()
        .iter()
        .filter(|l| l.contains("NOT verified"))
        .count();
    assert_eq!(warnings, 1, "{:?}", w.stderr());
}

#[test]
fn wss_shutdown_sends_close_through_tls() {
    let srv = wss_server(|p| p.hold());
    let dir = TempDir::new("wss-close");
    let cfg = wss_config(&dir, srv.port, &format!("{}, ping_interval: 60", ca_file()));
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("connected to wss://", T);
    assert!(w.stop().success());
    srv.wait(Duration::from_secs(2), "a Close frame", |_, e| {
        *e == Ev::Close
    });
}

/// `tls://host:port` tcp streams use the same TLS setup.
#[test]
fn tls_tcp_stream_with_ca_file() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let acc = acceptor();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let acc = acc.clone();
            std::thread::spawn(move || {
                if let Some(mut t) = tls_accept(&acc, s) {
                    let _ = t.write_all(b"ERR over tls tcp\nok\n");
                    let _ = t.flush();
                    std::thread::sleep(Duration::from_secs(10));
                }
            });
        }
    });
    let dir = TempDir::new("tls-tcp");
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n    - {{ name: t, type: tcp, url: \"tls://127.0.0.1:{port}\", {} }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERR, alert: console, cooldown: 0 }}\n",
        ca_file()
    );
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_out(&alert("ERR over tls tcp"), T);
    assert!(w.stop().success());
}

/// A server that accepts and never speaks TLS: the handshake waits in short
/// slices, so SIGTERM ends a tls:// and an https:// stream at once even with
/// a 30 s connect_timeout.
#[test]
fn sigterm_during_a_tls_handshake_with_a_silent_server_exits_promptly() {
    let srv = crate::fake::TcpServer::start(|mut c, _, stop| {
        crate::fake::hold(&mut c, stop);
    });
    let dir = TempDir::new("tls-silent");
    let s = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n\
         \x20   - {{ name: t, type: tcp, url: \"tls://{a}\", connect_timeout: 30 }}\n\
         \x20   - {{ name: h, type: http, url: \"https://{a}/logs\", connect_timeout: 30 }}\n\
         alerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERR, alert: console }}\n",
        a = srv.addr
    );
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    srv.wait_connections(2, T);
    // Both are in their handshake now.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let st = w.stop();
    let took = t0.elapsed();
    assert!(st.success(), "{st:?}");
    assert!(
        took < Duration::from_millis(1500),
        "exit took {took:?}; stderr: {:?}",
        w.stderr()
    );
    // Each stream thread ended (rather than being left behind at exit).
    for name in ["t", "h"] {
        let needle = format!("stream {name}: stopped after");
        assert!(
            w.stderr().iter().any(|l| l.contains(&needle)),
            "no {needle:?}: {:?}",
            w.stderr()
        );
    }
}
