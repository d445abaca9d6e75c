//! Shutdown in order: SIGTERM/SIGINT stop the inputs, the matcher drains, the
//! senders get `shutdown_timeout` to flush what is queued, exit 0; a second
//! signal exits at once.

use crate::fake::{Recorder, Reply};
use crate::util::{append, TempDir, Watcher};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn config(d: &TempDir, url: &str, shutdown_timeout: &str) -> String {
    let log = d.write("app.log", "");
    let yaml = format!(
        "identity: {{ name: t }}\nshutdown_timeout: {shutdown_timeout}\ninputs:\n  files: [{:?}]\nalerts:\n  hook: {{ type: webhook, url: {url:?}, timeout: 30s }}\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: ERROR\n    alert: [hook, console]\n    cooldown: 0\n",
        log.display().to_string()
    );
    d.write("c.yaml", &yaml).to_str().unwrap().to_string()
}

#[test]
fn sigterm_flushes_a_queued_alert() {
    // The first delivery fails, so the alert sits in the sender's retry when
    // SIGTERM arrives; it must still be delivered before the process exits.
    let rec = Recorder::start(vec![Reply::status(500)]);
    rec.set_default(Reply::status(200));
    let d = TempDir::new("sd");
    let cfg = config(&d, &rec.url("/hook"), "5s");
    let mut w = Watcher::start_with(&["watch", "--config", &cfg], |c| {
        c.env("TINYWATCHER_RETRY_BASE_MS", "400");
    });
    w.wait_err("watching", T);
    append(&d.path("app.log"), "ERROR one\n");
    let first = rec.expect(T, "the first attempt");
    assert!(first.body_str().contains("ERROR one"));
    w.signal(15);
    let second = rec.expect(T, "the retried delivery after SIGTERM");
    assert!(second.body_str().contains("ERROR one"));
    let status = w.wait(T);
    assert_eq!(status.code(), Some(0), "{:?}", w.stderr());
    assert_eq!(w.count_out("ALERT [t] [r]: ERROR one"), 1);
}

#[test]
fn sigterm_delivers_everything_queued() {
    // 500 alerts are queued for the webhook when SIGTERM arrives (stdout has
    // printed them all); within shutdown_timeout every one reaches the webhook.
    let rec = Recorder::start(vec![]);
    rec.set_default(Reply::status(200));
    let d = TempDir::new("sd");
    let cfg = config(&d, &rec.url("/hook"), "20s");
    let mut w = Watcher::start(&["watch", "--config", &cfg]);
    w.wait_err("watching", T);
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!("ERROR seq-{i:05}\n"));
    }
    append(&d.path("app.log"), &text);
    w.wait_out("seq-00499", T);
    let status = w.stop();
    assert_eq!(status.code(), Some(0));
    let got = rec.drain();
    assert_eq!(got.len(), 500, "webhook requests after shutdown");
    assert!(got.last().unwrap().body_str().contains("seq-00499"));
}

#[test]
fn a_second_signal_exits_at_once() {
    let rec = Recorder::start(vec![]);
    rec.set_default(Reply::Hang);
    let d = TempDir::new("sd");
    let cfg = config(&d, &rec.url("/hook"), "60s");
    let mut w = Watcher::start(&["watch", "--config", &cfg]);
    w.wait_err("watching", T);
    append(&d.path("app.log"), "ERROR stuck\n");
    rec.expect(T, "the hanging request");
    w.signal(15);
    w.wait_err("shutting down", T);
    let t = Instant::now();
    w.signal(15);
    let status = w.wait(T);
    assert_eq!(status.code(), Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn sigint_when_idle_exits_0_promptly() {
    let d = TempDir::new("sd");
    let log = d.write("app.log", "");
    let cfg = crate::util::stdout_config(&d, &[log.to_str().unwrap()], "ERROR");
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("watching", T);
    let t = Instant::now();
    w.signal(2);
    let status = w.wait(T);
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_stalled_stdout_does_not_hold_matching_back() {
    // Nobody reads our stdout: the pipe fills, then the stdout queue (8192).
    // After one 1 s wait, stdout alerts are dropped (counted) and matching
    // goes on: every line is matched and the run ends. (Waiting 1 s per alert
    // instead would take the remaining ~3000 alerts as many seconds.)
    let d = TempDir::new("stall");
    let text: String = (0..12_000).map(|i| format!("ERROR stall-{i}\n")).collect();
    let log = d.write("app.log", &text);
    let mut c = std::process::Command::new(crate::util::BIN)
        .args([
            "watch",
            "--once",
            "--file",
            log.to_str().unwrap(),
            "--rule",
            "ERROR",
        ])
        .env("RUST_LOG", "tinywatcher=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _stdout = c.stdout.take(); // never read
    let end = Instant::now() + Duration::from_secs(30);
    while c.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < end,
            "the run did not end: matching is held back by stdout"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("matches=12000"), "{err}");
    assert!(err.contains("alerts_dropped_queue_full="), "{err}");
}
