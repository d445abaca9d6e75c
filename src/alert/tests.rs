//! Unit tests of delivery: the time formatters, and `Senders` driven directly
//! against a tiny loopback HTTP recorder (the integration tests in
//! tests/webhook.rs run the real binary against tests/fake.rs).

use super::*;
use crate::config::AlertCfg;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn time_formats_known_dates() {
    for (secs, text, rfc) in [
        (0, "1970-01-01 00:00:00", "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29 00:00:00", "2000-02-29T00:00:00Z"),
        (946_684_799, "1999-12-31 23:59:59", "1999-12-31T23:59:59Z"),
        (1_709_251_199, "2024-02-29 23:59:59", "2024-02-29T23:59:59Z"),
        (1_796_378_400, "2026-12-04 10:00:00", "2026-12-04T10:00:00Z"),
        (2_147_483_648, "2038-01-19 03:14:08", "2038-01-19T03:14:08Z"),
        (4_107_542_400, "2100-03-01 00:00:00", "2100-03-01T00:00:00Z"),
    ] {
        assert_eq!(text_time(at(secs)), text, "{secs}");
        assert_eq!(rfc3339(at(secs)), rfc, "{secs}");
    }
    // Sub-second parts are cut, not rounded.
    assert_eq!(
        rfc3339(at(59) + Duration::from_millis(999)),
        "1970-01-01T00:00:59Z"
    );
    // Before 1970: shown as the epoch rather than panicking.
    assert_eq!(
        rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00Z"
    );
}

#[test]
fn civil_from_days_round_trips_every_day_of_four_centuries() {
    // Walk day by day from 1970 and check the calendar advances by exactly one day.
    let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
    for z in 0..146_097 {
        assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ][m as usize - 1];
        d += 1;
        if d > len {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A tiny loopback HTTP recorder
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Act {
    /// Answer this status, with `Retry-After: N` when given, and this body.
    Status(u16, Option<u64>, &'static str),
    /// Never answer (until the client goes away).
    Hang,
}

#[derive(Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    at: Instant,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Serve on 127.0.0.1: request n gets `script[n]` (200 after the script).
fn recorder(script: Vec<Act>) -> (String, crossbeam_channel::Receiver<Req>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = crossbeam_channel::unbounded();
    let n = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let (tx, n, script) = (tx.clone(), n.clone(), script.clone());
            std::thread::spawn(move || serve(conn, tx, n, script));
        }
    });
    (base, rx)
}

