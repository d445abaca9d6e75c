//! Rule semantics through the real binary: threshold, cooldown with the
//! suppressed count, exclude, sources, ignore_case and message templates.
//! Ordering is proven with a sentinel rule: lines are matched in order, so
//! once the sentinel's alert is out, every earlier line was matched.

use crate::util::{append, TempDir, Watcher};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

const RULES: &str = r#"
  - name: sentinel
    text: SENTINEL
    alert: console
    cooldown: 0
  - name: burst
    pattern: "BURST"
    threshold: "3 in 10s"
    cooldown: 0
    alert: console
  - name: cool
    pattern: 'COOL-(?P<n>\d+)'
    cooldown: 700ms
    alert: console
    message: "cool {n} after {suppressed} suppressed on {identity} from {source}"
  - name: quiet
    pattern: 'DB (\w+) failed'
    exclude: "health-check"
    ignore_case: true
    alert: console
    cooldown: 0
    message: "db {1}: {line}"
  - name: only_a
    text: "ONLY-A"
    sources: { files: ["@DIR@/a*.log"] }
    alert: console
    cooldown: 0
"#;

fn start(d: &TempDir) -> Watcher {
    let a = d.write("a.log", "");
    let b = d.write("b.log", "");
    let cfg = format!(
        "identity: {{ name: box }}\ninputs:\n  files: [{:?}, {:?}]\nalerts:\n  console: {{ type: stdout, json: true }}\nrules:{}",
        a.display().to_string(),
        b.display().to_string(),
        RULES.replace("@DIR@", d.0.to_str().unwrap())
    );
    let c = d.write("c.yaml", &cfg);
    let w = Watcher::start(&["watch", "--config", c.to_str().unwrap()]);
    w.wait_err("watching", T);
    w
}

fn alerts(w: &Watcher, rule: &str) -> Vec<serde_json::Value> {
    w.stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["rule"] == rule)
        .collect()
}

/// Append `text` then a sentinel line, and wait until the sentinel is alerted.
fn feed(w: &Watcher, d: &TempDir, file: &str, text: &str, tag: &str) {
    append(&d.path(file), &format!("{text}SENTINEL {tag}\n"));
    w.wait_out(&format!("SENTINEL {tag}"), T);
}

#[test]
fn threshold_fires_on_the_nth_match_in_the_window() {
    let d = TempDir::new("rules");
    let w = start(&d);
    feed(&w, &d, "a.log", "BURST 1\nBURST 2\n", "s1");
    assert!(alerts(&w, "burst").is_empty(), "fired below the threshold");
    feed(&w, &d, "a.log", "BURST 3\n", "s2");
    let got = alerts(&w, "burst");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["line"], "BURST 3");
    // The count starts again: two more do not fire.
    feed(&w, &d, "a.log", "BURST 4\nBURST 5\n", "s3");
    assert_eq!(alerts(&w, "burst").len(), 1);
}

#[test]
fn cooldown_counts_and_reports_suppressed_matches() {
    let d = TempDir::new("rules");
    let w = start(&d);
    feed(&w, &d, "a.log", "COOL-1\nCOOL-2\nCOOL-3\n", "s1");
    let got = alerts(&w, "cool");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["suppressed"], 0);
    // Wait out the 700 ms cooldown (a known time, not a guess), then match again.
    std::thread::sleep(Duration::from_millis(800));
    feed(&w, &d, "a.log", "COOL-4\n", "s2");
    let got = alerts(&w, "cool");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["suppressed"], 2);
    let src = format!("file:{}", d.path("a.log").display());
    assert_eq!(
        got[1]["message"],
        format!("cool 4 after 2 suppressed on box from {src}")
    );
    assert_eq!(got[1]["captures"]["n"], "4");
}

#[test]
fn exclude_ignore_case_and_numbered_captures() {
    let d = TempDir::new("rules");
    let w = start(&d);
    feed(
        &w,
        &d,
        "a.log",
        "db primary FAILED during health-check\ndb replica Failed hard\n",
        "s1",
    );
    let got = alerts(&w, "quiet");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["message"], "db replica: db replica Failed hard");
}

#[test]
fn sources_limit_a_rule_to_some_files() {
    let d = TempDir::new("rules");
    let w = start(&d);
    feed(&w, &d, "b.log", "ONLY-A from b\n", "s1");
    feed(&w, &d, "a.log", "ONLY-A from a\n", "s2");
    let got = alerts(&w, "only_a");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["line"], "ONLY-A from a");
}

#[test]
fn matching_is_case_sensitive_unless_asked() {
    // `quiet` has ignore_case; `burst` (threshold 3) and `sentinel` do not.
    let d = TempDir::new("rules");
    let w = start(&d);
    feed(
        &w,
        &d,
        "a.log",
        "sentinel lower\nburst 1\nburst 2\nburst 3\n",
        "s1",
    );
    assert_eq!(
        w.count_out("sentinel lower"),
        0,
        "a lower-case line fired a case-sensitive rule"
    );
    assert!(alerts(&w, "burst").is_empty());
}

#[test]
fn stats_are_reported_every_stats_interval() {
    let d = TempDir::new("stats");
    let log = d.write("a.log", "");
    let c = d.write(
        "c.yaml",
        &format!("stats_interval: 200ms\ninputs:\n  files: [{:?}]\nalerts:\n  c: {{ type: stdout }}\nrules:\n  - {{ name: r, pattern: ERROR, alert: c, cooldown: 0 }}\n", log.display().to_string()),
    );
    let w = Watcher::start(&["watch", "--config", c.to_str().unwrap()]);
    w.wait_err("watching", T);
    append(&log, "ERROR one\n");
    w.wait_out("ERROR one", T);
    // A periodic report (not the one at exit: the watcher is still running).
    w.wait_err("stats: bytes=10 matches=1", T);
}
