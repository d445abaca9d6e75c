//! `type: stdout`: alerts printed on standard output, as text lines
//! (`[2026-12-04 10:00:00] ALERT [identity] [rule]: message`) or JSON lines.
//! Buffered, and flushed whenever the queue is momentarily empty, so that a
//! burst costs one write and a lone alert still shows at once. A closed stdout
//! (`| head`) ends the run quietly with status 0, as grep does — in order:
//! the run stops, state is saved, other destinations get their alerts.

use super::{text_time, Ctx, Payload};
use crate::event::{Alert, Stop};
use crate::stats::{self, STATS};
use crossbeam_channel::Receiver;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

/// Append one alert, as a text or JSON line, to `out`.
pub(crate) fn format(alert: &Alert, alert_name: &str, json: bool, out: &mut Vec<u8>) {
    if json {
        // Serializing plain strings and maps into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &Payload::new(alert, alert_name, true));
        out.push(b'\n');
    } else {
        let _ = write!(
            out,
            "[{}] ALERT [{}] [{}]: {}",
            text_time(alert.time),
            alert.identity,
            alert.rule,
            alert.message
        );
        if alert.suppressed > 0 {
            let _ = write!(out, " ({} suppressed)", alert.suppressed);
        }
        out.push(b'\n');
    }
}

/// The sender loop: until the queue is closed and empty.
pub(crate) fn run(rx: Receiver<Arc<Alert>>, ctx: Ctx, json: bool, stop: Stop) {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout());
    let mut line = Vec::with_capacity(512);
    let mut failed_once = false;
    let mut closed = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(alert) = next {
            if !closed {
                line.clear();
                format(&alert, &ctx.name, json, &mut line);
                let r = out.write_all(&line);
                closed = settle(r, &mut failed_once);
            }
            ctx.done_one();
            next = rx.try_recv().ok();
        }
        // The queue is momentarily empty: show what we have.
        if !closed {
            let r = out.flush();
            closed = check(r, &mut failed_once);
        }
        if closed && !stop.is_stopped() {
            log::debug!("stdout closed (broken pipe): ending the run");
            stop.stop();
        }
    }
    if !closed {
        let r = out.flush();
        check(r, &mut failed_once);
    }
}

/// Count one alert written (or not); true if stdout is closed.
fn settle(r: io::Result<()>, failed_once: &mut bool) -> bool {
    if r.is_ok() {
        stats::add(&STATS.alerts_delivered, 1);
        false
    } else {
        stats::add(&STATS.alerts_failed, 1);
        check(r, failed_once)
    }
}

/// Log a write error once; true if it is a broken pipe (stdout closed: the
/// rest of the queue is dropped quietly, and the run ends with status 0).
fn check(r: io::Result<()>, failed_once: &mut bool) -> bool {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => true,
        Err(e) => {
            if !*failed_once {
                *failed_once = true;
                log::error!(
                    "cannot write alerts to stdout: {e} (further errors are counted, not logged)"
                );
            }
            false
        }
        Ok(()) => false,
    }
}

/// `test --send`: print one alert now.
pub(crate) fn print_one(alert: &Alert, alert_name: &str, json: bool) -> io::Result<()> {
    let mut line = Vec::new();
    format(alert, alert_name, json, &mut line);
    let mut out = io::stdout().lock();
    out.write_all(&line)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    fn alert(suppressed: u64) -> Alert {
        let mut captures = BTreeMap::new();
        captures.insert("code".to_string(), "500".to_string());
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "ops".to_string());
        Alert {
            identity: Arc::from("box"),
            rule: Arc::from("errors"),
            message: "boom 500".into(),
            source: Arc::from("file:/var/log/a.log"),
            line: "ERROR boom 500".into(),
            captures,
            // 2026-12-04T10:00:00Z
            time: UNIX_EPOCH + Duration::from_secs(1_796_378_400),
            suppressed,
            labels: Arc::new(labels),
        }
    }

    #[test]
    fn text_line() {
        let mut out = Vec::new();
        format(&alert(0), "console", false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-12-04 10:00:00] ALERT [box] [errors]: boom 500\n"
        );
        let mut out = Vec::new();
        format(&alert(3), "console", false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-12-04 10:00:00] ALERT [box] [errors]: boom 500 (3 suppressed)\n"
        );
    }

    #[test]
    fn json_line() {
        let mut out = Vec::new();
        format(&alert(2), "console", true, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "{s:?}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "identity": "box", "rule": "errors", "message": "boom 500",
                "timestamp": "2026-12-04T10:00:00Z", "alert_name": "console",
                "source": "file:/var/log/a.log", "line": "ERROR boom 500",
                "captures": {"code": "500"}, "suppressed": 2, "labels": {"team": "ops"}
            })
        );
    }
}
