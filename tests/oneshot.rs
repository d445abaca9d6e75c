//! One-shot use from scripts and cron: `--until-match` (exit 0/1/2, stdout,
//! timeout, stdin) and `check` (last N lines, colour, summary, big files).

use crate::util::{append, run, TempDir, Watcher, BIN};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn until_match_on_a_line_already_there() {
    let d = TempDir::new("um");
    let f = d.write("app.log", "starting\nservice ready on :8080\nmore\n");
    let (code, out, err) = run(&[
        "watch",
        "--file",
        f.to_str().unwrap(),
        "--rule",
        "ready",
        "--until-match",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "service ready on :8080\n");
}

#[test]
fn until_match_on_a_line_appended_after_start() {
    let d = TempDir::new("um");
    let f = d.write("app.log", "booting\n");
    let mut w = Watcher::start(&[
        "watch",
        "--file",
        f.to_str().unwrap(),
        "--rule",
        "READY (?P<port>\\d+)",
        "--until-match",
        "--json",
    ]);
    w.wait_err("watching", Duration::from_secs(10));
    append(&f, "still booting\n");
    append(&f, "READY 8080\n");
    let status = w.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{:?}", w.stderr());
    let out = w.stdout();
    assert_eq!(out.len(), 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(v["line"], "READY 8080");
    assert_eq!(v["rule"], "rule");
    assert_eq!(v["captures"]["port"], "8080");
    assert!(v["source"].as_str().unwrap().starts_with("file:"));
    assert!(
        v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

#[test]
fn until_match_timeout_is_exit_1() {
    let d = TempDir::new("um");
    let f = d.write("app.log", "nothing here\n");
    let t = Instant::now();
    let (code, out, _) = run(&[
        "watch",
        "--file",
        f.to_str().unwrap(),
        "--rule",
        "ready",
        "--until-match",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn until_match_bad_timeout_and_no_rules_are_exit_2() {
    let (code, _, err) = run(&[
        "watch",
        "--file",
        "/dev/null",
        "--rule",
        "x",
        "--until-match",
        "--timeout",
        "soon",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--timeout"), "{err}");
    let d = TempDir::new("um");
    let c = d.write(
        "c.yaml",
        "inputs:\n  files: [/dev/null]\nalerts:\n  c: { type: stdout }\n",
    );
    let (code, _, err) = run(&["watch", "--config", c.to_str().unwrap(), "--until-match"]);
    assert_eq!(code, 2);
    assert!(err.contains("no rules"), "{err}");
}

#[test]
fn until_match_on_stdin() {
    let mut c = Command::new(BIN)
        .args(["watch", "--file", "-", "--rule", "FATAL", "--until-match"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"ok\nFATAL: disk gone\nafter\n").unwrap();
    // Keep stdin open: the match alone must end the run.
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "did not exit on the match");
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(stdin);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut c.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(out, "FATAL: disk gone\n");
}

#[test]
fn until_match_end_of_stdin_without_match_is_exit_1() {
    let o = Command::new(BIN)
        .args(["watch", "--file", "-", "--rule", "FATAL", "--until-match"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"fine\nall good\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

#[test]
fn until_match_prints_only_the_line_and_still_alerts_other_destinations() {
    // stdout gets the matched line alone (a script captures it); the rule's
    // webhook still gets its alert before the run ends.
    let rec = crate::fake::Recorder::start(vec![]);
    rec.set_default(crate::fake::Reply::status(200));
    let d = TempDir::new("um");
    let f = d.write("app.log", "x\nERROR boom\n");
    let c = d.write(
        "c.yaml",
        &format!(
            "identity: {{ name: t }}\ninputs:\n  files: [{f:?}]\nalerts:\n  console: {{ type: stdout }}\n  hook: {{ type: webhook, url: {:?} }}\nrules:\n  - name: err\n    pattern: ERROR\n    alert: [console, hook]\n",
            rec.url("/h")
        ),
    );
    let (code, out, err) = run(&["watch", "--config", c.to_str().unwrap(), "--until-match"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ERROR boom\n");
    let got = rec.drain();
    assert_eq!(got.len(), 1, "the webhook alert is delivered before exit");
    assert!(got[0].body_str().contains("ERROR boom"));
}

fn check_config(d: &TempDir, files: &[&str]) -> String {
    let mut s = String::from("inputs:\n  files:\n");
    for f in files {
        s.push_str(&format!("    - {f:?}\n"));
    }
    s.push_str("alerts:\n  c: { type: stdout }\nrules:\n  - name: errors\n    pattern: ERROR\n    alert: c\n  - name: slow\n    pattern: \"dur=[0-9]{4,}ms\"\n    alert: c\n  - name: never\n    text: NEVER-SEEN\n    alert: c\n");
    d.write("c.yaml", &s).to_str().unwrap().to_string()
}

#[test]
fn check_prints_hits_and_summary_without_colour() {
    let d = TempDir::new("ck");
    let f = d.write(
        "a.log",
        "ERROR old one\nok\nok dur=12ms\nERROR new one dur=5000ms\nok\n",
    );
    let c = check_config(&d, &[f.to_str().unwrap()]);
    let (code, out, err) = run(&["check", "--config", &c, "-n", "4", "--color", "never"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b'), "{out}");
    assert!(!out.contains("old one"), "only the last 4 lines: {out}");
    assert!(
        out.contains("[errors,slow] ERROR new one dur=5000ms"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["errors", "1"]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["never", "0"]),
        "{out}"
    );
}

#[test]
fn check_colour_always_highlights_the_match() {
    let d = TempDir::new("ck");
    let f = d.write("a.log", "an ERROR here\n");
    let c = check_config(&d, &[f.to_str().unwrap()]);
    let (code, out, _) = run(&["check", "--config", &c, "--color", "always"]);
    assert_eq!(code, 0);
    assert!(out.contains("an \x1b[1;31mERROR\x1b[0m here"), "{out:?}");
    // auto: stdout is a pipe here, so no colour; NO_COLOR too.
    let o = Command::new(BIN)
        .args(["check", "--config", &c])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains('\x1b'));
}

#[test]
fn check_nothing_matched_is_exit_1_and_file_narrows() {
    let d = TempDir::new("ck");
    let a = d.write("a.log", "all fine\n");
    let b = d.write("b.log", "ERROR in b\n");
    let c = check_config(&d, &[a.to_str().unwrap(), b.to_str().unwrap()]);
    let (code, out, _) = run(&["check", "--config", &c, "--file", a.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("ERROR in b"));
    let (code, out, _) = run(&["check", "--config", &c]);
    assert_eq!(code, 0);
    assert!(out.contains("ERROR in b"));
}

#[test]
fn check_a_large_file_reads_from_the_end() {
    // 200 MB of filler: reading it whole would take far longer than reading its tail.
    let d = TempDir::new("ck");
    let p = d.path("big.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        let line =
            "INFO filler line that matches nothing at all, padded to about a hundred bytes......\n";
        for _ in 0..(200_000_000 / line.len()) {
            f.write_all(line.as_bytes()).unwrap();
        }
        f.write_all(b"ERROR at the very end\n").unwrap();
    }
    let (code, out, err) = run(&[
        "check",
        "--file",
        p.to_str().unwrap(),
        "--rule",
        "ERROR",
        "-n",
        "10",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ERROR at the very end"));
    assert!(out.contains("10 line(s) checked"), "{out}");
    // It read a few blocks from the end, not 200 MB (it logs how much at debug).
    let o = Command::new(BIN)
        .args([
            "-v",
            "check",
            "--file",
            p.to_str().unwrap(),
            "--rule",
            "ERROR",
            "-n",
            "10",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let read: usize = err
        .lines()
        .find_map(|l| {
            l.split("read ")
                .nth(1)?
                .split(" bytes from the end")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no read log: {err}"));
    assert!(read < 1 << 20, "read {read} bytes for 10 lines");
}

#[test]
fn stdout_does_not_drop_a_burst_of_alerts() {
    // 50,000 matching lines at once: the stdout queue (8192) fills, and the
    // matcher waits for room instead of dropping (stdout is local and fast).
    let d = TempDir::new("burst");
    let text: String = (0..50_000).map(|i| format!("ERROR burst {i}\n")).collect();
    let f = d.write("app.log", &text);
    let o = Command::new(BIN)
        .args([
            "watch",
            "--once",
            "--file",
            f.to_str().unwrap(),
            "--rule",
            "ERROR",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().filter(|l| l.contains("ALERT")).count(), 50_000);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("dropped"));
}

#[test]
fn a_closed_stdout_ends_the_run_in_order_and_saves_state() {
    // `| head -1`: the pipe closes after the first alert; the run still saves
    // its state (exit 0), so the next run does not alert the same lines again.
    let d = TempDir::new("epipe");
    let text: String = (0..20_000).map(|i| format!("SEQ-{i}\n")).collect();
    let f = d.write("app.log", &text);
    let st = d.path("state.json");
    let args = [
        "-q",
        "watch",
        "--once",
        "--state",
        st.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
        "--rule",
        "SEQ-",
    ];
    let mut c = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(c.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(c.stdout.take()); // close the pipe, as `head` does
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(st.exists(), "no state saved");
    let o = Command::new(BIN).args(args).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "second run alerted again: {}",
        String::from_utf8_lossy(&o.stdout).lines().count()
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn two_runs_cannot_share_a_state_file() {
    // An overlapping cron run would alert the same lines twice: it is refused.
    let d = TempDir::new("lock");
    let f = d.write("app.log", "SEQ-1\n");
    let st = d.path("state.json");
    let (fs, ss) = (f.to_str().unwrap(), st.to_str().unwrap());
    let mut w = Watcher::start(&["watch", "--state", ss, "--file", fs, "--rule", "SEQ-"]);
    w.wait_err("watching", Duration::from_secs(10));
    let (code, _, err) = run(&[
        "watch", "--once", "--state", ss, "--file", fs, "--rule", "SEQ-",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use by another tinywatcher"), "{err}");
    assert!(w.stop().success());
    let (code, _, err) = run(&[
        "watch", "--once", "--state", ss, "--file", fs, "--rule", "SEQ-",
    ]);
    assert!(code == 0 || code == 1, "{err}");
}

#[test]
fn check_reads_the_last_lines_of_stdin() {
    let mut c = Command::new(BIN)
        .args(["check", "--file", "-", "--rule", "ERROR", "-n", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"ERROR old\nok\nERROR new\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("stdin [rule] ERROR new") && !out.contains("ERROR old"),
        "{out}"
    );
    let (code, _, err) = run(&["check", "--stream", "http://127.0.0.1:9/", "--rule", "x"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["check", "--file", "/surely/not/here.log", "--rule", "x"]);
    assert_eq!(
        code, 2,
        "nothing could be read is an error, not 'no match': {err}"
    );
}
