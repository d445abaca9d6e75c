//! Network stream inputs (tcp, http, sse) against loopback servers and real
//! peers: what the matcher received is read back from stdout alerts
//! (cooldown 0), failures from the log on stderr.

use crate::fake::{hold, Framing, HttpStream, StreamReply, TcpServer};
use crate::util::*;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// A config with these stream entries (YAML flow maps, one a line) and one
/// rule printing every match of `pattern` on stdout.
fn config(dir: &TempDir, streams: &[String], pattern: &str, extra: &str) -> PathBuf {
    let mut s = format!("identity: {{ name: test }}\n{extra}inputs:\n  streams:\n");
    for e in streams {
        s.push_str(&format!("    - {e}\n"));
    }
    s.push_str(&format!("alerts:\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: {pattern:?}\n    alert: console\n    cooldown: 0\n"));
    dir.write("cfg.yaml", &s)
}

/// A stream entry with small delays.
fn stream(name: &str, kind: &str, url: &str, more: &str) -> String {
    let mut m = String::new();
    if !more.contains("reconnect_delay:") {
        m.push_str(", reconnect_delay: 0.1");
    }
    if !more.contains("max_reconnect_delay:") {
        m.push_str(", max_reconnect_delay: 1");
    }
    if !more.is_empty() {
        m.push_str(&format!(", {more}"));
    }
    format!("{{ name: {name}, type: {kind}, url: {url:?}{m} }}")
}

// ---------------------------------------------------------------------------
// tcp
// ---------------------------------------------------------------------------

