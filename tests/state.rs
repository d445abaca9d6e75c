//! `--once` and `--state` through the real binary: each scenario writes
//! sequence-numbered lines, runs tinywatcher more than once over them (with
//! rotations, truncation, a kill -9 in between) and checks that every number
//! was alerted exactly once across the runs; bad state files are reported and
//! cost a fresh start, never a crash.

use crate::util::{append, run, wait_for, TempDir, Watcher};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

fn seq(r: std::ops::RangeInclusive<u32>) -> String {
    r.map(|i| format!("SEQ-{i:06} something happened\n"))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The sequence numbers alerted in `out`, in order.
fn numbers(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| {
            l.split("SEQ-")
                .nth(1)
                .and_then(|r| r.get(..6))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// How often each number was alerted.
fn counts(nums: &[u32]) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for &n in nums {
        *m.entry(n).or_default() += 1;
    }
    m
}

/// `watch --once --state STATE --file FILE --rule SEQ-`: (exit code, numbers, stderr).
fn once(state: &Path, file: &Path) -> (i32, Vec<u32>, String) {
    let (code, out, err) = run(&[
        "watch",
        "--once",
        "--state",
        s(state),
        "--file",
        s(file),
        "--rule",
        "SEQ-",
    ]);
    (code, numbers(&out), err)
}

fn range(r: std::ops::RangeInclusive<u32>) -> Vec<u32> {
    r.collect()
}

#[test]
fn once_twice_across_a_rename_rotation() {
    let d = TempDir::new("st-rot");
    let log = d.write("app.log", &seq(1..=100));
    let st = d.path("state");
    let (code, got, err) = once(&st, &log);
    assert_eq!(code, 0, "{err}");
    assert_eq!(got, range(1..=100));
    append(&log, &seq(101..=150));
    std::fs::rename(&log, d.path("app.log.1")).unwrap();
    d.write("app.log", &seq(151..=200));
    let (code, got, err) = once(&st, &log);
    assert_eq!(code, 0, "{err}");
    // The rotated file's rest first, then the new file from its start.
    assert_eq!(got, range(101..=200), "{err}");
    assert!(
        err.contains("rotated") && err.contains("app.log.1"),
        "{err}"
    );
    // Nothing new: no alert, exit 1.
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, got.len()), (1, 0), "{err}");
}

#[test]
fn once_twice_across_a_copytruncate() {
    let d = TempDir::new("st-ct");
    let log = d.write("app.log", &seq(1..=100));
    let st = d.path("state");
    let (code, got, _) = once(&st, &log);
    assert_eq!((code, got), (0, range(1..=100)));
    // logrotate copytruncate: copy, then truncate in place; the writer goes on.
    std::fs::copy(&log, d.path("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &seq(101..=130));
    let (code, got, err) = once(&st, &log);
    assert_eq!(code, 0, "{err}");
    assert_eq!(got, range(101..=130), "{err}");
    // Truncated to fewer bytes than the saved position, then more lines than before.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &seq(131..=300));
    let (code, got, err) = once(&st, &log);
    assert_eq!(code, 0, "{err}");
    assert_eq!(got, range(131..=300), "{err}");
}

/// Lines appended after a `--once` run, then a copytruncate: the copy
/// (`app.log.1`, a new inode) is found by its first bytes and its rest read
/// before the truncated file is read from its start.
#[test]
fn once_twice_across_a_copytruncate_with_lines_appended_in_between() {
    let d = TempDir::new("st-ct2");
    let log = d.write("app.log", &seq(1..=100));
    let st = d.path("state");
    let copy = d.path("app.log.1");
    let truncate = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap()
    };
    let mut all = Vec::new();
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, &got), (0, &range(1..=100)), "{err}");
    all.extend(got);
    // Written between the runs, then copied away and truncated, then more.
    append(&log, &seq(101..=110));
    std::fs::copy(&log, &copy).unwrap();
    truncate();
    append(&log, &seq(111..=130));
    let (code, got, err) = once(&st, &log);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        got,
        range(101..=130),
        "the copy's rest first, then the file from its start: {err}"
    );
    assert!(err.contains("app.log.1"), "{err}");
    all.extend(got);
    // A plain copytruncate, nothing written in between: the copy has nothing
    // beyond the saved position, so nothing is alerted twice.
    std::fs::copy(&log, &copy).unwrap();
    truncate();
    append(&log, &seq(131..=140));
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, &got), (0, &range(131..=140)), "{err}");
    all.extend(got);
    // Copied away and removed (not truncated): a new file at the path; the copy is still found.
    append(&log, &seq(141..=145));
    std::fs::copy(&log, &copy).unwrap();
    std::fs::remove_file(&log).unwrap();
    d.write("app.log", &seq(146..=150));
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, &got), (0, &range(141..=150)), "{err}");
    all.extend(got);
    // Rewritten in place, no copy of it anywhere: read from its start.
    std::fs::write(&log, seq(151..=155)).unwrap();
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, &got), (0, &range(151..=155)), "{err}");
    all.extend(got);
    let c = counts(&all);
    assert!(
        (1..=155).all(|n| c.get(&n) == Some(&1)),
        "each number exactly once: {c:?}"
    );
    assert_eq!(c.len(), 155);
    // Nothing new: no alert.
    let (code, got, err) = once(&st, &log);
    assert_eq!((code, got.len()), (1, 0), "{err}");
}

