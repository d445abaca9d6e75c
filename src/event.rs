//! The channel contract: what inputs hand the matcher (`Event`) and what the
//! matcher hands each sender (`Alert`). Kept in one small file so that every
//! input and every destination agrees on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Where lines come from, as shown in alerts: `file:/var/log/x.log`,
/// `container:api`, `stream:k8s`, `listen:syslog`, `stdin`. Cheap to clone.
pub type Source = Arc<str>;

/// What an input sends the matcher. Errors and status ride along with the data.
#[derive(Debug)]
pub enum Event {
    /// One or more whole lines from one source. `text` is valid UTF-8, every line
    /// in it ends with `\n`, and no line is longer than `max_line_bytes`
    /// (the input cut and counted it). Batching keeps channel traffic low.
    Lines { source: Source, text: String },
    /// The source has ended for good (stdin closed, a one-shot read reached its end).
    End { source: Source },
    /// How far a source has got (`--state`): sent right after the batches it
    /// covers, so that a saved position never runs ahead of what was matched.
    Mark {
        source: Source,
        mark: crate::state::Mark,
    },
}

/// One alert, shared by every destination of a rule.
#[derive(Debug, Clone)]
pub struct Alert {
    pub identity: Arc<str>,
    pub rule: Arc<str>,
    /// The rendered `message` template, or the line itself when there is none.
    pub message: String,
    pub source: Source,
    pub line: String,
    /// Captures by name, and by number (`"1"`, `"2"`…) for unnamed groups.
    pub captures: BTreeMap<String, String>,
    pub time: SystemTime,
    /// Matches of this rule swallowed by its cooldown since the previous alert.
    pub suppressed: u64,
    /// The rule's `labels` (extra labels for alertmanager and the webhook payload).
    pub labels: Arc<BTreeMap<String, String>>,
}

/// The shutdown signal shared by every thread: a flag that loops look at,
/// plus a channel the matcher selects on. Set by the signal thread on
/// SIGINT/SIGTERM, by a stdout sender whose pipe closed, and by `main` when
/// the run is over.
#[derive(Clone, Debug)]
pub struct Stop(Arc<StopInner>);

#[derive(Debug)]
struct StopInner {
    flag: AtomicBool,
    tx: crossbeam_channel::Sender<()>,
    rx: crossbeam_channel::Receiver<()>,
}

impl Default for Stop {
    fn default() -> Stop {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Stop(Arc::new(StopInner {
            flag: AtomicBool::new(false),
            tx,
            rx,
        }))
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }
    pub fn stop(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        let _ = self.0.tx.try_send(());
    }
    pub fn is_stopped(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }
    /// Ready once `stop` was called (for `select!`).
    pub fn notified(&self) -> &crossbeam_channel::Receiver<()> {
        &self.0.rx
    }
}
