//! The one receiver of the input channel: runs every batch of lines through the
//! rule set, applies `sources`, `exclude`, thresholds and cooldowns, builds the
//! alerts and hands them to the senders. It owns all per-rule state, so none of
//! it needs a lock. With `--state` it also owns the state file: it records each
//! input's `Event::Mark` after matching the batches before it, and saves once a
//! second (the caller saves once more at exit).

use crate::alert::Senders;
use crate::event::{Alert, Event, Source};
use crate::rule::{Ctx, RuleSet};
use crate::stats::{self, STATS};
use crossbeam_channel::{select, tick, Receiver};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Per-rule state: cooldown and threshold window.
#[derive(Default)]
struct RuleState {
    last_fired: Option<Instant>,
    suppressed: u64,
    window: VecDeque<Instant>,
}

/// Why the matcher stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A shutdown signal arrived.
    Stopped,
    /// Every input ended (stdin closed) or the channel closed.
    InputsEnded,
    /// `--until-match`: a rule fired.
    Matched,
    /// `--until-match --timeout`: the time ran out.
    TimedOut,
}

/// The matcher and everything it owns.
pub struct Matcher<'a> {
    pub rules: RuleSet,
    state: Vec<RuleState>,
    identity: Arc<str>,
    senders: &'a Senders,
    /// Stop at the first alert (`--until-match`); the alert is kept here.
    pub until_match: bool,
    pub first: Option<Arc<Alert>>,
    /// The state file (`--state`): positions recorded from marks, saved every second.
    pub store: Option<crate::state::Store>,
}

impl<'a> Matcher<'a> {
    pub fn new(rules: RuleSet, identity: &str, senders: &'a Senders) -> Matcher<'a> {
        let state = rules.rules.iter().map(|_| RuleState::default()).collect();
        Matcher {
            rules,
            state,
            identity: Arc::from(identity),
            senders,
            until_match: false,
            first: None,
            store: None,
        }
    }

    /// Match a batch of whole lines from one source.
    pub fn handle_lines(&mut self, source: &Source, text: &str) {
        let Matcher {
            rules,
            state,
            identity,
            senders,
            first,
            until_match,
            ..
        } = self;
        rules.scan(text, |line, hits| {
            for idx in hits {
                if *until_match && first.is_some() {
                    return;
                }
                let rule = &rules.rules[idx];
                if let Some(f) = &rule.sources {
                    if !f.allows(source) {
                        continue;
                    }
                }
                if let Some(ex) = &rule.exclude {
                    if ex.is_match(line) {
                        continue;
                    }
                }
                stats::add(&STATS.matches, 1);
                let now = Instant::now();
                let st = &mut state[idx];
                if let Some(t) = rule.threshold {
                    while st
                        .window
                        .front()
                        .is_some_and(|&f| now.duration_since(f) > t.window)
                    {
                        st.window.pop_front();
                    }
                    st.window.push_back(now);
                    if st.window.len() < t.count as usize {
                        continue;
                    }
                    st.window.clear();
                }
                if let Some(last) = st.last_fired {
                    if now.duration_since(last) < rule.cooldown {
                        st.suppressed += 1;
                        stats::add(&STATS.suppressed, 1);
                        continue;
                    }
                }
                st.last_fired = Some(now);
                let suppressed = std::mem::take(&mut st.suppressed);
                let captures = rule.captures(line);
                let message = rule.message(&Ctx {
                    identity,
                    source,
                    line,
                    suppressed,
                    captures: &captures,
                });
                let alert = Arc::new(Alert {
                    identity: identity.clone(),
                    rule: rule.name.clone(),
                    message,
                    source: source.clone(),
                    line: line.to_string(),
                    captures,
                    time: SystemTime::now(),
                    suppressed,
                    labels: rule.labels.clone(),
                });
                stats::add(&STATS.alerts, 1);
                for &d in &rule.alerts {
                    senders.dispatch(d, alert.clone());
                }
                if first.is_none() {
                    *first = Some(alert);
                }
            }
        });
    }

    /// Run until stopped, until every one of `inputs` inputs ended, or (with
    /// `until_match`) until the first alert or `deadline`.
    pub fn run(
        &mut self,
        rx: &Receiver<Event>,
        stop: &Receiver<()>,
        inputs: usize,
        stats_every: Duration,
        deadline: Option<Instant>,
    ) -> Outcome {
        let mut ended = 0;
        let stats_tick = if stats_every.is_zero() {
            crossbeam_channel::never()
        } else {
            tick(stats_every)
        };
        let save_tick = if self.store.is_some() {
            tick(Duration::from_secs(1))
        } else {
            crossbeam_channel::never()
        };
        let timeout = match deadline {
            Some(d) => crossbeam_channel::at(d),
            None => crossbeam_channel::never(),
        };
        if inputs == 0 {
            return Outcome::InputsEnded;
        }
        loop {
            select! {
                recv(rx) -> ev => match ev {
                    Ok(Event::Lines { source, text }) => {
                        self.handle_lines(&source, &text);
                    }
                    Ok(Event::Mark { source, mark }) => {
                        log::trace!("{source}: {mark:?}");
                        self.mark(mark);
                    }
                    Ok(Event::End { source }) => {
                        log::debug!("{source}: input ended");
                        ended += 1;
                        if ended >= inputs {
                            return Outcome::InputsEnded;
                        }
                    }
                    Err(_) => return Outcome::InputsEnded,
                },
                recv(stop) -> _ => {
                    self.drain(rx);
                    return Outcome::Stopped;
                }
                recv(stats_tick) -> _ => log::info!("stats: {}", STATS.summary()),
                recv(save_tick) -> _ => {
                    if let Some(s) = &mut self.store {
                        s.tick();
                    }
                }
                recv(timeout) -> _ => return Outcome::TimedOut,
            }
            if self.until_match && self.first.is_some() {
                return Outcome::Matched;
            }
        }
    }

    /// Record where an input has got to (the batches before it are matched).
    fn mark(&mut self, mark: crate::state::Mark) {
        if let Some(s) = &mut self.store {
            s.record(mark);
        }
    }

    /// Match what the inputs already queued (on shutdown), without waiting for more.
    fn drain(&mut self, rx: &Receiver<Event>) {
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Lines { source, text } => self.handle_lines(&source, &text),
                Event::Mark { mark, .. } => self.mark(mark),
                Event::End { .. } => {}
            }
            if Instant::now() > until {
                break;
            }
        }
    }
}
