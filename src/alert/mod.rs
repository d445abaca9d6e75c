//! Delivery: one sender thread per destination, each with a bounded queue, so
//! the matcher never waits on a destination. A full queue drops the alert and
//! counts it. HTTP destinations retry with backoff; secrets are redacted.
//!
//! The pieces:
//! - `Senders`: the queues and threads, `dispatch` (never blocks) and
//!   `finish` (drain until a deadline).
//! - `Deliver` + `run_retrying`: the generic retry loop every HTTP destination
//!   reuses (exponential backoff with full jitter, `Retry-After`, a bounded
//!   number of attempts, counted and logged give-ups, a shutdown deadline that
//!   cuts a backoff short).
//! - `Payload` and the UTC time formatters shared by every destination.
//!
//! `TINYWATCHER_RETRY_BASE_MS` (environment) sets the first retry delay's upper
//! bound in milliseconds (default 500); the tests use it to run quickly.

mod stdout;
mod webhook;

use crate::backoff::Backoff;
use crate::config::AlertCfg;
use crate::event::{Alert, Stop};
use crate::stats::{self, STATS};
use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Queue length of a stdout destination.
const STDOUT_QUEUE: usize = 8192;
/// Default queue length of an HTTP destination (`queue:` overrides it).
const DEFAULT_QUEUE: usize = 1024;
/// How long the matcher waits for room in a full stdout queue before dropping.
const STDOUT_WAIT: Duration = Duration::from_secs(1);
/// At most one "queue full" warning per destination this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(5);
/// Stack of a stdout sender thread.
const STDOUT_STACK: usize = 256 * 1024;
/// Stack of an HTTP sender thread: a little more, for a TLS handshake.
const HTTP_STACK: usize = 512 * 1024;
/// The longest `Retry-After` honoured; longer ones are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One running destination, as the matcher sees it.
struct Dest {
    name: String,
    tx: Sender<Arc<Alert>>,
    capacity: usize,
    /// How long `dispatch` may wait for room: stdout only (a local write that
    /// catches up in microseconds; dropping there would lose alerts of a
    /// burst for nothing), never a network destination.
    wait: Duration,
    /// A wait timed out (stdout is stalled): no more waiting until an alert
    /// fits again, so a stuck pipe costs the matcher one `wait`, not one per alert.
    stalled: AtomicBool,
    /// Alerts queued or in flight (decremented once delivered or given up).
    pending: Arc<AtomicUsize>,
    drops: Mutex<DropLog>,
}

/// Queue-full drops not yet reported, for the rate-limited warning.
#[derive(Default)]
struct DropLog {
    last: Option<Instant>,
    unreported: u64,
}

/// The running destinations, by index (the order of the `alerts:` map).
pub struct Senders {
    dests: Vec<Dest>,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once every sender thread has ended.
    done: Receiver<()>,
    /// Dropped by `finish` to wake senders sleeping in a backoff.
    wake: Sender<()>,
    deadline: Arc<OnceLock<Instant>>,
}

