//! Server-Sent Events (WHATWG "event stream" format): a stream of `field:
//! value` lines, events ending at a blank line. The `data:` lines of an event
//! are joined with `\n` and handed on as lines for matching when the event is
//! dispatched; `id:` sets the last event id (sent back as `Last-Event-ID` on
//! reconnect, so no event is lost or seen twice); `retry:` (digits only) sets
//! the reconnect delay; `event:`, comments (`:`) and unknown fields are
//! ignored. Lines end with CRLF, LF or CR; a leading BOM is skipped.
//!
//! Memory is bounded: one field line is held up to `max_line_bytes` plus its
//! field name (the rest is cut and counted), and an event's data up to
//! `MAX_EVENT_BYTES`; a stream that never sends a blank line has its data
//! passed on in pieces once it grows beyond that (logged once, counted).
//!
//! The last event id of each stream lives in a process-wide table:
//! `last_event_id(name)` reads it (for the `Last-Event-ID` of the next
//! connection) and `set_last_event_id(name, id)` seeds it (resume from the
//! state file). With a state file, the stream also reports each new id
//! (`Parser::take_new_id`) as an `Event::Mark` after the data it covers.

use crate::stats::{self, STATS};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Event data held at most before it is passed on without waiting for the
/// blank line that ends the event.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

fn ids() -> &'static Mutex<HashMap<String, String>> {
    static IDS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// The last SSE event id received on stream `name` (sent as `Last-Event-ID`).