fn serve(
    conn: TcpStream,
    tx: crossbeam_channel::Sender<Req>,
    n: Arc<AtomicUsize>,
    script: Vec<Act>,
) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let i = n.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(Req {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        match script
            .get(i)
            .cloned()
            .unwrap_or(Act::Status(200, None, "ok"))
        {
            Act::Status(code, retry_after, body) => {
                let ra = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
                let resp = format!(
                    "HTTP/1.1 {code} X\r\n{ra}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Act::Hang => {
                // Until the client gives up and closes.
                let _ = r.read(&mut [0u8; 1]);
                return;
            }
        }
    }
}

fn alerts(yaml: &str) -> BTreeMap<String, AlertCfg> {
    serde_yaml::from_str(yaml).unwrap()
}

fn alert(rule: &str, n: u64) -> Arc<Alert> {
    let mut captures = BTreeMap::new();
    captures.insert("n".to_string(), n.to_string());
    let mut labels = BTreeMap::new();
    labels.insert("team".to_string(), "ops".to_string());
    Arc::new(Alert {
        identity: Arc::from("box"),
        rule: Arc::from(rule),
        message: format!("message {n}"),
        source: Arc::from("file:/var/log/app.log"),
        line: format!("ERROR line {n}"),
        captures,
        time: at(1_796_378_400),
        suppressed: n,
        labels: Arc::new(labels),
    })
}

fn recv(rx: &crossbeam_channel::Receiver<Req>, secs: u64) -> Req {
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("request to the recorder")
}

// ---------------------------------------------------------------------------
// Senders against the recorder
// ---------------------------------------------------------------------------

#[test]
fn webhook_payload_method_and_headers() {
    let (base, rx) = recorder(vec![]);
    let a = alerts(&format!("hook:\n  type: webhook\n  url: {base}/in/abc\n  method: put\n  headers:\n    Authorization: Bearer t0ken\n    X-Extra: yes\n"));
    let s = Senders::start(&a, false, false, &crate::event::Stop::new()).unwrap();
    let idx = s.index_of("hook").unwrap();
    assert_eq!(s.index_of("nope"), None);
    s.dispatch(idx, alert("errors", 1));
    let r = recv(&rx, 5);
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/in/abc");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(r.header("x-extra"), Some("yes"));
    assert!(r.header("user-agent").unwrap().starts_with("tinywatcher/"));
    assert_eq!(
        r.json(),
        serde_json::json!({
            "identity": "box", "rule": "errors", "message": "message 1",
            "timestamp": "2026-12-04T10:00:00Z", "alert_name": "hook",
            "source": "file:/var/log/app.log", "line": "ERROR line 1",
            "captures": {"n": "1"}, "suppressed": 1, "labels": {"team": "ops"}
        })
    );
    assert_eq!(s.finish(Instant::now() + Duration::from_secs(5)), 0);
}

#[test]
fn webhook_without_labels_omits_them() {
    let (base, rx) = recorder(vec![]);
    let mut hook = webhook::Webhook::new(
        "h",
        match &alerts(&format!("h: {{ type: webhook, url: {base}/ }}\n"))["h"] {
            AlertCfg::Webhook(w) => w,
            _ => unreachable!(),
        },
    )
    .unwrap();
    let mut a = (*alert("r", 0)).clone();
    a.labels = Arc::new(BTreeMap::new());
    hook.deliver(&a, None).unwrap();
    let v = recv(&rx, 5).json();
    assert!(v.get("labels").is_none(), "{v}");
    assert_eq!(v["suppressed"], 0);
}

#[test]
fn alerts_arrive_in_order_on_one_connection_pool() {
    let (base, rx) = recorder(vec![]);
    let s = Senders::start(
        &alerts(&format!("hook: {{ type: webhook, url: {base}/x }}\n")),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    for n in 0..20 {
        s.dispatch(0, alert("r", n));
    }
    for n in 0..20 {
        assert_eq!(recv(&rx, 5).json()["suppressed"], n);
    }
    assert_eq!(s.finish(Instant::now() + Duration::from_secs(5)), 0);
}

#[test]
fn retries_5xx_then_succeeds() {
    let (base, rx) = recorder(vec![
        Act::Status(500, None, "boom"),
        Act::Status(502, None, ""),
        Act::Status(204, None, ""),
    ]);
    let retries = stats::get(&STATS.retries);
    let s = Senders::start(
        &alerts(&format!("hook: {{ type: webhook, url: {base}/x }}\n")),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    s.dispatch(0, alert("r", 7));
    s.dispatch(0, alert("r", 8));
    let seen: Vec<u64> = (0..4)
        .map(|_| recv(&rx, 5).json()["suppressed"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen,
        [7, 7, 7, 8],
        "the same alert three times, then the next one"
    );
    assert_eq!(s.finish(Instant::now() + Duration::from_secs(5)), 0);
    assert!(stats::get(&STATS.retries) >= retries + 2);
    assert!(rx.try_recv().is_err(), "no more requests");
}

#[test]
fn client_errors_are_not_retried() {
    let (base, rx) = recorder(vec![Act::Status(400, None, "bad payload")]);
    let s = Senders::start(
        &alerts(&format!("hook: {{ type: webhook, url: {base}/x }}\n")),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    s.dispatch(0, alert("r", 1));
    s.dispatch(0, alert("r", 2));
    assert_eq!(recv(&rx, 5).json()["suppressed"], 1);
    assert_eq!(
        recv(&rx, 5).json()["suppressed"],
        2,
        "the 400 was final: the next alert comes next"
    );
    assert_eq!(s.finish(Instant::now() + Duration::from_secs(5)), 0);
}

#[test]
fn failure_classification() {
    let hook = |url: &str, extra: &str| {
        let a = alerts(&format!(
            "h: {{ type: webhook, url: \"{url}\", timeout: 300ms, max_attempts: 1{extra} }}\n"
        ));
        let AlertCfg::Webhook(w) = &a["h"] else {
            unreachable!()
        };
        webhook::Webhook::new("h", w).unwrap()
    };
    let a = alert("r", 0);
    let (base, _rx) = recorder(vec![
        Act::Status(429, Some(3), ""),
        Act::Status(503, Some(2), "down"),
        Act::Status(500, Some(2), ""),
        Act::Status(404, None, "no route for /hooks/s3cr3t-path"),
        Act::Hang,
        Act::Status(301, None, ""),
    ]);
    let mut h = hook(&format!("{base}/hooks/s3cr3t-path"), "");
    let f = h.deliver(&a, None).unwrap_err();
    assert_eq!(
        (f.retryable, f.retry_after),
        (true, Some(Duration::from_secs(3))),
        "{f:?}"
    );
    assert!(f.reason.starts_with("HTTP 429"), "{f:?}");
    let f = h.deliver(&a, None).unwrap_err();
    assert_eq!(
        (f.retryable, f.retry_after, f.reason.as_str()),
        (
            true,
            Some(Duration::from_secs(2)),
            "HTTP 503 Service Unavailable: down"
        )
    );
    let f = h.deliver(&a, None).unwrap_err();
    assert_eq!(
        (f.retryable, f.retry_after),
        (true, None),
        "Retry-After only counts on 429 and 503"
    );
    let f = h.deliver(&a, None).unwrap_err();
    assert!(!f.retryable, "{f:?}");
    assert!(
        f.reason.starts_with("HTTP 404 Not Found") && !f.reason.contains("s3cr3t"),
        "{f:?}"
    );
    let t0 = Instant::now();
    let f = h.deliver(&a, None).unwrap_err();
    assert!(f.retryable && f.reason == "no answer within 300ms", "{f:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the 300ms timeout holds"
    );
    let f = h.deliver(&a, None).unwrap_err();
    assert_eq!(
        (f.retryable, f.reason.as_str()),
        (false, "HTTP 301 Moved Permanently"),
        "redirects are not followed"
    );

    // Nobody listening: connection refused, retryable, URL secrets scrubbed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut h = hook(
        &format!("http://user:pa55word@127.0.0.1:{port}/hooks/s3cr3t?token=t0psecret"),
        ", headers: { X-Key: hdr-s3cret }",
    );
    let f = h.deliver(&a, None).unwrap_err();
    assert!(f.retryable, "{f:?}");
    assert!(f.reason.contains("connection refused"), "{f:?}");
    for secret in ["s3cr3t", "t0psecret", "pa55word", "hdr-s3cret"] {
        assert!(!f.reason.contains(secret), "{secret} in {f:?}");
    }
}

#[test]
fn bad_headers_are_refused_at_start_without_showing_the_value() {
    let e = Senders::start(&alerts("h: { type: webhook, url: \"http://127.0.0.1:9/\", headers: { \"X-Key\": \"s3cret\\nX: y\" } }\n"), false, false, &crate::event::Stop::new()).err().unwrap();
    assert!(e.contains("X-Key") && !e.contains("s3cret"), "{e}");
    let e = Senders::start(
        &alerts(
            "h: { type: webhook, url: \"http://127.0.0.1:9/\", headers: { \"Bad Name\": v } }\n",
        ),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .err()
    .unwrap();
    assert!(e.contains("Bad Name"), "{e}");
}

#[test]
fn retry_after_is_honoured() {
    let (base, rx) = recorder(vec![Act::Status(429, Some(1), "slow down")]);
    let s = Senders::start(
        &alerts(&format!("hook: {{ type: webhook, url: {base}/x }}\n")),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    s.dispatch(0, alert("r", 1));
    let first = recv(&rx, 5);
    let second = recv(&rx, 5);
    let gap = second.at.duration_since(first.at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    assert_eq!(s.finish(Instant::now() + Duration::from_secs(5)), 0);
}

#[test]
fn finish_cuts_a_backoff_short_and_counts_what_is_left() {
    // Always 429 with a long Retry-After: the sender sleeps in its backoff.
    let script = vec![Act::Status(429, Some(30), ""); 10];
    let (base, rx) = recorder(script);
    let s = Senders::start(
        &alerts(&format!("hook: {{ type: webhook, url: {base}/x }}\n")),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    for n in 0..3 {
        s.dispatch(0, alert("r", n));
    }
    recv(&rx, 5);
    let t0 = Instant::now();
    let left = s.finish(Instant::now() + Duration::from_millis(500));
    assert!(
        t0.elapsed() < Duration::from_millis(450),
        "a 30 s Retry-After cannot end before the deadline: give up at once ({:?})",
        t0.elapsed()
    );
    assert_eq!(left, 3, "the one in its backoff and the two queued");
}

#[test]
fn finish_does_not_wait_past_the_deadline_for_a_hanging_webhook() {
    let (base, rx) = recorder(vec![Act::Hang; 10]);
    let s = Senders::start(
        &alerts(&format!(
            "hook: {{ type: webhook, url: {base}/x, timeout: 30s }}\n"
        )),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    s.dispatch(0, alert("r", 1));
    recv(&rx, 5);
    let t0 = Instant::now();
    assert_eq!(s.finish(Instant::now() + Duration::from_millis(300)), 1);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_full_queue_drops_without_blocking() {
    let (base, rx) = recorder(vec![Act::Hang; 10]);
    let s = Senders::start(
        &alerts(&format!(
            "hook: {{ type: webhook, url: {base}/x, queue: 2, timeout: 30s }}\n"
        )),
        false,
        false,
        &crate::event::Stop::new(),
    )
    .unwrap();
    let before = stats::get(&STATS.alerts_dropped_queue_full);
    s.dispatch(0, alert("r", 0));
    recv(&rx, 5); // in flight, hanging
    let t0 = Instant::now();
    for n in 1..=10 {
        s.dispatch(0, alert("r", n));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "dispatch never waits"
    );
    assert!(stats::get(&STATS.alerts_dropped_queue_full) >= before + 8);
    // 1 in flight + 2 queued.
    assert_eq!(s.finish(Instant::now() + Duration::from_millis(100)), 3);
}

#[test]
fn deadline_sleep() {
    let (d, wake, at) = Deadline::none();
    assert!(d.remaining().is_none() && !d.passed());
    let t0 = Instant::now();
    assert!(d.sleep(Duration::from_millis(30)));
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // A deadline 200ms away: a 100ms sleep is fine, a 10s one gives up at once.
    at.set(Instant::now() + Duration::from_millis(200)).unwrap();
    drop(wake);
    let t0 = Instant::now();
    assert!(d.sleep(Duration::from_millis(100)));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(!d.sleep(Duration::from_secs(10)));
    assert!(t0.elapsed() < Duration::from_millis(50));
}

#[test]
fn a_sleeping_sender_wakes_when_the_deadline_is_set() {
    let (d, wake, at) = Deadline::none();
    let h = std::thread::spawn(move || {
        let t0 = Instant::now();
        (d.sleep(Duration::from_secs(20)), t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    at.set(Instant::now() + Duration::from_millis(100)).unwrap();
    drop(wake);
    let (slept, took) = h.join().unwrap();
    assert!(!slept && took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn send_test_reports_redacted_errors() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        "alerts:\n  h: {{ type: webhook, url: \"http://127.0.0.1:{port}/s3cr3t-hook\" }}\n"
    );
    let raw = crate::config::parse_str(&yaml, "c.yaml").unwrap();
    let cfg = crate::config::validate(raw, &yaml, "c.yaml", None, &Default::default()).unwrap();
    let e = send_test("h", &cfg.alerts["h"], &cfg, false).unwrap_err();
    assert!(
        e.contains("connection refused") && !e.contains("s3cr3t"),
        "{e}"
    );

    let (base, rx) = recorder(vec![]);
    let yaml = format!(
        "identity: {{ name: box1 }}\nalerts:\n  h: {{ type: webhook, url: \"{base}/ok\" }}\n"
    );
    let raw = crate::config::parse_str(&yaml, "c.yaml").unwrap();
    let cfg = crate::config::validate(raw, &yaml, "c.yaml", None, &Default::default()).unwrap();
    send_test("h", &cfg.alerts["h"], &cfg, false).unwrap();
    let v = recv(&rx, 5).json();
    assert_eq!(
        (
            v["rule"].as_str(),
            v["message"].as_str(),
            v["line"].as_str()
        ),
        (
            Some("test"),
            Some("tinywatcher test alert from box1"),
            Some("tinywatcher test alert from box1")
        )
    );
}
