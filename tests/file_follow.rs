//! Following files through the real binary, `tail -F` style: rotation by
//! rename, copytruncate, delete and recreate, truncation, globs, missing
//! files, read_from, partial lines, huge lines, bad bytes, a path replaced by
//! a directory, permission denied, and stdin. Every scenario writes
//! sequence-numbered lines and checks each alert arrives exactly once.

use crate::util::{append, stdout_config, wait_for, TempDir, Watcher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn seq(r: std::ops::RangeInclusive<u32>) -> String {
    r.map(|i| format!("SEQ-{i:06} something happened\n"))
        .collect()
}

/// A config following `files` (path, read_from) whose rule matches `SEQ-`.
fn config(d: &TempDir, files: &[(&Path, &str)]) -> PathBuf {
    let mut s = String::from("identity: { name: test }\ninputs:\n  files:\n");
    for (p, rf) in files {
        s.push_str(&format!(
            "    - {{ path: {:?}, read_from: {rf} }}\n",
            p.to_str().unwrap()
        ));
    }
    s.push_str("alerts:\n  console: { type: stdout }\nrules:\n  - name: r\n    pattern: \"SEQ-\"\n    alert: console\n    cooldown: 0\n");
    d.write("cfg.yaml", &s)
}

/// Start on `cfg` and wait until the file input has looked at `ready` (a
/// path it follows or waits for, as it appears in the log).
fn start(cfg: &Path, ready: &str) -> Watcher {
    let w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("watching", T);
    w.wait_err(ready, T);
    w
}

/// Every line of `r` alerted exactly once (and nothing else with SEQ-).
fn each_once(w: &Watcher, r: std::ops::RangeInclusive<u32>) {
    let last = format!("SEQ-{:06} ", r.end());
    w.wait_out(&last, T);
    for i in r.clone() {
        let n = w.count_out(&format!("SEQ-{i:06} "));
        assert_eq!(n, 1, "SEQ-{i:06}: {n} alerts; stdout: {:?}", w.stdout());
    }
    let total = w.count_out("SEQ-");
    assert_eq!(total, r.count(), "stdout: {:?}", w.stdout());
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn rotation_by_rename() {
    let d = TempDir::new("ff-rot");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    let mut old = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    old.write_all(seq(1..=50).as_bytes()).unwrap();
    std::fs::rename(&p, d.path("app.log.1")).unwrap();
    // The application still writes to its old file until it reopens.
    old.write_all(seq(51..=55).as_bytes()).unwrap();
    append(&p, &seq(56..=100));
    each_once(&w, 1..=100);
}

#[test]
fn copytruncate() {
    let d = TempDir::new("ff-ct");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    append(&p, &seq(1..=100));
    w.wait_out("SEQ-000100 ", T);
    std::fs::copy(&p, d.path("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, &seq(101..=120));
    each_once(&w, 1..=120);
    w.wait_err("truncated", T);
}

#[test]
fn truncate_to_zero() {
    let d = TempDir::new("ff-tz");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    append(&p, &seq(1..=30));
    w.wait_out("SEQ-000030 ", T);
    std::fs::write(&p, "").unwrap(); // `> app.log`
    append(&p, &seq(31..=35));
    each_once(&w, 1..=35);
}

#[test]
fn delete_and_recreate() {
    let d = TempDir::new("ff-del");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    append(&p, &seq(1..=20));
    w.wait_out("SEQ-000020 ", T);
    std::fs::remove_file(&p).unwrap();
    append(&p, &seq(21..=40));
    each_once(&w, 1..=40);
}

#[test]
fn glob_new_file_and_removed_file() {
    let d = TempDir::new("ff-glob");
    let a = d.write("a.log", "SEQ-999999 old content, before start\n");
    let pattern = d.path("*.log");
    let w = start(
        &config(&d, &[(&pattern, "end")]),
        &format!("following {}", s(&a)),
    );
    append(&a, &seq(1..=5));
    w.wait_out("SEQ-000005 ", T);
    // A new match is read from its beginning.
    std::fs::write(d.path("b.log"), seq(6..=10)).unwrap();
    std::fs::write(d.path("b.txt"), "SEQ-888888 not matched by the glob\n").unwrap();
    w.wait_out("SEQ-000010 ", T);
    // A removed file is dropped; a file with that name later is new again.
    std::fs::remove_file(&a).unwrap();
    append(&d.path("b.log"), &seq(11..=12));
    w.wait_out("SEQ-000012 ", T);
    std::fs::write(&a, seq(13..=15)).unwrap();
    each_once(&w, 1..=15);
}

#[test]
fn missing_at_start_then_created() {
    let d = TempDir::new("ff-miss");
    let p = d.path("later.log");
    let w = start(&config(&d, &[(&p, "end")]), "waiting for it");
    assert_eq!(
        w.stderr()
            .iter()
            .filter(|l| l.contains("waiting for it"))
            .count(),
        1
    );
    // Created after start: read from its beginning, whatever read_from says.
    std::fs::write(&p, seq(1..=10)).unwrap();
    each_once(&w, 1..=10);
}

#[test]
fn read_from_beginning_vs_end() {
    let d = TempDir::new("ff-rf");
    let b = d.write("b.log", &seq(1..=3));
    let e = d.write("e.log", "SEQ-999999 before start, skipped\n");
    let w = start(
        &config(&d, &[(&b, "beginning"), (&e, "end")]),
        &format!("following {}", s(&e)),
    );
    w.wait_err(&format!("following {}", s(&b)), T);
    append(&e, &seq(4..=6));
    each_once(&w, 1..=6);
}

#[test]
fn partial_line_completed_later() {
    let d = TempDir::new("ff-part");
    let p = d.write("app.log", "");
    let sync = d.write("sync.log", "");
    let w = start(
        &config(&d, &[(&p, "end"), (&sync, "end")]),
        &format!("following {}", s(&sync)),
    );
    w.wait_err(&format!("following {}", s(&p)), T);
    append(&p, "SEQ-000001 par");
    // A line written after it, alerted, proves the partial line was read and held.
    append(&sync, &seq(2..=2));
    w.wait_out("SEQ-000002 ", T);
    assert_eq!(
        w.count_out("SEQ-000001"),
        0,
        "a partial line must not be matched: {:?}",
        w.stdout()
    );
    append(&p, "tial\n");
    w.wait_out("SEQ-000001 partial", T);
    each_once(&w, 1..=2);
}

/// A file truncated while a partial line is held: that line was written, so
/// it is a line of its own, not glued onto the first line after the truncation.
#[test]
fn truncated_with_a_partial_line_held() {
    let d = TempDir::new("ff-trpart");
    let p = d.write("t.log", "");
    let sync = d.write("sync.log", "");
    let cfg = d.write(
        "cfg.yaml",
        &format!(
            "identity: {{ name: test }}\ninputs:\n  files: [{:?}, {:?}]\nalerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: \"SEQ-|half-written|ERROR\", alert: console, cooldown: 0 }}\n",
            s(&p),
            s(&sync)
        ),
    );
    let w = start(&cfg, &format!("following {}", s(&sync)));
    w.wait_err(&format!("following {}", s(&p)), T);
    append(&p, &seq(1..=3));
    w.wait_out("SEQ-000003 ", T);
    append(&p, "half-written");
    // A line written after it, alerted, proves the partial line was read and held.
    append(&sync, &seq(4..=4));
    w.wait_out("SEQ-000004 ", T);
    std::fs::write(&p, "").unwrap(); // `: > t.log`
    append(&p, "ERROR fresh\n");
    w.wait_out("ERROR fresh", T);
    append(&sync, &seq(5..=5));
    each_once(&w, 1..=5);
    let out = w.stdout();
    let fresh: Vec<&String> = out.iter().filter(|l| l.contains("ERROR fresh")).collect();
    assert_eq!(fresh.len(), 1, "{out:?}");
    assert!(fresh[0].ends_with("]: ERROR fresh"), "{out:?}");
    let half: Vec<&String> = out.iter().filter(|l| l.contains("half-written")).collect();
    assert_eq!(half.len(), 1, "{out:?}");
    assert!(half[0].ends_with("]: half-written"), "{out:?}");
}

#[test]
fn huge_line_then_matching_line() {
    let d = TempDir::new("ff-huge");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"HUGE ").unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..50 {
        f.write_all(&block).unwrap();
    }
    f.write_all(b"\n").unwrap();
    f.write_all(seq(1..=1).as_bytes()).unwrap();
    each_once(&w, 1..=1);
}

#[test]
fn invalid_utf8_and_nul_in_a_matching_line() {
    let d = TempDir::new("ff-bytes");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"SEQ-000001 bad \xff\xfe bytes\n").unwrap();
    f.write_all(b"SEQ-000002 a \0 nul\n").unwrap();
    each_once(&w, 1..=2);
}

#[test]
fn replaced_by_a_directory_then_by_a_file() {
    let d = TempDir::new("ff-dir");
    let p = d.write("app.log", "");
    let w = start(&config(&d, &[(&p, "end")]), &format!("following {}", s(&p)));
    append(&p, &seq(1..=3));
    w.wait_out("SEQ-000003 ", T);
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    w.wait_err("is a directory", T);
    // Retried every second, but said once.
    let seen = w.stderr().len();
    wait_for(T, "two more rescans", || {
        w.stderr()
            .iter()
            .skip(seen)
            .filter(|l| l.contains("still is a directory"))
            .count()
            >= 2
    });
    assert_eq!(
        w.stderr()
            .iter()
            .filter(|l| l.contains("is a directory") && !l.contains("still"))
            .count(),
        1,
        "{:?}",
        w.stderr()
    );
    std::fs::remove_dir(&p).unwrap();
    append(&p, &seq(4..=6));
    each_once(&w, 1..=6);
}

#[test]
fn permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new("ff-perm");
    let p = d.write("app.log", "SEQ-999999 before start\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = unsafe { libc_geteuid() } == 0;
    let cfg = config(&d, &[(&p, "end")]);
    let w = if root {
        eprintln!("permission_denied: running as root, which ignores file modes; not checking the error message");
        start(&cfg, &format!("following {}", s(&p)))
    } else {
        let w = start(&cfg, "Permission denied");
        let seen = w.stderr().len();
        wait_for(T, "a retry", || {
            w.stderr()
                .iter()
                .skip(seen)
                .any(|l| l.contains("still cannot open"))
        });
        assert_eq!(
            w.stderr()
                .iter()
                .filter(|l| l.contains("Permission denied") && !l.contains("still"))
                .count(),
            1,
            "{:?}",
            w.stderr()
        );
        w
    };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    if !root {
        w.wait_err(&format!("following {}", s(&p)), T);
    }
    append(&p, &seq(1..=3));
    each_once(&w, 1..=3);
}

#[test]
fn stdin_lines_then_end_of_input_exits_0() {
    let d = TempDir::new("ff-stdin");
    let cfg = stdout_config(&d, &["-"], "SEQ-");
    let mut w = Watcher::start_with(&["watch", "--config", cfg.to_str().unwrap()], |c| {
        c.stdin(Stdio::piped());
    });
    let mut input = w.child.stdin.take().unwrap();
    input.write_all(seq(1..=4).as_bytes()).unwrap();
    input
        .write_all(b"SEQ-000005 last line without a newline ")
        .unwrap();
    drop(input);
    let status = w.wait(T);
    assert!(
        status.success(),
        "exit {status:?}; stderr: {:?}",
        w.stderr()
    );
    each_once(&w, 1..=5);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn truncated_and_rewritten_past_the_old_position_between_two_looks() {
    // `write` truncates and writes in one go: the follower never sees the
    // file shorter than its position; the changed first bytes tell it.
    let d = TempDir::new("ff-rewrite");
    let p = d.write("t.log", "");
    let cfg = d.write(
        "cfg.yaml",
        &format!(
            "identity: {{ name: test }}\ninputs:\n  files: [{:?}]\nalerts:\n  console: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: \"ERR \", alert: console, cooldown: 0 }}\n",
            s(&p)
        ),
    );
    let w = start(&cfg, &format!("following {}", s(&p)));
    append(&p, "ERR 1 first line\n");
    w.wait_out("ERR 1 first line", T);
    std::fs::write(&p, "ERR 2 after the truncation, longer than before\n").unwrap();
    w.wait_out("ERR 2 after the truncation, longer than before", T);
    let out = w.stdout();
    assert!(
        out.iter().all(|l| !l.contains("ERR")
            || l.ends_with("]: ERR 1 first line")
            || l.ends_with("]: ERR 2 after the truncation, longer than before")),
        "{out:?}"
    );
}