pub fn last_event_id(name: &str) -> Option<String> {
    ids()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// Seed (or update) the last event id of stream `name`: it is sent as
/// `Last-Event-ID` on the next connection.
pub fn set_last_event_id(name: &str, id: &str) {
    let mut m = ids().lock().unwrap_or_else(|e| e.into_inner());
    if id.is_empty() {
        m.remove(name);
    } else if m.get(name).map(String::as_str) != Some(id) {
        m.insert(name.to_string(), id.to_string());
    }
}

/// The event-stream parser of one connection.
#[derive(Debug)]
pub struct Parser {
    /// The stream's name (the key of its last event id).
    name: String,
    /// The line being read (no end of line yet), at most `max_field` bytes.
    line: Vec<u8>,
    max_field: usize,
    /// The rest of an overlong line is being skipped.
    skipping: bool,
    /// The previous byte was a CR (a following LF belongs to the same end of line).
    after_cr: bool,
    /// At the start of the stream (a BOM is skipped there).
    at_start: bool,
    /// The data buffer of the event being read, lines joined with `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The last event id buffer (becomes the last event id at dispatch).
    id_buffer: Option<String>,
    /// The last event id as of the last dispatch (seeded from the table).
    last_id: Option<String>,
    /// `last_id` changed since `take_new_id` was last called.
    new_id: bool,
    /// `retry:` the server asked for.
    pub retry: Option<Duration>,
    warned_retry: bool,
    warned_unknown: bool,
    warned_big: bool,
}

impl Parser {
    pub fn new(name: &str, max_line_bytes: usize) -> Parser {
        Parser {
            name: name.to_string(),
            line: Vec::new(),
            max_field: max_line_bytes.saturating_add(16),
            skipping: false,
            after_cr: false,
            at_start: true,
            data: Vec::new(),
            has_data: false,
            id_buffer: last_event_id(name),
            last_id: last_event_id(name),
            new_id: false,
            retry: None,
            warned_retry: false,
            warned_unknown: false,
            warned_big: false,
        }
    }

    /// Take bytes of the stream; `out` gets the data of every event
    /// dispatched (each event's data followed by `\n`).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        if self.at_start && !bytes.is_empty() {
            // A UTF-8 BOM may open the stream (possibly split across reads: rare, ignored).
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
            self.at_start = false;
        }
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(p) => {
                    self.take(&bytes[..p]);
                    self.after_cr = bytes[p] == b'\r';
                    bytes = &bytes[p + 1..];
                    self.end_of_line(out);
                }
                None => {
                    self.take(bytes);
                    break;
                }
            }
        }
    }

    /// Part of the current line: kept up to `max_field` bytes.
    fn take(&mut self, b: &[u8]) {
        if self.skipping {
            return;
        }
        let room = self.max_field - self.line.len();
        if b.len() <= room {
            self.line.extend_from_slice(b);
        } else {
            self.line.extend_from_slice(&b[..room]);
            self.skipping = true;
            stats::add(&STATS.lines_cut, 1);
        }
    }

    fn end_of_line(&mut self, out: &mut Vec<u8>) {
        self.skipping = false;
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
        } else {
            self.field(&line, out);
        }
        // Keep the allocation for the next line, unless it was a big one.
        if line.capacity() <= 4096 {
            self.line = line;
            self.line.clear();
        }
    }

    fn field(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line[0] == b':' {
            return; // a comment (often a keep-alive)
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    // No blank line for a long time: pass on what we have.
                    if !self.warned_big {
                        self.warned_big = true;
                        log::warn!("stream {}: an SSE event grew beyond {} bytes without the blank line that ends it; passing its data on in pieces", self.name, MAX_EVENT_BYTES);
                    }
                    stats::add(&STATS.sse_malformed, 1);
                    self.flush_data(out);
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" => {
                if !value.contains(&0) {
                    self.id_buffer = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
            b"retry" => {
                let ms = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                match ms {
                    Some(ms) => self.retry = Some(Duration::from_millis(ms)),
                    None => {
                        stats::add(&STATS.sse_malformed, 1);
                        if !self.warned_retry {
                            self.warned_retry = true;
                            log::warn!("stream {}: ignoring an SSE `retry:` that is not a number of milliseconds: {:?}", self.name, String::from_utf8_lossy(&value[..value.len().min(40)]));
                        }
                    }
                }
            }
            b"event" => {}
            _ => {
                if !self.warned_unknown {
                    self.warned_unknown = true;
                    log::debug!(
                        "stream {}: ignoring unknown SSE field {:?}",
                        self.name,
                        String::from_utf8_lossy(&name[..name.len().min(40)])
                    );
                }
            }
        }
    }

    /// A blank line: the event is complete.
    fn dispatch(&mut self, out: &mut Vec<u8>) {
        if let Some(id) = &self.id_buffer {
            if self.last_id.as_ref() != Some(id) {
                set_last_event_id(&self.name, id);
                self.last_id = Some(id.clone());
                self.new_id = true;
            }
        }
        if self.has_data {
            self.flush_data(out);
        }
    }

    fn flush_data(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.data);
        out.push(b'\n');
        self.data.clear();
        self.has_data = false;
        if self.data.capacity() > 64 * 1024 {
            self.data = Vec::new();
        }
    }

    /// The last event id, if it changed since the previous call: the stream
    /// reports it (`Event::Mark`, for the state file) right after handing on
    /// the data of the events `feed` dispatched. Empty: the server reset it.
    pub fn take_new_id(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.new_id) {
            return None;
        }
        Some(self.last_id.clone().unwrap_or_default())
    }

    /// Bytes held (the current line and the pending event's data).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.line.len() + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, chunks: &[&[u8]]) -> (String, Parser) {
        let mut p = Parser::new(name, 1000);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        (String::from_utf8(out).unwrap(), p)
    }

    #[test]
    fn whatwg_framing() {
        let (out, p) = run(
            "t1",
            &[b"\xEF\xBB\xBF: hello\r\ndata: one\r\ndata:two\r\n\r\nevent: x\nid: 7\ndata:  three\n\nretry: 250\nfoo: bar\ndata\n\n", b"data: no blank line at the end\n"],
        );
        assert_eq!(out, "one\ntwo\n three\n\n");
        assert_eq!(p.retry, Some(Duration::from_millis(250)));
        assert_eq!(last_event_id("t1").as_deref(), Some("7"));
    }

    #[test]
    fn lines_split_anywhere_and_cr_only() {
        let input = b"data: a\r\rdata: b\r\n\r\nid: 1\ndata: c\n\n";
        let mut p = Parser::new("t2", 1000);
        let mut out = Vec::new();
        for b in input.chunks(1) {
            p.feed(b, &mut out);
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nc\n");
        assert_eq!(last_event_id("t2").as_deref(), Some("1"));
    }

    #[test]
    fn bad_retry_and_nul_id_are_ignored() {
        let (out, p) = run("t3", &[b"retry: soon\nretry: 12x\nid: a\0b\ndata: x\n\n"]);
        assert_eq!(out, "x\n");
        assert_eq!(p.retry, None);
        assert_eq!(last_event_id("t3"), None);
    }

    #[test]
    fn endless_event_is_bounded() {
        let mut p = Parser::new("t4", 100);
        let mut out = Vec::new();
        let line = format!("data: {}\n", "y".repeat(90));
        for _ in 0..30_000 {
            p.feed(line.as_bytes(), &mut out);
            assert!(p.held() <= MAX_EVENT_BYTES + 200);
        }
        assert!(
            out.len() >= 2 * MAX_EVENT_BYTES - 1000,
            "data was passed on: {}",
            out.len()
        );
        // An endless single line is cut.
        let mut p = Parser::new("t5", 100);
        let mut out = Vec::new();
        p.feed(b"data: ", &mut out);
        for _ in 0..1000 {
            p.feed(&[b'z'; 1000], &mut out);
            assert!(p.held() <= 200);
        }
        p.feed(b"\n\ndata: after\n\n", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("\nafter\n"), "{}", &s[s.len() - 20..]);
    }

    #[test]
    fn id_persists_across_events_and_seeds_next_parser() {
        let (_, _) = run("t6", &[b"id: 41\ndata: a\n\ndata: b\n\n"]);
        assert_eq!(last_event_id("t6").as_deref(), Some("41"));
        let p = Parser::new("t6", 100);
        assert_eq!(p.id_buffer.as_deref(), Some("41"));
        set_last_event_id("t6", "");
        assert_eq!(last_event_id("t6"), None);
    }

    #[test]
    fn new_ids_are_reported_once_each() {
        set_last_event_id("t7", "5");
        let mut p = Parser::new("t7", 100);
        let mut out = Vec::new();
        // The seeded id is not new; a repeated id is not new either.
        p.feed(b"data: a\n\nid: 5\ndata: b\n\n", &mut out);
        assert_eq!(p.take_new_id(), None);
        p.feed(b"id: 6\ndata: c\n\nid: 7\ndata: d\n\nid: 8\n", &mut out);
        assert_eq!(p.take_new_id().as_deref(), Some("7"));
        assert_eq!(p.take_new_id(), None);
        // Not dispatched yet: no blank line after `id: 8`.
        assert_eq!(last_event_id("t7").as_deref(), Some("7"));
        p.feed(b"\nid\ndata: e\n\n", &mut out);
        assert_eq!(p.take_new_id().as_deref(), Some(""));
        assert_eq!(last_event_id("t7"), None);
    }
}