impl Senders {
    /// Start one sender thread per destination. `json` forces JSON lines on
    /// stdout destinations (`--json`).
    /// A stdout destination whose pipe closed (`| head`) stops the run
    /// through `stop`, so it ends in order (state saved, other alerts sent).
    /// `mute_stdout` (`--until-match`, which prints the matched line itself):
    /// stdout destinations take their alerts and print nothing.
    pub fn start(
        alerts: &BTreeMap<String, AlertCfg>,
        json: bool,
        mute_stdout: bool,
        stop: &Stop,
    ) -> Result<Senders, String> {
        let (wake, wake_rx) = bounded::<()>(0);
        let (done_tx, done) = bounded::<()>(0);
        let deadline = Arc::new(OnceLock::new());
        let mut dests = Vec::new();
        let mut threads = Vec::new();
        for (name, cfg) in alerts {
            let pending = Arc::new(AtomicUsize::new(0));
            let ctx = Ctx {
                name: Arc::from(name.as_str()),
                pending: pending.clone(),
                deadline: Deadline {
                    wake: wake_rx.clone(),
                    at: deadline.clone(),
                },
            };
            let done_tx = done_tx.clone();
            let builder = std::thread::Builder::new().name(format!("sender:{name}"));
            let (capacity, spawned) = match cfg {
                AlertCfg::Stdout(s) => {
                    let (tx, rx) = bounded(STDOUT_QUEUE);
                    let json = json || s.json;
                    let stop = stop.clone();
                    let h = builder.stack_size(STDOUT_STACK).spawn(move || {
                        let _done = done_tx;
                        if mute_stdout {
                            while rx.recv().is_ok() {
                                ctx.done_one();
                            }
                        } else {
                            stdout::run(rx, ctx, json, stop);
                        }
                    });
                    (STDOUT_QUEUE, h.map(|h| (h, tx)))
                }
                AlertCfg::Webhook(w) => {
                    let hook = webhook::Webhook::new(name, w)?;
                    log::debug!("{name}: webhook {}", hook.describe());
                    let capacity = w.queue.unwrap_or(DEFAULT_QUEUE).max(1);
                    let policy = RetryPolicy::new(w.max_attempts.unwrap_or(5));
                    let (tx, rx) = bounded(capacity);
                    let h = builder.stack_size(HTTP_STACK).spawn(move || {
                        let _done = done_tx;
                        run_retrying(hook, rx, ctx, policy);
                    });
                    (capacity, h.map(|h| (h, tx)))
                }
                other => {
                    return Err(format!(
                        "alerts.{name}: destination type `{}` is not supported yet",
                        other.type_name()
                    ))
                }
            };
            let (handle, tx) =
                spawned.map_err(|e| format!("cannot start the sender thread for {name}: {e}"))?;
            threads.push(handle);
            let wait = if matches!(cfg, AlertCfg::Stdout(_)) {
                STDOUT_WAIT
            } else {
                Duration::ZERO
            };
            dests.push(Dest {
                name: name.clone(),
                tx,
                capacity,
                wait,
                stalled: AtomicBool::new(false),
                pending,
                drops: Mutex::new(DropLog::default()),
            });
        }
        Ok(Senders {
            dests,
            threads,
            done,
            wake,
            deadline,
        })
    }

    /// Index of a destination by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.dests.iter().position(|d| d.name == name)
    }

    /// Hand an alert to destination `idx`. Never blocks: when its queue is full
    /// the alert is dropped and counted.
    pub fn dispatch(&self, idx: usize, alert: Arc<Alert>) {
        let Some(d) = self.dests.get(idx) else { return };
        // Counted before it is queued, so that the sender never sees it negative.
        d.pending.fetch_add(1, Ordering::SeqCst);
        let sent = match d.tx.try_send(alert) {
            Err(TrySendError::Full(a))
                if !d.wait.is_zero() && !d.stalled.load(Ordering::Relaxed) =>
            {
                d.tx.send_timeout(a, d.wait).map_err(|e| match e {
                    SendTimeoutError::Timeout(_) => {
                        d.stalled.store(true, Ordering::Relaxed);
                        "queue full (stalled)"
                    }
                    SendTimeoutError::Disconnected(_) => "sender stopped",
                })
            }
            Err(TrySendError::Full(_)) => Err("queue full"),
            Err(TrySendError::Disconnected(_)) => Err("sender stopped"),
            Ok(()) => {
                if !d.wait.is_zero() {
                    d.stalled.store(false, Ordering::Relaxed);
                }
                Ok(())
            }
        };
        if let Err(why) = sent {
            d.pending.fetch_sub(1, Ordering::SeqCst);
            stats::add(&STATS.alerts_dropped_queue_full, 1);
            let mut log = d.drops.lock().unwrap_or_else(|e| e.into_inner());
            log.unreported += 1;
            let now = Instant::now();
            if log
                .last
                .is_none_or(|t| now.duration_since(t) >= DROP_LOG_EVERY)
            {
                log::warn!(
                    "{}: {why} ({} alerts waiting): dropped {} alert(s) since the last report",
                    d.name,
                    d.capacity,
                    log.unreported
                );
                log.last = Some(now);
                log.unreported = 0;
            }
        }
    }

    /// Close every queue and wait, until `deadline` at most, for the senders to
    /// deliver (or give up on) what is queued. Returns how many alerts were left.
    pub fn finish(self, deadline: Instant) -> usize {
        let Senders {
            dests,
            threads,
            done,
            wake,
            deadline: at,
        } = self;
        let _ = at.set(deadline);
        // Wake the senders sleeping in a backoff: they now see the deadline.
        drop(wake);
        let mut pending = Vec::new();
        for d in dests {
            let log = d.drops.lock().unwrap_or_else(|e| e.into_inner());
            if log.unreported > 0 {
                log::warn!(
                    "{}: queue full: dropped {} alert(s) since the last report",
                    d.name,
                    log.unreported
                );
            }
            pending.push((d.name, d.pending));
            // `d.tx` is dropped here: the queue is closed, its sender drains it.
        }
        let all_ended = loop {
            match done.recv_deadline(deadline) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        if all_ended {
            for t in threads {
                let _ = t.join();
            }
        }
        let mut left = 0;
        for (name, p) in pending {
            let n = p.load(Ordering::SeqCst);
            if n > 0 {
                log::info!("{name}: {n} alert(s) left undelivered at the shutdown deadline");
            }
            left += n;
        }
        left
    }
}