#[test]
fn tcp_lines_partial_long_and_invalid_utf8() {
    let long = "x".repeat(200_000);
    let srv = TcpServer::start(move |mut c, _, stop| {
        // A line split across writes, an endless line, invalid UTF-8, CRLF.
        let _ = c.write_all(b"ERROR one\nERR");
        std::thread::sleep(Duration::from_millis(100));
        let _ = c.write_all(b"OR two\nERROR long ");
        let _ = c.write_all(long.as_bytes());
        let _ = c.write_all(b"\nERROR bad \xff\xfe utf8\r\nERROR after\n");
        hold(&mut c, stop);
    });
    let dir = TempDir::new("tcp-lines");
    let cfg = config(
        &dir,
        &[stream("agg", "tcp", &format!("tcp://{}", srv.addr), "")],
        "ERROR",
        "max_line_bytes: 1024\n",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_alert("ERROR after", T);
    assert_eq!(w.count_alert("ERROR one"), 1);
    assert_eq!(w.count_alert("ERROR two"), 1);
    assert_eq!(
        w.count_alert("ERROR bad \u{FFFD}\u{FFFD} utf8"),
        1,
        "{:?}",
        w.stdout()
    );
    // The long line was cut at 1024 bytes and still matched, once.
    let cut = format!("ERROR long {}", "x".repeat(1024 - 11));
    assert_eq!(
        w.count_alert(&cut),
        1,
        "{:?}",
        w.stdout().iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(w.stdout().iter().all(|l| l.len() < 1200));
    assert!(w
        .stdout()
        .iter()
        .any(|l| l.contains("[stream:agg]") || l.contains("ALERT")));
    assert_eq!(srv.connections(), 1);
    w.wait_err("stream agg: connected to 127.0.0.1", T);
    assert!(w.stop().success());
}

#[test]
fn tcp_plain_host_port_and_partial_line_at_close() {
    let srv = TcpServer::start(|mut c, n, stop| {
        if n == 0 {
            let _ = c.write_all(b"ERROR first\nERROR last without newline");
        } else {
            hold(&mut c, stop);
        }
    });
    let dir = TempDir::new("tcp-plain");
    let cfg = config(&dir, &[stream("p", "tcp", &srv.addr, "")], "ERROR", "");
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR last without newline", T);
    assert_eq!(w.count_alert("ERROR first"), 1);
    srv.wait_connections(2, T);
}

#[test]
fn tcp_silent_server_hits_the_idle_timeout_and_reconnects() {
    let srv = TcpServer::start(|mut c, _, stop| {
        hold(&mut c, stop);
    });
    let dir = TempDir::new("tcp-idle");
    let cfg = config(
        &dir,
        &[stream("quiet", "tcp", &srv.addr, "idle_timeout: 0.5")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    srv.wait_connections(2, T);
    w.wait_err("no data for 0.5 s (idle_timeout)", T);
}

#[test]
fn tcp_server_closing_after_every_line_gets_backoff_not_a_busy_loop() {
    let srv = TcpServer::start(|mut c, n, _| {
        let _ = c.write_all(format!("ERROR line {n}\n").as_bytes());
    });
    let dir = TempDir::new("tcp-flap");
    let cfg = config(&dir, &[stream("flap", "tcp", &srv.addr, "")], "ERROR", "");
    let w = Watcher::watch(&cfg);
    srv.wait_connections(1, T);
    let t0 = Instant::now();
    let c0 = srv.connections();
    std::thread::sleep(Duration::from_secs(3));
    let n = srv.connections() - c0;
    let el = t0.elapsed();
    // 0.1 s doubling to 1 s with full jitter: a handful of attempts, never hundreds.
    assert!(n <= 15, "{n} connections in {el:?}");
    assert!(
        n >= 2,
        "it must keep reconnecting: {n} connections in {el:?}"
    );
    w.wait_alert("ERROR line 1", T);
    // Logged once, not once per retry.
    let lost = w
        .stderr()
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("stream flap"))
        .count();
    assert!(lost <= 2, "{:?}", w.stderr());
}

#[test]
fn tcp_connection_refused_is_retried_and_logged_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("tcp-refused");
    let cfg = config(
        &dir,
        &[stream("gone", "tcp", &format!("127.0.0.1:{port}"), "")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_err("cannot connect to 127.0.0.1", T);
    // Start the server on that port: the stream comes up.
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut c, _) = l.accept().unwrap();
    c.write_all(b"ERROR finally\n").unwrap();
    w.wait_alert("ERROR finally", T);
    let warned = w
        .stderr()
        .iter()
        .filter(|l| l.contains("cannot connect") && l.contains("WARN"))
        .count();
    assert_eq!(warned, 1, "{:?}", w.stderr());
}

// ---------------------------------------------------------------------------
// http
// ---------------------------------------------------------------------------

#[test]
fn http_bodies_chunked_length_and_until_close_are_read_as_they_arrive() {
    let chunked = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(
                Framing::Chunked,
                &["ERROR c1\nERR", "OR c2\n", "ERROR c3 partial", " end\n"],
                true,
            )
        } else {
            StreamReply::hang()
        }
    });
    let length = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::ContentLength, &["ERROR l1\n", "ERROR l2"], false)
        } else {
            StreamReply::hang()
        }
    });
    let close = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::UntilClose, &["ERROR u1\n", "ERROR u2\n"], false)
        } else {
            StreamReply::hang()
        }
    });
    let dir = TempDir::new("http-bodies");
    let cfg = config(
        &dir,
        &[
            stream("c", "http", &chunked.url("/logs"), ""),
            stream("l", "http", &length.url("/"), ""),
            stream("u", "http", &close.url("/x?y=1"), ""),
        ],
        "ERROR",
        "",
    );
    let mut w = Watcher::watch(&cfg);
    // The chunked body is still open (held): its lines arrived as they came.
    for t in [
        "ERROR c1",
        "ERROR c2",
        "ERROR c3 partial end",
        "ERROR l1",
        "ERROR l2",
        "ERROR u1",
        "ERROR u2",
    ] {
        w.wait_alert(t, T);
        assert_eq!(w.count_alert(t), 1, "{t}");
    }
    let r = chunked.expect(T, "first request");
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/logs");
    assert!(r.header("user-agent").unwrap().starts_with("tinywatcher/"));
    assert_eq!(close.expect(T, "req").path, "/x?y=1");
    // The ended bodies were reconnected (and hang now).
    length.expect(T, "first");
    length.expect(T, "reconnect after the body ended");
    assert!(w.stop().success());
}