#[test]
fn once_without_state_reads_from_the_start_and_exit_codes() {
    let d = TempDir::new("st-nost");
    let log = d.write("app.log", &format!("{}no match here\n", seq(1..=3)));
    // No state: the whole file, every time.
    for _ in 0..2 {
        let (code, out, err) = run(&["watch", "--once", "--file", s(&log), "--rule", "SEQ-"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(numbers(&out), range(1..=3));
    }
    let (code, out, _) = run(&["watch", "--once", "--file", s(&log), "--rule", "NOTHING"]);
    assert_eq!((code, out.as_str()), (1, ""));
    // state_file from the config; a growing file, a partial last line held for the next run.
    let st = d.path("st.json");
    let cfg = d.write(
        "c.yaml",
        &format!(
            "identity: {{ name: t }}\nstate_file: {:?}\ninputs:\n  files: [{:?}]\nalerts:\n  c: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: \"SEQ-\", alert: c, cooldown: 0 }}\n",
            s(&st),
            s(&log)
        ),
    );
    let cfg_once = || {
        let (code, out, err) = run(&["watch", "--once", "--config", s(&cfg)]);
        (code, numbers(&out), err)
    };
    assert_eq!(cfg_once().1, range(1..=3));
    assert!(st.is_file());
    assert_eq!(cfg_once().0, 1);
    append(&log, &format!("{}SEQ-000006 still being writ", seq(4..=5)));
    assert_eq!(cfg_once().1, range(4..=5));
    append(&log, "ten\n");
    let (code, got, err) = cfg_once();
    assert_eq!((code, got), (0, vec![6]), "{err}");
}

#[test]
fn once_over_a_glob_and_stdin() {
    let d = TempDir::new("st-glob");
    d.write("a.log", &seq(1..=10));
    d.write("b.log", &seq(11..=20));
    let st = d.path("state");
    let pat = d.path("*.log");
    let (code, got, err) = once(&st, &pat);
    assert_eq!(code, 0, "{err}");
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, range(1..=20));
    append(&d.path("b.log"), &seq(21..=22));
    d.write("c.log", &seq(23..=24));
    let (_, mut got, err) = once(&st, &pat);
    got.sort();
    assert_eq!(got, range(21..=24), "{err}");

    use std::io::Write;
    let mut c = std::process::Command::new(crate::util::BIN)
        .args(["watch", "--once", "--file", "-", "--rule", "SEQ-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(seq(1..=5).as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(numbers(&String::from_utf8_lossy(&o.stdout)), range(1..=5));
}

#[test]
fn watch_state_resumes_after_a_clean_stop() {
    let d = TempDir::new("st-term");
    let log = d.write("app.log", "");
    let st = d.path("state");
    let args = [
        "watch",
        "--state",
        s(&st),
        "--file",
        s(&log),
        "--rule",
        "SEQ-",
    ];
    let mut w = Watcher::start(&args);
    w.wait_err("watching", T);
    append(&log, &seq(1..=10));
    w.wait_out("SEQ-000010", T);
    assert_eq!(w.stop().code(), Some(0));
    let first = numbers(&w.stdout().join("\n"));
    // Written while tinywatcher was not running: alerted after the restart
    // although files start at their end without state.
    append(&log, &seq(11..=20));
    let mut w = Watcher::start(&args);
    w.wait_out("SEQ-000020", T);
    append(&log, &seq(21..=25));
    w.wait_out("SEQ-000025", T);
    assert_eq!(w.stop().code(), Some(0));
    let mut all = first;
    all.extend(numbers(&w.stdout().join("\n")));
    assert_eq!(all, range(1..=25));
}

/// The position saved for `log` in the state file at `st`, if any.
fn saved_pos(st: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(st).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["files"].as_object()?.values().next()?["pos"].as_u64()
}

#[test]
fn kill_9_in_the_middle_of_watch_state_loses_nothing() {
    let d = TempDir::new("st-kill");
    let log = d.write("app.log", "");
    let st = d.path("state");
    let args = [
        "watch",
        "--state",
        s(&st),
        "--file",
        s(&log),
        "--rule",
        "SEQ-",
    ];
    let mut w = Watcher::start(&args);
    w.wait_err("watching", T);
    // 5000 lines in bursts of 50 every 40 ms (~4 s), while we kill it halfway.
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut times = Vec::new();
            for b in 0..100u32 {
                append(&log, &seq(b * 50 + 1..=b * 50 + 50));
                times.push((Instant::now(), b * 50 + 50));
                std::thread::sleep(Duration::from_millis(40));
            }
            times
        })
    };
    wait_for(T, "alerts out and a position saved", || {
        w.count_out("SEQ-") >= 3000 && saved_pos(&st).is_some_and(|p| p > 0)
    });
    w.child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    w.wait(T);
    let run1 = numbers(&w.stdout().join("\n"));
    let times = writer.join().unwrap();
    append(&log, &seq(5001..=6000));
    let mut w = Watcher::start(&args);
    w.wait_out("SEQ-006000", T);
    assert_eq!(w.stop().code(), Some(0));
    let run2 = numbers(&w.stdout().join("\n"));

    let mut all = run1.clone();
    all.extend(&run2);
    let c = counts(&all);
    let lost: Vec<u32> = (1..=6000).filter(|n| !c.contains_key(n)).collect();
    assert!(
        lost.is_empty(),
        "lost {} line(s), e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(c.keys().all(|&n| (1..=6000).contains(&n)));
    // Repeated: only lines after the last save, which writes what was matched
    // a tick (1 s) before it, at most a second before the kill.
    let dups: Vec<u32> = c.iter().filter(|(_, &k)| k > 1).map(|(&n, _)| n).collect();
    eprintln!(
        "run 1: {} alerts (last {:?}); run 2: {}; repeated: {}",
        run1.len(),
        run1.last(),
        run2.len(),
        dups.len()
    );
    let recent = times
        .iter()
        .filter(|(t, _)| *t + Duration::from_millis(2500) >= killed)
        .map(|(_, n)| *n)
        .next()
        .map_or(0, |first_recent| first_recent - 50);
    assert!(
        dups.iter().all(|&n| n > recent),
        "repeated lines from before {recent} (kill at {}): {:?}",
        run1.last().unwrap(),
        &dups[..dups.len().min(10)]
    );
    assert!(
        w.stderr().iter().any(|l| l.contains("resuming at byte")),
        "{:?}",
        w.stderr()
    );
}

#[test]
fn a_corrupt_state_file_is_a_warning_and_a_fresh_start() {
    let d = TempDir::new("st-bad");
    let log = d.write("app.log", &seq(1..=5));
    let st = d.path("state");
    let good = {
        once(&st, &log);
        std::fs::read_to_string(&st).unwrap()
    };
    for (what, text) in [
        ("garbage", "\u{1}\u{2}garbage, not JSON".to_string()),
        ("truncated", good[..good.len() / 2].to_string()),
        (
            "version 999",
            good.replace("\"version\":1", "\"version\":999"),
        ),
        ("empty", String::new()),
    ] {
        std::fs::write(&st, &text).unwrap();
        let (code, got, err) = once(&st, &log);
        assert_eq!(code, 0, "{what}: {err}");
        assert_eq!(
            got,
            range(1..=5),
            "{what}: a fresh start reads the file from its start"
        );
        assert!(
            err.contains("WARN") && err.contains(s(&st)) && err.contains("starting fresh"),
            "{what}: {err}"
        );
        if what == "version 999" {
            assert!(err.contains("version 999"), "{err}");
        }
        // ...and the file is good again.
        assert_eq!(once(&st, &log).0, 1, "{what}");
    }
}

#[test]
fn a_state_entry_for_a_file_that_no_longer_exists_costs_only_that_file() {
    let d = TempDir::new("st-gone");
    let a = d.write("a.log", &seq(1..=5));
    let b = d.write("b.log", &seq(6..=10));
    let st = d.path("state");
    let cfg = d.write(
        "c.yaml",
        &format!(
            "inputs:\n  files: [{:?}, {:?}]\nalerts:\n  c: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: \"SEQ-\", alert: c, cooldown: 0 }}\n",
            s(&a),
            s(&b)
        ),
    );
    let go = || {
        let (code, out, err) = run(&["watch", "--once", "--state", s(&st), "--config", s(&cfg)]);
        let mut n = numbers(&out);
        n.sort();
        (code, n, err)
    };
    assert_eq!(go().1, range(1..=10));
    std::fs::remove_file(&a).unwrap();
    append(&b, &seq(11..=12));
    let (code, got, err) = go();
    assert_eq!((code, got), (0, range(11..=12)), "{err}");
    assert!(
        err.contains("WARN")
            && err.contains(s(&st))
            && err.contains(&format!("{} no longer exists", s(&a))),
        "{err}"
    );
    // It comes back: a new file, read from its start.
    std::fs::write(&a, seq(13..=14)).unwrap();
    let (code, got, err) = go();
    assert_eq!((code, got), (0, range(13..=14)), "{err}");
}

#[test]
fn a_state_directory_that_is_not_writable_is_exit_2_at_start() {
    let d = TempDir::new("st-nowr");
    let log = d.write("app.log", &seq(1..=3));
    // A regular file as the directory: not writable even for root.
    let file = d.write("file.txt", "");
    let st = file.join("state");
    for extra in [&["--once"][..], &[][..]] {
        let t = Instant::now();
        let mut args = vec![
            "watch",
            "--state",
            s(&st),
            "--file",
            s(&log),
            "--rule",
            "SEQ-",
        ];
        args.extend(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "nothing read before the error: {out}");
        assert!(
            err.contains(s(&st)) && err.contains("cannot write"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    let (code, _, err) = run(&[
        "watch",
        "--state",
        s(d.0.as_path()),
        "--file",
        s(&log),
        "--rule",
        "SEQ-",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn once_with_only_a_stream_is_exit_2() {
    let (code, out, err) = run(&[
        "watch",
        "--once",
        "--stream",
        "tcp://127.0.0.1:9",
        "--rule",
        "x",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("--once") && err.contains("--file"), "{err}");
}

#[test]
fn once_keeps_cooldown_and_threshold_within_a_run() {
    let d = TempDir::new("st-cool");
    let log = d.write("app.log", &seq(1..=10));
    let cfg = d.write(
        "c.yaml",
        &format!(
            "inputs:\n  files: [{:?}]\nalerts:\n  c: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: \"SEQ-\", alert: c, cooldown: 60 }}\n  - {{ name: t, pattern: \"SEQ-00000[5-9]\", alert: c, cooldown: 0, threshold: \"3 in 1m\" }}\n",
            s(&log)
        ),
    );
    let (code, out, err) = run(&["watch", "--once", "--config", s(&cfg)]);
    assert_eq!(code, 0, "{err}");
    let r: Vec<&str> = out.lines().filter(|l| l.contains("[r]")).collect();
    let t: Vec<&str> = out.lines().filter(|l| l.contains("[t]")).collect();
    assert_eq!(r.len(), 1, "{out}");
    assert!(r[0].contains("SEQ-000001"), "{out}");
    assert_eq!(
        t.len(),
        1,
        "the 3rd of 5..9 fires, then the window starts over: {out}"
    );
    assert!(t[0].contains("SEQ-000007"), "{out}");
}