/// What a sender thread gets besides its queue.
pub(crate) struct Ctx {
    pub name: Arc<str>,
    /// Shared with `Dest::pending`: decremented for each alert handled.
    pub pending: Arc<AtomicUsize>,
    pub deadline: Deadline,
}

impl Ctx {
    /// One alert handled (delivered or given up).
    pub fn done_one(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shutdown deadline as a sender sees it: unknown while running, set by
/// `finish` (which also disconnects `wake`, cutting any sleep short).
#[derive(Clone)]
pub(crate) struct Deadline {
    wake: Receiver<()>,
    at: Arc<OnceLock<Instant>>,
}

impl Deadline {
    /// A deadline not set yet, with the handles `finish` would hold (unit tests).
    #[cfg(test)]
    fn none() -> (Deadline, Sender<()>, Arc<OnceLock<Instant>>) {
        let (tx, rx) = bounded(0);
        let at = Arc::new(OnceLock::new());
        (
            Deadline {
                wake: rx,
                at: at.clone(),
            },
            tx,
            at,
        )
    }

    /// Time left before the deadline; `None` while there is none.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Has the deadline passed?
    pub fn passed(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }

    /// Sleep for `d`, unless that would end past the shutdown deadline: then
    /// return `false` at once (also when woken by a shutdown).
    pub fn sleep(&self, d: Duration) -> bool {
        let wake_at = Instant::now() + d;
        loop {
            if let Some(dl) = self.at.get() {
                if wake_at > *dl {
                    return false;
                }
            }
            let now = Instant::now();
            if now >= wake_at {
                return true;
            }
            match self.wake.recv_timeout(wake_at - now) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => {
                    // Shutting down: finish the sleep only if it ends in time.
                    return match self.at.get() {
                        Some(dl) if wake_at <= *dl => {
                            std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
                            true
                        }
                        _ => false,
                    };
                }
            }
        }
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Worth another attempt (connect error, timeout, 5xx, 429)?
    pub retryable: bool,
    /// What the server asked for (`Retry-After` on a 429 or 503).
    pub retry_after: Option<Duration>,
    /// Already redacted: safe to log.
    pub reason: String,
}

/// A destination that delivers one alert at a time and may fail.
pub(crate) trait Deliver {
    /// Try once. `budget` is the time left before the shutdown deadline (when
    /// there is one): the attempt should not take longer.
    fn deliver(&mut self, alert: &Alert, budget: Option<Duration>) -> Result<(), Failure>;
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// `max_attempts` in all, backoff from `TINYWATCHER_RETRY_BASE_MS` (default 500 ms) up to 30 s.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        let base_ms = std::env::var("TINYWATCHER_RETRY_BASE_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Unit tests retry fast.
        let base_ms = base_ms.unwrap_or(if cfg!(test) { 10 } else { 500 });
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base: Duration::from_millis(base_ms),
            max: MAX_BACKOFF,
        }
    }
}