#[test]
fn http_500_401_redirect_loop_and_silence_are_named_and_retried() {
    let s500 = HttpStream::start(|_, _| StreamReply::status(500));
    let s401 = HttpStream::start(|_, _| StreamReply::status(401));
    let looping =
        HttpStream::start(|r, _| StreamReply::redirect(&format!("/loop{}", r.path.len())));
    let silent = HttpStream::start(|_, _| StreamReply::hang());
    let dir = TempDir::new("http-bad");
    let cfg = config(
        &dir,
        &[
            stream("five", "http", &s500.url("/"), ""),
            stream("auth", "http", &s401.url("/"), "max_reconnect_delay: 30"),
            stream("loop", "http", &looping.url("/"), ""),
            stream("silent", "http", &silent.url("/"), "connect_timeout: 0.5"),
        ],
        "ERROR",
        "",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_err("stream five: http://127.0.0.1", T);
    w.wait_err("HTTP 500 Internal Server Error", T);
    w.wait_err("stream auth: http://127.0.0.1", T);
    w.wait_err(
        "credentials were refused (HTTP 401); retrying at the maximum delay, next try in 30.0 s",
        T,
    );
    w.wait_err("redirect loop (more than 5 redirects)", T);
    w.wait_err("no HTTP answer within 0.5 s (connect_timeout)", T);
    // 500 is retried with backoff; 401 waits the maximum delay (30 s here).
    wait_for(T, "500 retried", || s500.requests() >= 3);
    assert_eq!(s401.requests(), 1);
    // 6 requests per round: the first and 5 redirects.
    wait_for(T, "redirects followed", || looping.requests() >= 6);
    assert!(
        w.stderr().iter().all(|l| !l.contains("stream ended")),
        "{:?}",
        w.stderr()
    );
    assert!(w.stop().success());
}

#[test]
fn http_redirect_is_followed() {
    let target = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::Chunked, &["ERROR moved\n"], true)
        } else {
            StreamReply::hang()
        }
    });
    let to = target.url("/new");
    let first = HttpStream::start(move |_, _| StreamReply::redirect(&to));
    let dir = TempDir::new("http-redirect");
    let cfg = config(
        &dir,
        &[stream("r", "http", &first.url("/old"), "")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR moved", T);
    assert_eq!(target.expect(T, "redirected").path, "/new");
}

/// As curl does: a redirect to another origin (here another host and port)
/// is followed without the stream's credentials or configured headers.
#[test]
fn http_cross_origin_redirect_drops_credentials_and_headers() {
    let other = HttpStream::start(|r, _| {
        if r.path.starts_with("/other") {
            StreamReply::body(
                Framing::Chunked,
                &[&format!("ERROR served at {}\n", r.path)],
                true,
            )
        } else {
            StreamReply::status(404)
        }
    });
    let port = other.port;
    // Redirect to `localhost`, the same address under another name.
    let first = HttpStream::start(move |r, _| {
        StreamReply::redirect(&format!("http://localhost:{port}/other{}", r.path))
    });
    let userinfo = first.url("/u").replace("http://", "http://user:pw-789@");
    let dir = TempDir::new("http-redirect-cross");
    let cfg = config(
        &dir,
        &[
            stream("x", "http", &first.url("/x"), "auth: { bearer: SECRET-123 }, headers: { X-Api-Key: KEY-456, Accept: text/x-mine }"),
            stream("u", "http", &userinfo, ""),
        ],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    // The lines served after the redirect are still read and matched.
    w.wait_alert("ERROR served at /other/x", T);
    w.wait_alert("ERROR served at /other/u", T);
    let mut sent = [first.expect(T, "first x"), first.expect(T, "first u")];
    sent.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        sent[0].header("authorization"),
        Some("Basic dXNlcjpwdy03ODk=")
    );
    assert_eq!(sent[1].header("authorization"), Some("Bearer SECRET-123"));
    assert_eq!(sent[1].header("x-api-key"), Some("KEY-456"));
    let mut got = [
        other.expect(T, "redirected x"),
        other.expect(T, "redirected u"),
    ];
    got.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        (got[0].path.as_str(), got[1].path.as_str()),
        ("/other/u", "/other/x")
    );
    for r in &got {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert_eq!(r.header("x-api-key"), None, "{r:?}");
        assert_eq!(r.header("host"), Some(format!("localhost:{port}").as_str()));
        // The configured Accept went too; the default one replaces it.
        assert_eq!(r.header("accept"), Some("*/*"));
    }
    w.wait_err(
        "stream x: redirected to another origin (http://localhost:",
        T,
    );
    w.wait_err(
        "stream u: redirected to another origin (http://localhost:",
        T,
    );
    let err = w.stderr();
    assert_eq!(
        err.iter()
            .filter(|l| l.contains("stream x: redirected to another origin"))
            .count(),
        1,
        "{err:?}"
    );
    assert!(
        err.iter()
            .any(|l| l.contains("credentials and configured headers were not forwarded")),
        "{err:?}"
    );
    assert!(
        err.iter()
            .all(|l| !l.contains("SECRET-123") && !l.contains("KEY-456") && !l.contains("pw-789")),
        "{err:?}"
    );
}

