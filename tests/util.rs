//! Helpers shared by the integration tests: the binary, temp dirs, a running
//! watcher whose stdout/stderr are collected on threads, and `wait_for` with a
//! deadline (never sleep-and-hope).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tinywatcher");

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tw-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Write a file and return its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wait until `cond` is true, polling every few ms; panic with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_for_else(timeout, || what.to_string(), cond)
}

/// `wait_for`, with the failure message made only when the time is up (so it
/// can show what the watcher said meanwhile).
pub fn wait_for_else(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for: {}", what());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Append text to a file (creating it).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A running tinywatcher whose stdout and stderr lines are collected.
pub struct Watcher {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<Vec<String>>>,
}

fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let v = Arc::new(Mutex::new(Vec::new()));
    let v2 = v.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => v2.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    v
}

impl Watcher {
    /// Start `tinywatcher ARGS` (with `-v` so startup is logged).
    pub fn start(args: &[&str]) -> Watcher {
        Self::start_with(args, |_| {})
    }

    /// Start `tinywatcher watch --config CFG`.
    pub fn watch(cfg: &Path) -> Watcher {
        Self::start(&["watch", "--config", cfg.to_str().unwrap()])
    }

    /// Start with a hook to adjust the command (env, stdin…).
    pub fn start_with(args: &[&str], f: impl FnOnce(&mut Command)) -> Watcher {
        let mut c = Command::new(BIN);
        c.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        c.env("RUST_LOG", "tinywatcher=debug");
        f(&mut c);
        let mut child = c.spawn().expect("start tinywatcher");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Watcher { child, out, err }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }
    pub fn stderr(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }
    /// stdout lines containing `needle`.
    pub fn count_out(&self, needle: &str) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
    /// Wait for a stdout line containing `needle`.
    pub fn wait_out(&self, needle: &str, timeout: Duration) {
        wait_for_else(
            timeout,
            || {
                format!(
                    "stdout line with {needle:?}; stdout: {:?}; stderr: {:?}",
                    self.stdout(),
                    self.stderr()
                )
            },
            || self.count_out(needle) > 0 || self.exited_early(),
        );
        assert!(
            self.count_out(needle) > 0,
            "tinywatcher exited before printing {needle:?}; stderr: {:?}",
            self.stderr()
        );
    }
    /// Alerts of rule `r` from identity `test` (as `stdout_config` and the
    /// stream/listener test configs make them) whose line ends with `text`.
    pub fn count_alert(&self, text: &str) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ALERT [test] [r]: ") && l.ends_with(text))
            .count()
    }
    /// Wait for such an alert.
    pub fn wait_alert(&self, text: &str, timeout: Duration) {
        wait_for_else(
            timeout,
            || {
                format!(
                    "an alert for {text:?}; stdout {:?}; stderr {:?}",
                    self.stdout(),
                    self.stderr()
                )
            },
            || self.count_alert(text) > 0,
        );
    }
    /// Wait for a stderr line containing `needle`.
    pub fn wait_err(&self, needle: &str, timeout: Duration) {
        let seen = || self.err.lock().unwrap().iter().any(|l| l.contains(needle));
        wait_for_else(
            timeout,
            || format!("stderr line with {needle:?}; stderr: {:?}", self.stderr()),
            || seen() || self.exited_early(),
        );
        assert!(
            seen(),
            "tinywatcher exited before saying {needle:?}; stderr: {:?}",
            self.stderr()
        );
    }
    /// Has the process ended (a zombie not yet waited for)? Lets waits fail
    /// at once, with its stderr, instead of at their deadline.
    fn exited_early(&self) -> bool {
        let ended =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
        if ended {
            // Let the collector threads take the last lines.
            std::thread::sleep(Duration::from_millis(50));
        }
        ended
    }

    /// Send a signal.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc_kill(self.child.id() as i32, sig);
        }
    }
    /// SIGTERM, then wait (with a deadline) for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(15);
        self.wait(Duration::from_secs(15))
    }
    /// Wait for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the collector threads read what is left.
                std::thread::sleep(Duration::from_millis(20));
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "tinywatcher did not exit within {timeout:?}; stderr: {:?}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Run tinywatcher to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A config that follows `files` and prints every match of `pattern` (cooldown 0) on stdout.
pub fn stdout_config(dir: &TempDir, files: &[&str], pattern: &str) -> PathBuf {
    let mut s = String::from("identity: { name: test }\ninputs:\n  files:\n");
    for f in files {
        s.push_str(&format!("    - {f:?}\n"));
    }
    s.push_str(&format!("alerts:\n  console: {{ type: stdout }}\nrules:\n  - name: r\n    pattern: {pattern:?}\n    alert: console\n    cooldown: 0\n"));
    dir.write("cfg.yaml", &s)
}

/// A real peer program (socat, websocketd, logger, logrotate…): its path, or
/// None with a printed notice so the test can skip. `TW_REQUIRE_PEERS=1`
/// (CI, after installing them) turns a missing peer into a failure.
pub fn peer(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|f| f.is_file());
    if found.is_none() {
        if std::env::var("TW_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{program} is required (TW_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("NOTICE: {program} not installed; skipping this real-peer test");
    }
    found
}
