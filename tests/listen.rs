//! Listener inputs (udp, tcp): devices push lines to us. Syslog prefixes are
//! kept in the line; the tcp listener limits its connections and closes
//! silent ones; a bind error is named and retried while the watcher stays up.

use crate::util::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &TempDir, listeners: &[String], pattern: &str) -> PathBuf {
    let mut s =
        String::from("identity: { name: test }\nmax_line_bytes: 1024\ninputs:\n  listen:\n");
    for l in listeners {
        s.push_str(&format!("    - {l}\n"));
    }
    s.push_str(&format!(
        "alerts:\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: {pattern:?}\n    alert: console\n    cooldown: 0\n    sources: {{ listeners: [dev] }}\n"
    ));
    dir.write("cfg.yaml", &s)
}

#[test]
fn udp_datagrams_are_lines_with_syslog_prefixes_kept() {
    let port = free_udp_port();
    let dir = TempDir::new("listen-udp");
    let cfg = config(
        &dir,
        &[format!(
            "{{ name: dev, type: udp, address: \"127.0.0.1:{port}\" }}"
        )],
        "ERROR|temp=",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_err(&format!("listening on udp 127.0.0.1:{port}"), T);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", port);
    s.send_to(
        b"<34>Oct 11 22:14:15 mymachine su: ERROR 'su root' failed",
        to,
    )
    .unwrap();
    s.send_to(
        b"<165>1 2003-10-11T22:14:15.003Z host app - ID47 - ERROR five424\n",
        to,
    )
    .unwrap();
    s.send_to(b"sensor temp=41\nsensor temp=42\nno match", to)
        .unwrap();
    s.send_to(b"ERROR bad \xff utf8", to).unwrap();
    s.send_to(&vec![b'E'; 5000], to).unwrap();
    s.send_to(b"ERROR after a long one", to).unwrap();
    w.wait_alert("ERROR after a long one", T);
    assert_eq!(
        w.count_alert("<34>Oct 11 22:14:15 mymachine su: ERROR 'su root' failed"),
        1
    );
    assert_eq!(
        w.count_alert("<165>1 2003-10-11T22:14:15.003Z host app - ID47 - ERROR five424"),
        1
    );
    assert_eq!(w.count_alert("sensor temp=41"), 1);
    assert_eq!(w.count_alert("sensor temp=42"), 1);
    assert_eq!(w.count_alert("ERROR bad \u{FFFD} utf8"), 1);
    assert!(w.stdout().iter().all(|l| l.len() < 1200));
    assert!(w.stop().success());
}

#[test]
fn tcp_listener_lines_connection_limit_and_idle_timeout() {
    let port = free_port();
    let dir = TempDir::new("listen-tcp");
    let cfg = config(&dir, &[format!("{{ name: dev, type: tcp, address: \"127.0.0.1:{port}\", max_connections: 2, idle_timeout: 1 }}")], "ERROR");
    let mut w = Watcher::watch(&cfg);
    w.wait_err(&format!("listening on tcp 127.0.0.1:{port}"), T);
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    a.write_all(b"<13>Jan  1 00:00:00 h ERROR from a\nERROR split ")
        .unwrap();
    b.write_all(b"ERROR from b\n").unwrap();
    w.wait_alert("ERROR from a", T);
    w.wait_alert("ERROR from b", T);
    // A third connection is over the limit: accepted and closed at once.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the connection over the limit is closed");
    w.wait_err("refused: already 2 connection(s) (max_connections)", T);
    // The partial line of a closes with its connection.
    a.write_all(b"line\n").unwrap();
    w.wait_alert("ERROR split line", T);
    drop(a);
    // Now there is room again.
    let t0 = Instant::now();
    let mut d = loop {
        let mut d = TcpStream::connect(("127.0.0.1", port)).unwrap();
        d.write_all(b"ERROR from d\n").unwrap();
        d.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match d.read(&mut buf) {
            // Still open after 300 ms: accepted.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break d
            }
            // Closed (or reset, as it carried unread data): still over the limit.
            _ => {
                assert!(t0.elapsed() < T, "no room after a connection closed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    w.wait_alert("ERROR from d", T);
    // b stays silent: closed after idle_timeout (1 s).
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    assert_eq!(b.read(&mut buf).unwrap_or(0), 0);
    assert!(t0.elapsed() < Duration::from_secs(4));
    let _ = d.write_all(b"x\n");
    assert!(w.stop().success());
    // Counted as such in the stats logged at exit.
    let err = w.stderr();
    let stats = err
        .iter()
        .rev()
        .find(|l| l.contains("stats: "))
        .unwrap_or_else(|| panic!("no stats line: {err:?}"));
    assert!(
        crate::streams::counter(stats, "listen_refused") >= 1,
        "{stats}"
    );
}

#[test]
fn bind_error_is_named_and_retried_while_the_watcher_stays_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new("listen-busy");
    let cfg = config(
        &dir,
        &[format!(
            "{{ name: dev, type: tcp, address: \"127.0.0.1:{port}\" }}"
        )],
        "ERROR",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_err(
        &format!("listen dev: cannot listen on tcp 127.0.0.1:{port}: Address already in use"),
        T,
    );
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the watcher stays up"
    );
    drop(taken);
    w.wait_err(&format!("listening on tcp 127.0.0.1:{port}"), T);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"ERROR at last\n").unwrap();
    w.wait_alert("ERROR at last", T);
    let named = w
        .stderr()
        .iter()
        .filter(|l| l.contains("cannot listen"))
        .count();
    assert_eq!(
        named,
        1,
        "logged once, not once per retry: {:?}",
        w.stderr()
    );
    assert!(w.stop().success());
}

/// A real syslog client: util-linux `logger --server 127.0.0.1 --port N --udp/--tcp`.
#[test]
fn real_peer_logger_udp_and_tcp() {
    if peer("logger").is_none() {
        return;
    }
    let (up, tp) = (free_udp_port(), free_port());
    let dir = TempDir::new("logger");
    let cfg = config(
        &dir,
        &[
            format!("{{ name: dev, type: udp, address: \"127.0.0.1:{up}\" }}"),
            format!("{{ name: devtcp, type: tcp, address: \"127.0.0.1:{tp}\" }}"),
        ],
        "ERROR",
    );
    // The rule targets `dev`; let it see both listeners.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("listeners: [dev]", "listeners: [dev, devtcp]");
    std::fs::write(&cfg, text).unwrap();
    let w = Watcher::watch(&cfg);
    w.wait_err(&format!("listening on udp 127.0.0.1:{up}"), T);
    w.wait_err(&format!("listening on tcp 127.0.0.1:{tp}"), T);
    for (flag, port, msg) in [
        ("--udp", up, "ERROR via udp"),
        ("--tcp", tp, "ERROR via tcp"),
    ] {
        let st = std::process::Command::new("logger")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                flag,
                "-t",
                "tw-test",
                "-p",
                "user.err",
                msg,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "logger {flag} failed");
        wait_for(
            T,
            &format!("{msg} alerted; stdout {:?}", w.stdout()),
            || {
                w.stdout()
                    .iter()
                    .any(|l| l.contains("tw-test") && l.ends_with(msg))
            },
        );
    }
    // The syslog header is kept: <PRI> first.
    assert!(
        w.stdout().iter().any(|l| l.contains("]: <11>")),
        "{:?}",
        w.stdout()
    );
}