/// A redirect within the origin keeps the credentials and headers, the URL's
/// userinfo included when the Location is relative.
#[test]
fn http_same_origin_redirect_keeps_credentials_and_headers() {
    let srv = HttpStream::start(|r, _| {
        if let Some(rest) = r.path.strip_prefix("/new") {
            StreamReply::body(
                Framing::Chunked,
                &[&format!("ERROR same origin {rest}\n")],
                true,
            )
        } else {
            StreamReply::redirect(&format!("/new{}", r.path))
        }
    });
    let userinfo = srv.url("/u").replace("http://", "http://user:pw-789@");
    let dir = TempDir::new("http-redirect-same");
    let cfg = config(
        &dir,
        &[
            stream(
                "x",
                "http",
                &srv.url("/x"),
                "auth: { bearer: SECRET-123 }, headers: { X-Api-Key: KEY-456 }",
            ),
            stream("u", "http", &userinfo, ""),
        ],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR same origin /x", T);
    w.wait_alert("ERROR same origin /u", T);
    let mut reqs: Vec<_> = (0..4)
        .map(|i| srv.expect(T, &format!("request {i}")))
        .collect();
    reqs.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<_> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/new/u", "/new/x", "/u", "/x"]);
    for r in &reqs {
        if r.path.ends_with("/x") {
            assert_eq!(
                r.header("authorization"),
                Some("Bearer SECRET-123"),
                "{r:?}"
            );
            assert_eq!(r.header("x-api-key"), Some("KEY-456"), "{r:?}");
        } else {
            assert_eq!(
                r.header("authorization"),
                Some("Basic dXNlcjpwdy03ODk="),
                "{r:?}"
            );
        }
    }
    assert!(
        w.stderr()
            .iter()
            .all(|l| !l.contains("redirected to another origin")),
        "{:?}",
        w.stderr()
    );
}

/// An https stream redirected to http:// is refused outright: the plain
/// server is never asked (the token would cross the network in cleartext).
#[cfg(feature = "tls")]
#[test]
fn https_redirect_to_http_is_refused() {
    use std::io::Read;
    let plain = HttpStream::start(|_, _| {
        StreamReply::body(Framing::Chunked, &["ERROR downgraded\n"], true)
    });
    let to = plain.url("/plain");
    let dir_tls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let id = native_tls::Identity::from_pkcs8(
        &std::fs::read(dir_tls.join("server.pem")).unwrap(),
        &std::fs::read(dir_tls.join("server.key")).unwrap(),
    )
    .unwrap();
    let acc = std::sync::Arc::new(native_tls::TlsAcceptor::new(id).unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (acc, to) = (acc.clone(), to.clone());
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(mut t) = acc.accept(s) else { return };
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match t.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let _ = t.write_all(
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                        .as_bytes(),
                );
                let _ = t.flush();
                std::thread::sleep(Duration::from_millis(500));
            });
        }
    });
    let dir = TempDir::new("https-downgrade");
    let tls = format!(
        "tls: {{ ca_file: {:?} }}",
        dir_tls.join("ca.pem").to_str().unwrap()
    );
    let cfg = config(
        &dir,
        &[stream(
            "s",
            "http",
            &format!("https://127.0.0.1:{port}/logs"),
            &format!("auth: {{ bearer: SECRET-123 }}, {tls}"),
        )],
        "ERROR",
        "",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_err("redirect from https to http refused", T);
    assert_eq!(plain.requests(), 0);
    assert_eq!(w.count_alert("ERROR downgraded"), 0);
    assert!(
        w.stderr().iter().all(|l| !l.contains("SECRET-123")),
        "{:?}",
        w.stderr()
    );
    assert!(w.stop().success());
}

#[test]
fn http_headers_are_sent_and_not_logged() {
    let srv = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::Chunked, &["ERROR h\n"], true)
        } else {
            StreamReply::hang()
        }
    });
    let dir = TempDir::new("http-headers");
    let cfg = config(
        &dir,
        &[stream(
            "h",
            "http",
            &srv.url("/"),
            "headers: { X-Api-Key: k123, Authorization: Bearer tok-456 }",
        )],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR h", T);
    let r = srv.expect(T, "request");
    assert_eq!(r.header("x-api-key"), Some("k123"));
    assert_eq!(r.header("authorization"), Some("Bearer tok-456"));
    assert!(
        w.stderr()
            .iter()
            .all(|l| !l.contains("tok-456") && !l.contains("k123")),
        "{:?}",
        w.stderr()
    );
}