/// The sender loop of a retrying destination: alerts in queue order, each
/// tried up to `max_attempts` times; ends when the queue is closed and empty,
/// or at the shutdown deadline (what is left stays counted in `pending`).
pub(crate) fn run_retrying<D: Deliver>(
    mut dest: D,
    rx: Receiver<Arc<Alert>>,
    ctx: Ctx,
    policy: RetryPolicy,
) {
    let mut backoff = Backoff::new(policy.base, policy.max);
    'alerts: while let Ok(alert) = rx.recv() {
        let mut attempt = 1;
        backoff.reset();
        loop {
            if ctx.deadline.passed() {
                log::debug!("{}: shutdown deadline reached", ctx.name);
                break 'alerts;
            }
            match dest.deliver(&alert, ctx.deadline.remaining()) {
                Ok(()) => {
                    stats::add(&STATS.alerts_delivered, 1);
                    if attempt > 1 {
                        log::info!(
                            "{}: delivered alert for rule {} on attempt {attempt}",
                            ctx.name,
                            alert.rule
                        );
                    }
                    break;
                }
                Err(f) if !f.retryable || attempt >= policy.max_attempts => {
                    stats::add(&STATS.alerts_failed, 1);
                    let attempts = if attempt == 1 {
                        "1 attempt".to_string()
                    } else {
                        format!("{attempt} attempts")
                    };
                    let final_ = if f.retryable { "" } else { " (not retryable)" };
                    log::warn!(
                        "{}: dropping alert for rule {} after {attempts}: {}{final_}",
                        ctx.name,
                        alert.rule,
                        f.reason
                    );
                    break;
                }
                Err(f) => {
                    let delay = match f.retry_after {
                        Some(ra) => ra.min(MAX_RETRY_AFTER),
                        None => backoff.next_delay(),
                    };
                    stats::add(&STATS.retries, 1);
                    log::info!(
                        "{}: attempt {attempt} of {} for rule {} failed: {}; retrying in {}",
                        ctx.name,
                        policy.max_attempts,
                        alert.rule,
                        f.reason,
                        human(delay)
                    );
                    if !ctx.deadline.sleep(delay) {
                        log::debug!(
                            "{}: shutdown deadline reached during a retry backoff",
                            ctx.name
                        );
                        break 'alerts;
                    }
                    attempt += 1;
                }
            }
        }
        ctx.done_one();
    }
}

/// `250ms`, `1.5s`: a delay for a log line.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The alert as JSON, for the webhook body and stdout's JSON lines. The first
/// five fields are the reference tool's.
#[derive(Serialize)]
pub(crate) struct Payload<'a> {
    pub identity: &'a str,
    pub rule: &'a str,
    pub message: &'a str,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_name: Option<&'a str>,
    pub source: &'a str,
    pub line: &'a str,
    pub captures: &'a BTreeMap<String, String>,
    pub suppressed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Payload<'a> {
    /// The payload for destination `alert_name`; `labels` always present, or
    /// only when the rule has some.
    pub fn new(alert: &'a Alert, alert_name: &'a str, always_labels: bool) -> Payload<'a> {
        Payload {
            identity: &alert.identity,
            rule: &alert.rule,
            message: &alert.message,
            timestamp: rfc3339(alert.time),
            alert_name: Some(alert_name),
            source: &alert.source,
            line: &alert.line,
            captures: &alert.captures,
            suppressed: alert.suppressed,
            labels: (always_labels || !alert.labels.is_empty()).then_some(&*alert.labels),
        }
    }
}

/// `--until-match --json`: the matched alert as one JSON object (the stdout
/// JSON line without `alert_name`, which names a destination).
pub fn match_json(alert: &Alert) -> String {
    let mut p = Payload::new(alert, "", true);
    p.alert_name = None;
    serde_json::to_string(&p).unwrap_or_default()
}

/// The alert `tinywatcher test --send` sends.
fn test_alert(identity: &str) -> Alert {
    let message = format!("tinywatcher test alert from {identity}");
    Alert {
        identity: Arc::from(identity),
        rule: Arc::from("test"),
        line: message.clone(),
        message,
        source: Arc::from("test"),
        captures: BTreeMap::new(),
        time: SystemTime::now(),
        suppressed: 0,
        labels: Arc::new(BTreeMap::new()),
    }
}

/// `tinywatcher test --send`: send one test alert to destination `name` now,
/// synchronously, and say how it went.
pub fn send_test(
    name: &str,
    cfg: &AlertCfg,
    config: &crate::config::Config,
    json: bool,
) -> Result<(), String> {
    let alert = test_alert(&config.identity);
    match cfg {
        AlertCfg::Stdout(s) => stdout::print_one(&alert, name, json || s.json)
            .map_err(|e| format!("cannot write to stdout: {e}")),
        AlertCfg::Webhook(w) => {
            let mut hook = webhook::Webhook::new(name, w)?;
            hook.deliver(&alert, None).map_err(|f| f.reason)
        }
        other => Err(format!(
            "destination type `{}` is not supported yet",
            other.type_name()
        )),
    }
}

// ---------------------------------------------------------------------------
// Time: UTC, formatted by hand (no time crate).
// ---------------------------------------------------------------------------

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// `t` in UTC (times before 1970 are shown as 1970-01-01 00:00:00).
    pub fn from(t: SystemTime) -> Utc {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-04 10:00:00` (UTC), for text lines.
pub(crate) fn text_time(t: SystemTime) -> String {
    let u = Utc::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

/// `2026-12-04T10:00:00Z`: RFC 3339 in UTC, for JSON.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let u = Utc::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

#[cfg(test)]
mod tests;
