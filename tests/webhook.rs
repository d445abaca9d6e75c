//! The webhook destination, end to end: the real binary follows a file and
//! posts to a loopback `Recorder` (tests/fake.rs). Payload and headers,
//! retries with backoff, `Retry-After`, final failures, a hanging webhook that
//! must not hold up stdout, and secrets that must never reach the log.
//!
//! `TINYWATCHER_RETRY_BASE_MS=20` keeps the backoff short.

use crate::fake::{refused_url, Recorder, Reply};
use crate::util::{append, run, wait_for, TempDir, Watcher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// A config following `log` from its beginning, with these `alerts:` entries
/// (YAML, indented by 2) and one rule `errors` on `ERROR (?P<code>\d+)` that
/// alerts to `to` (a YAML list) with labels {team: ops}.
fn config(d: &TempDir, log: &Path, alerts: &str, to: &str) -> PathBuf {
    let yaml = format!(
        "identity: {{ name: test-box }}\nshutdown_timeout: 1s\ninputs:\n  files:\n    - {{ path: {:?}, read_from: beginning }}\nalerts:\n{alerts}rules:\n  - name: errors\n    pattern: \"ERROR (?P<code>\\\\d+)\"\n    alert: {to}\n    cooldown: 0\n    labels: {{ team: ops }}\n",
        log.display().to_string()
    );
    d.write("cfg.yaml", &yaml)
}

/// Start watching with `cfg`, fast retries, and wait until it runs.
fn start(cfg: &Path) -> Watcher {
    let w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.env("TINYWATCHER_RETRY_BASE_MS", "20");
    });
    w.wait_err("watching", T);
    w
}

fn hook(url: &str, extra: &str) -> String {
    format!("  hook:\n    type: webhook\n    url: {url:?}\n{extra}")
}

#[test]
fn payload_headers_and_method_as_received() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![]);
    let cfg = config(
        &d,
        &log,
        &hook(
            &r.url("/in/alerts"),
            "    method: patch\n    headers:\n      X-Token: abc123\n      X-Env: test\n",
        ),
        "[hook]",
    );
    let mut w = start(&cfg);
    append(&log, "noise\nERROR 503 upstream down\n");
    let req = r.expect(T, "the alert");
    assert_eq!(req.method, "PATCH");
    assert_eq!(req.path, "/in/alerts");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-token"), Some("abc123"));
    assert_eq!(req.header("x-env"), Some("test"));
    let v = req.json();
    let ts = v["timestamp"].as_str().unwrap().to_string();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {ts}"
    );
    assert_eq!(
        v,
        serde_json::json!({
            "identity": "test-box",
            "rule": "errors",
            "message": "ERROR 503 upstream down",
            "timestamp": ts,
            "alert_name": "hook",
            "source": format!("file:{}", log.display()),
            "line": "ERROR 503 upstream down",
            "captures": {"code": "503"},
            "suppressed": 0,
            "labels": {"team": "ops"},
        })
    );
    assert_eq!(w.stop().code(), Some(0));
}

#[test]
fn retries_5xx_until_accepted_exactly_once() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![Reply::status(500), Reply::body(502, "bad gateway")]);
    let mut w = start(&config(&d, &log, &hook(&r.url("/x"), ""), "[hook]"));
    append(&log, "ERROR 1\n");
    let bodies: Vec<String> = (0..3)
        .map(|i| {
            r.expect(T, &format!("attempt {}", i + 1)).json()["line"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(bodies, ["ERROR 1", "ERROR 1", "ERROR 1"]);
    w.wait_err("delivered alert for rule errors on attempt 3", T);
    // Accepted once: the next request is the next alert, not a fourth attempt.
    append(&log, "ERROR 2\n");
    assert_eq!(r.expect(T, "the next alert").json()["line"], "ERROR 2");
    assert_eq!(w.stop().code(), Some(0));
    assert!(r.drain().is_empty());
}

#[test]
fn retry_after_is_honoured() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![Reply::retry_after(429, 1)]);
    let mut w = start(&config(&d, &log, &hook(&r.url("/x"), ""), "[hook]"));
    append(&log, "ERROR 1\n");
    let first = r.expect(T, "first attempt");
    let second = r.expect(T, "the retry");
    let gap = second.at.duration_since(first.at);
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 but retried after {gap:?}"
    );
    assert!(gap < Duration::from_secs(5), "{gap:?}");
    assert_eq!(w.stop().code(), Some(0));
}

#[test]
fn client_error_is_not_retried() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![Reply::body(400, "invalid payload")]);
    let mut w = start(&config(&d, &log, &hook(&r.url("/x"), ""), "[hook]"));
    append(&log, "ERROR 1\n");
    assert_eq!(r.expect(T, "the alert").json()["line"], "ERROR 1");
    w.wait_err(
        "dropping alert for rule errors after 1 attempt: HTTP 400 Bad Request: invalid payload",
        T,
    );
    append(&log, "ERROR 2\n");
    assert_eq!(
        r.expect(T, "the next alert").json()["line"],
        "ERROR 2",
        "no retry of the 400"
    );
    assert_eq!(w.stop().code(), Some(0));
}