#[test]
fn http_auth_basic_and_bearer_are_sent() {
    let srv = HttpStream::start(|_, n| {
        if n < 2 {
            StreamReply::body(Framing::Chunked, &["ERROR h\n"], true)
        } else {
            StreamReply::hang()
        }
    });
    let dir = TempDir::new("http-auth");
    let cfg = config(
        &dir,
        &[
            stream("b", "http", &srv.url("/b"), "auth: { bearer: tok-456 }"),
            stream(
                "u",
                "http",
                &srv.url("/u"),
                "auth: { basic: \"$$app:s3cret\" }",
            ),
        ],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    wait_for(T, "two alerts", || w.count_alert("ERROR h") == 2);
    let mut reqs = [srv.expect(T, "first"), srv.expect(T, "second")];
    reqs.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(reqs[0].header("authorization"), Some("Bearer tok-456"));
    assert_eq!(
        reqs[1].header("authorization"),
        Some("Basic JGFwcDpzM2NyZXQ=")
    );
    assert!(
        w.stderr()
            .iter()
            .all(|l| !l.contains("tok-456") && !l.contains("s3cret")),
        "{:?}",
        w.stderr()
    );
}

/// Recipe: Azure App Service log stream — HTTP streaming with basic auth
/// (the deployment credentials); anything else is answered 401.
#[test]
fn recipe_azure_app_service_log_stream() {
    let want = format!("Basic {}", "JGFwcDpzM2NyZXQ="); // "$app:s3cret"
    let srv = HttpStream::start(move |r, _| {
        if r.path != "/api/logstream" || r.header("authorization") != Some(want.as_str()) {
            return StreamReply::status(401);
        }
        StreamReply::body(
            Framing::Chunked,
            &[
                "2026-01-04T10:00:00  Welcome, you are now connected to log-streaming service.\n",
                "2026-01-04T10:00:01  [Error] System.Exception: boom\n",
            ],
            true,
        )
    });
    let dir = TempDir::new("azure");
    let yaml = format!(
        "identity: {{ name: test }}\ninputs:\n  streams:\n    - name: azure\n      type: http\n      url: \"http://$$app:${{AZ_PASS}}@{}/api/logstream\"\n      reconnect_delay: 0.1\n    - name: azure-wrong\n      type: http\n      url: \"http://$$app:wrong@{}/api/logstream\"\nalerts:\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: \"\\\\[Error\\\\]\"\n    alert: console\n    cooldown: 0\n",
        srv.addr(), srv.addr()
    );
    let cfg = dir.write("cfg.yaml", &yaml);
    let w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.env("AZ_PASS", "s3cret");
    });
    w.wait_alert("[Error] System.Exception: boom", T);
    w.wait_err("stream azure-wrong: http://127.0.0.1", T);
    w.wait_err("credentials were refused (HTTP 401)", T);
    assert!(w.stderr().iter().all(|l| !l.contains("s3cret")));
}

/// Recipe: Kubernetes pod logs over HTTP — `follow=true&timestamps=true`,
/// a bearer token, a chunked body that stays open.
#[test]
fn recipe_kubernetes_pod_logs_over_http() {
    let srv = HttpStream::start(|r, _| {
        if r.header("authorization") != Some("Bearer k8s-token-1") {
            return StreamReply::status(401);
        }
        if r.path != "/api/v1/namespaces/default/pods/p/log?follow=true&timestamps=true" {
            return StreamReply::status(404);
        }
        StreamReply::body(
            Framing::Chunked,
            &[
                "2026-01-04T10:00:00.000000001Z starting\n",
                "2026-01-04T10:00:01.000000002Z OperationalError: db gone\n",
            ],
            true,
        )
    });
    let dir = TempDir::new("k8s");
    let cfg = config(
        &dir,
        &[stream(
            "k8s",
            "http",
            &srv.url("/api/v1/namespaces/default/pods/p/log?follow=true&timestamps=true"),
            "headers: { Authorization: \"Bearer ${K8S_TOKEN}\" }",
        )],
        "OperationalError",
        "",
    );
    let w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.env("K8S_TOKEN", "k8s-token-1");
    });
    w.wait_alert(
        "2026-01-04T10:00:01.000000002Z OperationalError: db gone",
        T,
    );
    assert_eq!(srv.requests(), 1);
}

