//! Rotation by the real `logrotate` (Debian package logrotate): `create`
//! (rename, then a new file) and `copytruncate`. Sequence-numbered lines, each
//! alerted exactly once across the rotation.

use crate::util::{append, peer, stdout_config, wait_for, TempDir, Watcher};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("event SEQ-{i:05} done\n"))
        .collect()
}

fn rotate_with(mode: &str) {
    let Some(logrotate) = peer("logrotate") else {
        return;
    };
    let d = TempDir::new(&format!("logrotate-{mode}"));
    let log = d.path("app.log");
    append(&log, "");
    let cfg = stdout_config(&d, &[log.to_str().unwrap()], "SEQ-[0-9]+");
    let conf = d.write(
        "logrotate.conf",
        &format!(
            "{} {{\n  rotate 3\n  {mode}\n  missingok\n}}\n",
            log.display()
        ),
    );
    let mut w = Watcher::start(&["watch", "--config", cfg.to_str().unwrap()]);
    w.wait_err("following", T);
    append(&log, &lines(0, 100));
    w.wait_out("SEQ-00099", T);
    let st = Command::new(&logrotate)
        .arg("-f")
        .arg("-s")
        .arg(d.path("lr.state"))
        .arg(&conf)
        .status()
        .unwrap();
    assert!(st.success(), "logrotate failed");
    assert!(d.path("app.log.1").exists(), "logrotate did not rotate");
    append(&log, &lines(100, 200));
    w.wait_out("SEQ-00199", T);
    // Nothing more is coming: every number exactly once.
    wait_for(T, "200 alerts", || w.count_out("ALERT") >= 200);
    let out = w.stdout();
    for i in 0..200 {
        let n = out
            .iter()
            .filter(|l| l.contains(&format!("SEQ-{i:05} ")))
            .count();
        assert_eq!(n, 1, "SEQ-{i:05} alerted {n} times ({mode})");
    }
    assert!(w.stop().success());
}

#[test]
fn logrotate_create() {
    rotate_with("create");
}

#[test]
fn logrotate_copytruncate() {
    rotate_with("copytruncate");
}