#[test]
fn refused_connections_are_retried_then_dropped_and_the_watcher_stays_up() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let mut w = start(&config(
        &d,
        &log,
        &hook(&refused_url(), "    max_attempts: 3\n"),
        "[hook]",
    ));
    append(&log, "ERROR 1\n");
    w.wait_err(
        "hook: dropping alert for rule errors after 3 attempts: connection refused",
        T,
    );
    assert!(w.child.try_wait().unwrap().is_none(), "still running");
    // Still matching and still trying.
    append(&log, "ERROR 2\n");
    wait_for(T, "a second drop", || {
        w.stderr()
            .iter()
            .filter(|l| l.contains("dropping alert for rule errors"))
            .count()
            == 2
    });
    assert_eq!(w.stop().code(), Some(0));
    let err = w.stderr().join("\n");
    assert!(err.contains("alerts_failed=2"), "{err}");
    assert!(err.contains("retries=4"), "{err}");
}

#[test]
fn a_hanging_webhook_does_not_delay_stdout() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![]);
    r.set_default(Reply::Hang);
    let alerts = format!(
        "{}  console:\n    type: stdout\n",
        hook(&r.url("/x"), "    timeout: 30s\n")
    );
    let mut w = start(&config(&d, &log, &alerts, "[hook, console]"));
    append(&log, "ERROR 1\n");
    r.expect(T, "the webhook request (which hangs)");
    w.wait_out("ALERT [test-box] [errors]: ERROR 1", T);
    // The webhook is still hanging on the first alert; stdout keeps up.
    let t0 = Instant::now();
    append(&log, "ERROR 2\n");
    w.wait_out("ALERT [test-box] [errors]: ERROR 2", T);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stdout waited {:?}",
        t0.elapsed()
    );
    // Shutdown gives up on the hanging webhook at the deadline (1s).
    let t0 = Instant::now();
    assert_eq!(w.stop().code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t0.elapsed()
    );
    w.wait_err("not delivered before the shutdown deadline", T);
}

#[test]
fn secrets_in_url_and_headers_never_reach_the_log() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![]);
    r.set_default(Reply::body(
        500,
        "no such hook: /hooks/PATH-SECRET-1?key=QUERY-SECRET-2",
    ));
    let url = format!(
        "http://user:PASS-SECRET-4@127.0.0.1:{}/hooks/PATH-SECRET-1?key=QUERY-SECRET-2",
        r.port
    );
    let extra = "    max_attempts: 2\n    headers:\n      Authorization: Bearer HEADER-SECRET-3\n";
    let mut w = start(&config(&d, &log, &hook(&url, extra), "[hook]"));
    append(&log, "ERROR 1\n");
    w.wait_err(
        "dropping alert for rule errors after 2 attempts: HTTP 500",
        T,
    );
    assert_eq!(w.stop().code(), Some(0));
    let all = format!("{}\n{}", w.stderr().join("\n"), w.stdout().join("\n"));
    assert!(
        all.contains(&format!("http://127.0.0.1:{}/***", r.port)),
        "the redacted URL is shown: {all}"
    );
    for secret in [
        "PATH-SECRET-1",
        "QUERY-SECRET-2",
        "HEADER-SECRET-3",
        "PASS-SECRET-4",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

// `tinywatcher test --send` needs no input: it runs the same code now.

#[test]
fn test_send_delivers_one_test_alert() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![]);
    let alerts = format!(
        "{}  console:\n    type: stdout\n",
        hook(&r.url("/t"), "    headers:\n      X-Token: abc123\n")
    );
    let cfg = config(&d, &log, &alerts, "[hook, console]");
    let (code, out, err) = run(&["test", "--config", cfg.to_str().unwrap(), "--send"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("send hook: ok") && out.contains("send console: ok"),
        "{out}"
    );
    assert!(
        out.contains("ALERT [test-box] [test]: tinywatcher test alert from test-box"),
        "{out}"
    );
    let req = r.expect(T, "the test alert");
    assert_eq!(
        (req.method.as_str(), req.header("x-token")),
        ("POST", Some("abc123"))
    );
    let v = req.json();
    assert_eq!(v["rule"], "test");
    assert_eq!(v["alert_name"], "hook");
    assert_eq!(v["identity"], "test-box");
    assert_eq!(v["message"], "tinywatcher test alert from test-box");
    assert!(r.drain().is_empty(), "one attempt only");
}

#[test]
fn test_send_failure_is_reported_redacted() {
    let d = TempDir::new("wh");
    let log = d.write("app.log", "");
    let r = Recorder::start(vec![Reply::body(500, "bad /PATH-SECRET-1")]);
    let alerts = format!(
        "{}  dead:\n    type: webhook\n    url: {:?}\n",
        hook(
            &r.url("/PATH-SECRET-1"),
            "    headers:\n      Authorization: HEADER-SECRET-3\n"
        ),
        format!("{}/QUERY?k=QUERY-SECRET-2", refused_url())
    );
    let cfg = config(&d, &log, &alerts, "[hook]");
    let (code, out, err) = run(&["test", "--config", cfg.to_str().unwrap(), "--send"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("send hook: FAILED: HTTP 500 Internal Server Error"),
        "{out}"
    );
    assert!(
        out.contains("send dead: FAILED: connection refused"),
        "{out}"
    );
    for secret in ["PATH-SECRET-1", "QUERY-SECRET-2", "HEADER-SECRET-3"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} leaked:\n{out}\n{err}"
        );
    }
    assert_eq!(r.drain().len(), 1, "no retries in test --send");
}