#[test]
fn adhoc_stream_url_works_end_to_end() {
    let srv = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::Chunked, &["fine\n", "FATAL adhoc\n"], true)
        } else {
            StreamReply::hang()
        }
    });
    let url = srv.url("/tail");
    let (code, out, err) = run(&[
        "watch",
        "--stream",
        &url,
        "--rule",
        "FATAL",
        "--until-match",
        "--timeout",
        "10s",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("FATAL adhoc"), "{out}");
    // tcp:// too
    let tcp = TcpServer::lines("x\nFATAL over tcp\n");
    let (code, out, err) = run(&[
        "watch",
        "--stream",
        &format!("tcp://{}", tcp.addr),
        "--rule",
        "FATAL",
        "--until-match",
        "--timeout",
        "10s",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("FATAL over tcp"), "{out}");
}

// ---------------------------------------------------------------------------
// sse
// ---------------------------------------------------------------------------

#[test]
fn sse_framing_and_text_event_stream_detection() {
    let srv = HttpStream::start(|_, n| {
        if n > 0 {
            return StreamReply::hang();
        }
        StreamReply::sse(
            &[
                ": keep-alive\n\n",
                "event: log\ndata: ERROR a1\ndata:ERROR a2\n\n",
                "id: 9\nretry: 100\nfoo: bar\ndata: ERROR b",
                "1\r\n\r\n",
                "data: ERROR never dispatched\n",
            ],
            false,
        )
    });
    let dir = TempDir::new("sse");
    // type http, but answered with text/event-stream: parsed as SSE.
    let cfg = config(
        &dir,
        &[stream("ev", "http", &srv.url("/events"), "")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR b1", T);
    assert_eq!(w.count_alert("ERROR a1"), 1);
    assert_eq!(w.count_alert("ERROR a2"), 1);
    assert!(
        w.stdout().iter().all(|l| !l.contains("keep-alive")
            && !l.contains("data:")
            && !l.contains("never dispatched")),
        "{:?}",
        w.stdout()
    );
    srv.expect(T, "first");
    let again = srv.expect(T, "reconnect");
    assert_eq!(again.header("last-event-id"), Some("9"));
}

#[test]
fn sse_resume_with_last_event_id_loses_nothing() {
    let srv = HttpStream::start(|r, n| match n {
        0 => StreamReply::sse(
            &[
                "id: 1\ndata: EVENT 1\n\n",
                "id: 2\ndata: EVENT 2\n\n",
                "id: 3\ndata: EVENT 3\n\n",
                "id: 4\ndata: EVENT 4 (cut",
            ],
            false,
        ),
        _ if r.header("last-event-id") == Some("3") => StreamReply::sse(
            &[
                "id: 4\ndata: EVENT 4\n\n",
                "id: 5\ndata: EVENT 5\n\n",
                "id: 6\ndata: EVENT 6\n\n",
            ],
            true,
        ),
        _ => StreamReply::status(400),
    });
    let dir = TempDir::new("sse-resume");
    let cfg = config(
        &dir,
        &[stream("ev", "sse", &srv.url("/ev"), "")],
        "EVENT",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("EVENT 6", T);
    let first = srv.expect(T, "first");
    assert_eq!(first.header("last-event-id"), None);
    assert_eq!(first.header("accept"), Some("text/event-stream"));
    let second = srv.expect(T, "second");
    assert_eq!(second.header("last-event-id"), Some("3"));
    std::thread::sleep(Duration::from_millis(200));
    for i in 1..=6 {
        assert_eq!(
            w.count_alert(&format!("EVENT {i}")),
            1,
            "event {i}: {:?}",
            w.stdout()
        );
    }
    assert_eq!(srv.requests(), 2);
}

/// With a state file, the last SSE event id survives a restart: the first
/// request of the next run already sends it as `Last-Event-ID`, so the
/// server resumes after it and no event is alerted twice across runs.
#[test]
fn sse_last_event_id_is_saved_in_the_state_file_and_resumed_after_a_restart() {
    let srv = HttpStream::start(|r, _| {
        match r.header("last-event-id") {
        None => StreamReply::sse(&["id: 1\ndata: EVENT 1\n\n", "id: 2\ndata: EVENT 2\n\n", "id: 3\ndata: EVENT 3\n\n"], true),
        Some("3") => StreamReply::sse(&["id: 4\ndata: EVENT 4\n\n", "id: 5\ndata: EVENT 5\n\n"], true),
        // Any other id: replay everything, so a wrong resume shows as a repeat.
        Some(_) => StreamReply::sse(&["id: 1\ndata: EVENT 1\n\nid: 2\ndata: EVENT 2\n\nid: 3\ndata: EVENT 3\n\nid: 4\ndata: EVENT 4\n\nid: 5\ndata: EVENT 5\n\n"], true),
    }
    });
    let dir = TempDir::new("sse-state");
    let st = dir.path("state");
    let cfg = config(
        &dir,
        &[stream("ev", "sse", &srv.url("/ev"), "")],
        "EVENT",
        &format!("state_file: {:?}\n", st.to_str().unwrap()),
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_alert("EVENT 3", T);
    assert_eq!(srv.expect(T, "first request").header("last-event-id"), None);
    assert_eq!(w.stop().code(), Some(0));
    let saved = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&st).unwrap()).unwrap()
    };
    assert_eq!(saved()["streams"]["ev"], "3", "{}", saved());
    let mut all = w.stdout();

    let mut w = Watcher::watch(&cfg);
    w.wait_alert("EVENT 5", T);
    let first = srv.expect(T, "first request of the second run");
    assert_eq!(first.header("last-event-id"), Some("3"));
    assert_eq!(w.stop().code(), Some(0));
    assert_eq!(saved()["streams"]["ev"], "5", "{}", saved());
    all.extend(w.stdout());
    for i in 1..=5 {
        let n = all
            .iter()
            .filter(|l| l.contains("ALERT [test] [r]: ") && l.ends_with(&format!("EVENT {i}")))
            .count();
        assert_eq!(
            n, 1,
            "event {i} alerted {n} time(s) across the two runs: {all:?}"
        );
    }
    assert_eq!(srv.requests(), 2);
}

/// The stream counters are in the stats line logged at exit: a server that
/// drops the first connection gives two connects and one failure.
#[test]
fn stream_connects_and_failures_are_counted_in_the_exit_stats() {
    let srv = TcpServer::start(|mut c, n, stop| {
        let _ = c.write_all(format!("ERROR conn {n}\n").as_bytes());
        if n > 0 {
            hold(&mut c, stop);
        }
    });
    let dir = TempDir::new("stream-stats");
    let cfg = config(&dir, &[stream("flaky", "tcp", &srv.addr, "")], "ERROR", "");
    let mut w = Watcher::watch(&cfg);
    w.wait_alert("ERROR conn 1", T);
    assert_eq!(w.stop().code(), Some(0));
    let err = w.stderr();
    let stats = err
        .iter()
        .rev()
        .find(|l| l.contains("stats: "))
        .unwrap_or_else(|| panic!("no stats line: {err:?}"));
    assert!(counter(stats, "stream_connects") >= 2, "{stats}");
    assert!(counter(stats, "stream_failures") >= 1, "{stats}");
    assert_eq!(
        counter(stats, "stream_connects"),
        srv.connections() as u64,
        "{stats}"
    );
}

/// `NAME=N` from a stats line (0 when absent).
pub fn counter(stats: &str, name: &str) -> u64 {
    stats
        .split_whitespace()
        .find_map(|kv| {
            kv.strip_prefix(&format!("{name}="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn sse_malformed_stream_is_bounded_and_the_watcher_stays_up() {
    let big = format!("data: {}\n", "y".repeat(500));
    let srv = HttpStream::start(move |_, n| {
        if n > 0 {
            return StreamReply::hang();
        }
        // Unknown fields, a retry that is not a number, then 2 MB of data
        // lines without a blank line, then a proper event.
        let mut parts = vec!["bogus: 1\nretry: soon\nnot a field at all\n".to_string()];
        for _ in 0..4000 {
            parts.push(big.clone());
        }
        parts.push("\ndata: ERROR still alive\n\n".to_string());
        let mut r = StreamReply::sse(&[], true);
        r.parts = parts.into_iter().map(String::into_bytes).collect();
        r.gap = Duration::ZERO;
        r
    });
    let dir = TempDir::new("sse-bad");
    let cfg = config(
        &dir,
        &[stream("bad", "sse", &srv.url("/"), "")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    w.wait_alert("ERROR still alive", T);
    w.wait_err("ignoring an SSE `retry:` that is not a number", T);
    w.wait_err("grew beyond 1048576 bytes", T);
    let warned = w.stderr().iter().filter(|l| l.contains("retry:")).count();
    assert_eq!(warned, 1);
}

// ---------------------------------------------------------------------------
// shutdown and real peers
// ---------------------------------------------------------------------------

#[test]
fn sigterm_while_every_stream_type_is_blocked_in_a_read_exits_promptly() {
    let tcp = TcpServer::start(|mut c, _, stop| {
        hold(&mut c, stop);
    });
    let http = HttpStream::start(|_, _| StreamReply::body(Framing::Chunked, &["hello\n"], true));
    let sse = HttpStream::start(|_, _| StreamReply::sse(&["data: hi\n\n"], true));
    let hang = HttpStream::start(|_, _| StreamReply::hang());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("streams-sigterm");
    let listen =
        format!("  listen:\n    - {{ name: l, type: tcp, address: \"127.0.0.1:{port}\" }}\n");
    let mut s = String::from("identity: { name: test }\ninputs:\n  streams:\n");
    for e in [
        stream("t", "tcp", &tcp.addr, ""),
        stream("h", "http", &http.url("/"), ""),
        stream("s", "sse", &sse.url("/"), ""),
        stream("hang", "http", &hang.url("/"), "connect_timeout: 60"),
    ] {
        s.push_str(&format!("    - {e}\n"));
    }
    s.push_str(&listen);
    s.push_str("alerts:\n  console: { type: stdout }\nrules:\n  - { name: r, pattern: ERROR, alert: console }\n");
    let cfg = dir.write("cfg.yaml", &s);
    let mut w = Watcher::watch(&cfg);
    tcp.wait_connections(1, T);
    w.wait_err("stream h: connected", T);
    w.wait_err("stream s: connected", T);
    w.wait_err("listening on tcp", T);
    hang.expect(T, "hanging request");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"partial").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let st = w.stop();
    assert!(st.success(), "{st:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        t0.elapsed()
    );
}

/// Kills a child process when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real TCP peer: socat serving a file of lines, as a TCP aggregator would.
#[test]
fn real_peer_socat_tcp_server() {
    if peer("socat").is_none() {
        return;
    }
    let dir = TempDir::new("socat");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "line {i} {}\n",
            if i % 100 == 7 { "ERROR" } else { "ok" }
        ));
    }
    let file = dir.write("lines.txt", &text);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _socat = Child(
        std::process::Command::new("socat")
            .arg("-u")
            .arg(format!("FILE:{}", file.display()))
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // No wait for socat to listen: a refused connection is simply retried.
    let cfg = config(
        &dir,
        &[stream(
            "socat",
            "tcp",
            &format!("tcp://127.0.0.1:{port}"),
            "",
        )],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    wait_for(T, "10 alerts from socat", || w.count_out("ERROR") >= 10);
    for i in (0..1000).filter(|i| i % 100 == 7) {
        assert_eq!(w.count_alert(&format!("line {i} ERROR")), 1, "{i}");
    }
}

#[test]
fn http_proxy_from_the_environment_is_used() {
    let proxy = HttpStream::start(|_, n| {
        if n == 0 {
            StreamReply::body(Framing::Chunked, &["ERROR via proxy\n"], true)
        } else {
            StreamReply::hang()
        }
    });
    let dir = TempDir::new("http-proxy");
    let cfg = config(
        &dir,
        &[stream("p", "http", "http://logs.invalid:8080/tail?x=1", "")],
        "ERROR",
        "",
    );
    let w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.env("HTTP_PROXY", &proxy.base)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("HTTPS_PROXY");
    });
    w.wait_alert("ERROR via proxy", T);
    let r = proxy.expect(T, "proxied request");
    assert_eq!(r.path, "http://logs.invalid:8080/tail?x=1");
    assert_eq!(r.header("host"), Some("logs.invalid:8080"));
}

#[test]
fn a_non_http_answer_is_an_error_not_a_crash() {
    // A status line whose 60th byte falls inside a multi-byte character
    // (after lossy decoding): the error message must not slice it apart.
    let srv = TcpServer::start(|mut c, _, _| {
        let mut req = [0u8; 1024];
        let _ = std::io::Read::read(&mut c, &mut req);
        let mut ans = b"a".to_vec();
        ans.extend(std::iter::repeat_n(0xffu8, 70));
        ans.extend_from_slice(b"\r\n\r\n");
        let _ = c.write_all(&ans);
    });
    let dir = TempDir::new("not-http");
    let cfg = config(
        &dir,
        &[stream("odd", "http", &format!("http://{}/", srv.addr), "")],
        "ERROR",
        "",
    );
    let mut w = Watcher::watch(&cfg);
    w.wait_err("not an HTTP answer", T);
    srv.wait_connections(2, T); // still up, still retrying
    assert!(w.stop().success());
}

#[test]
fn sse_retry_zero_does_not_make_a_busy_loop() {
    // `retry: 0` and a close after each event: the floor of 100 ms holds.
    let srv = TcpServer::start(|mut c, n, _| {
        let mut req = [0u8; 4096];
        let _ = std::io::Read::read(&mut c, &mut req);
        let body = format!("retry: 0\nid: {n}\ndata: ERROR ev {n}\n\n");
        let _ = c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    });
    let dir = TempDir::new("sse-retry0");
    let cfg = config(
        &dir,
        &[stream("ev", "sse", &format!("http://{}/", srv.addr), "")],
        "ERROR",
        "",
    );
    let w = Watcher::watch(&cfg);
    srv.wait_connections(1, T);
    let c0 = srv.connections();
    std::thread::sleep(Duration::from_secs(2));
    let n = srv.connections() - c0;
    assert!(n <= 25, "{n} connections in 2 s");
    w.wait_alert("ERROR ev 1", T);
}
