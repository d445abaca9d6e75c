//! Positions that survive a restart (`--state FILE` / `state_file:`): for each
//! file input, where the last whole line handed to the matcher ended, in
//! which file (device + inode) and with which first bytes (a fingerprint, so
//! a reused inode or a copytruncate is not mistaken for the same file); for
//! each SSE stream, the last event id.
//!
//! Inputs never write here. They send an `Event::Mark` right after the batch
//! it covers; the matcher records it after matching that batch (its alerts are
//! already with the senders) and saves once a second and at exit. So a saved
//! position never runs ahead of what was matched. While running, each save
//! writes the positions recorded at the previous tick: alerts handed to a
//! sender a second ago are delivered (a sender buffers, a webhook takes a
//! round trip), so a kill -9 loses no line unless a destination is more than
//! a second behind, and repeats at most the last one to two seconds of lines.
//! The save at exit (after the senders finished) writes the latest positions.
//!
//! The file is small versioned JSON, written atomically (temp file in the same
//! directory, fsync, rename over, fsync of the directory):
//!
//! ```json
//! {"version":1,
//!  "files":{"/var/log/app.log":{"dev":2049,"ino":1234,"fp":"af63bd4c8601b7df","fp_len":256,"pos":81920,
//!                               "rotated":[{"dev":2049,"ino":1200,"fp":"…","fp_len":256,"pos":4096}]}},
//!  "streams":{"k8s":"event-id-42"}}
//! ```
//!
//! `rotated` (usually absent) lists older files of the same path still being
//! finished, oldest first. A corrupt, truncated or foreign file is reported
//! and ignored (a fresh start); a bad entry costs only its own input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The format written and understood.
pub const VERSION: u64 = 1;
/// How many first bytes of a file its fingerprint covers.
pub const FP_BYTES: usize = 256;

/// One file's saved place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePos {
    pub dev: u64,
    pub ino: u64,
    /// FNV-1a 64 of the first `fp_len` bytes, as 16 hex digits.
    #[serde(with = "hex64")]
    pub fp: u64,
    /// `FP_BYTES`, or fewer when the file was shorter.
    pub fp_len: u32,
    /// Byte just after the last whole line handed to the matcher.
    pub pos: u64,
}

/// How one path's entry is written: the file at the path (or last seen
/// there) at the top level, older files still being finished in `rotated`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRepr {
    dev: u64,
    ino: u64,
    #[serde(with = "hex64")]
    fp: u64,
    fp_len: u32,
    pos: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rotated: Vec<FilePos>,
}

/// What an input reports after a batch (`Event::Mark`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The files open for one configured path (absolute), oldest first: the
    /// rotated ones still being finished, then the one at the path. Empty:
    /// nothing is open for it any more, forget it.
    File { path: String, files: Vec<FilePos> },
    /// The last event id an SSE stream delivered (empty: the server reset
    /// it, forget it). The stream sends this right after the `Event::Lines`
    /// of the event that carried the id, and starts with
    /// `State::streams[name]` as its `Last-Event-ID` (main hands it over at
    /// spawn, as it hands file positions to the file input).
    Stream { name: String, last_event_id: String },
}

/// Everything saved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// Absolute path -> files, oldest first (the last one is the file at the path).
    pub files: BTreeMap<String, Vec<FilePos>>,
    /// Stream name -> last event id.
    pub streams: BTreeMap<String, String>,
}

impl State {
    /// Apply a mark; whether anything changed.
    pub fn record(&mut self, mark: Mark) -> bool {
        match mark {
            Mark::File { path, files } if files.is_empty() => self.files.remove(&path).is_some(),
            Mark::File { path, files } => match self.files.get_mut(&path) {
                Some(v) if *v == files => false,
                Some(v) => {
                    *v = files;
                    true
                }
                None => {
                    self.files.insert(path, files);
                    true
                }
            },
            Mark::Stream {
                name,
                last_event_id,
            } if last_event_id.is_empty() => self.streams.remove(&name).is_some(),
            Mark::Stream {
                name,
                last_event_id,
            } => {
                if self.streams.get(&name) == Some(&last_event_id) {
                    return false;
                }
                self.streams.insert(name, last_event_id);
                true
            }
        }
    }

    pub fn encode(&self) -> String {
        let files: BTreeMap<&str, EntryRepr> = self
            .files
            .iter()
            .filter_map(|(p, v)| {
                let (top, rotated) = v.split_last()?;
                Some((
                    p.as_str(),
                    EntryRepr {
                        dev: top.dev,
                        ino: top.ino,
                        fp: top.fp,
                        fp_len: top.fp_len,
                        pos: top.pos,
                        rotated: rotated.to_vec(),
                    },
                ))
            })
            .collect();
        let v = serde_json::json!({ "version": VERSION, "files": files, "streams": self.streams });
        let mut s = serde_json::to_string(&v).expect("state encodes");
        s.push('\n');
        s
    }

    /// Read a state file's text. `Err` for a file that cannot be used at all
    /// (not JSON, truncated, another version); entries that are bad on their
    /// own are dropped with a warning each (returned), the rest kept.
    pub fn decode(text: &str) -> Result<(State, Vec<String>), String> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("it is not a valid state file ({e})"))?;
        let obj = v
            .as_object()
            .ok_or("it is not a valid state file (not a JSON object)")?;
        match obj.get("version").and_then(|v| v.as_u64()) {
            Some(VERSION) => {}
            Some(n) => {
                return Err(format!(
                    "it has version {n}; this tinywatcher reads version {VERSION}"
                ))
            }
            None => return Err("it is not a tinywatcher state file (no `version`)".into()),
        }
        let mut st = State::default();
        let mut warnings = Vec::new();
        if let Some(files) = obj.get("files") {
            let files = files.as_object().ok_or("`files` is not a map")?;
            for (path, e) in files {
                match EntryRepr::deserialize(e) {
                    Ok(r) => {
                        let mut v = r.rotated;
                        v.push(FilePos {
                            dev: r.dev,
                            ino: r.ino,
                            fp: r.fp,
                            fp_len: r.fp_len,
                            pos: r.pos,
                        });
                        st.files.insert(path.clone(), v);
                    }
                    Err(e) => warnings.push(format!(
                        "the entry for {path} is not valid ({e}); starting fresh for it"
                    )),
                }
            }
        }
        if let Some(streams) = obj.get("streams") {
            let streams = streams.as_object().ok_or("`streams` is not a map")?;
            for (name, id) in streams {
                match id.as_str() {
                    Some(id) => {
                        st.streams.insert(name.clone(), id.to_string());
                    }
                    None => warnings.push(format!(
                        "the entry for stream {name} is not a string; starting fresh for it"
                    )),
                }
            }
        }
        Ok((st, warnings))
    }
}

/// The state file, owned by the matcher thread.
pub struct Store {
    path: PathBuf,
    /// As recorded from the marks.
    pub state: State,
    /// `state` as of the previous tick: what the next tick saves.
    staged: Option<State>,
    /// What the file holds.
    saved: State,
    /// A save failed and was logged; the next failure is not logged again.
    failing: bool,
    /// Held (flock) for as long as the store lives.
    _lock: File,
}

impl Store {
    /// Check that the state file's directory is writable (so a run cannot
    /// lose its positions only at the first save) and load what is there.
    /// `Err` is a usage error (exit 2); a bad file is a warning and a fresh start.
    pub fn open(path: &Path) -> Result<Store, String> {
        let shown = path.display();
        let dir = parent_dir(path);
        if path.is_dir() {
            return Err(format!("state file {shown} is a directory"));
        }
        // The lock file beside it proves the directory writable, and keeps two
        // runs (an overlapping cron job) from sharing one state: both would
        // alert the same lines. It stays locked while this Store lives.
        let lock_path = dir.join(format!(".{}.lock", file_name(path)));
        let lock = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                return Err(format!(
                    "state file {shown}: cannot write in its directory {}: {e}",
                    dir.display()
                ))
            }
        };
        // SAFETY: flock only looks at the descriptor, which `lock` owns.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            let e = io::Error::last_os_error();
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock => format!(
                    "state file {shown} is in use by another tinywatcher (locked: {})",
                    lock_path.display()
                ),
                _ => format!(
                    "state file {shown}: cannot lock {}: {e}",
                    lock_path.display()
                ),
            });
        }
        let state = match std::fs::read(path) {
            Ok(bytes) => match State::decode(&String::from_utf8_lossy(&bytes)) {
                Ok((st, warnings)) => {
                    for w in warnings {
                        log::warn!("state file {shown}: {w}");
                    }
                    log::debug!(
                        "state file {shown}: {} file position(s), {} stream id(s)",
                        st.files.len(),
                        st.streams.len()
                    );
                    st
                }
                Err(e) => {
                    log::warn!("state file {shown}: {e}; ignoring it and starting fresh (it is overwritten at the next save)");
                    State::default()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::debug!("state file {shown} does not exist yet: starting fresh");
                State::default()
            }
            Err(e) => {
                log::warn!("state file {shown}: cannot read it ({e}); starting fresh");
                State::default()
            }
        };
        Ok(Store {
            path: path.to_path_buf(),
            saved: state.clone(),
            state,
            staged: None,
            failing: false,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&mut self, mark: Mark) {
        self.state.record(mark);
    }

    /// The matcher's 1 s tick: save what was recorded by the previous tick
    /// (if it changed), stage what is recorded now.
    pub fn tick(&mut self) {
        if let Some(st) = self.staged.take() {
            if st != self.saved {
                self.write(st);
            }
        }
        if self.state != self.saved {
            self.staged = Some(self.state.clone());
        }
    }

    /// Save the latest positions (at exit, once the senders are done).
    pub fn save(&mut self) {
        self.staged = None;
        self.write(self.state.clone());
    }

    /// Write `st` to the file; a failure is logged (once) and retried at the next tick.
    fn write(&mut self, st: State) {
        match save_atomic(&self.path, st.encode().as_bytes()) {
            Ok(()) => {
                self.saved = st;
                if std::mem::take(&mut self.failing) {
                    log::info!("state file {}: saved again", self.path.display());
                }
                log::trace!("state file {}: saved", self.path.display());
            }
            Err(e) => {
                if !self.failing {
                    log::error!(
                        "state file {}: cannot save: {e}; will retry",
                        self.path.display()
                    );
                    self.failing = true;
                }
            }
        }
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned())
}

/// Replace `path` with `data` so that a crash leaves the old or the new file,
/// never a mix: temp file in the same directory, fsync, rename, fsync the directory.
pub fn save_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// FNV-1a, 64 bits: small, fast, good enough to tell files apart by their first bytes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of an open file: its first `FP_BYTES` (or all of it when shorter).
pub fn fingerprint(file: &File) -> io::Result<(u64, u32)> {
    let mut buf = [0u8; FP_BYTES];
    let mut n = 0;
    while n < FP_BYTES {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((fnv1a(&buf[..n]), n as u32))
}

/// Does `file` still start with the bytes `p` was fingerprinted from?
pub fn fingerprint_matches(file: &File, p: &FilePos) -> io::Result<bool> {
    let len = p.fp_len as usize;
    if len > FP_BYTES {
        return Ok(false);
    }
    let mut buf = [0u8; FP_BYTES];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..len], n as u64) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(fnv1a(&buf[..len]) == p.fp)
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16)
            .map_err(|_| serde::de::Error::custom(format!("`fp` {s:?} is not hex")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(ino: u64, p: u64) -> FilePos {
        FilePos {
            dev: 2049,
            ino,
            fp: fnv1a(b"first line\n"),
            fp_len: 11,
            pos: p,
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tw-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut st = State::default();
        st.files.insert("/var/log/a.log".into(), vec![pos(7, 100)]);
        st.files.insert(
            "/var/log/b \"q\".log".into(),
            vec![pos(1, 5), pos(u64::MAX, 1 << 40)],
        );
        st.streams.insert("k8s".into(), "id-42".into());
        let text = st.encode();
        assert!(text.contains("\"version\":1"), "{text}");
        assert!(text.contains("\"rotated\":["), "{text}");
        let (back, warnings) = State::decode(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, st);
    }

    #[test]
    fn decode_refuses_garbage_truncated_and_foreign() {
        let mut st = State::default();
        st.files.insert("/a".into(), vec![pos(7, 100)]);
        let good = st.encode();
        assert!(State::decode("garbage\0\x01")
            .unwrap_err()
            .contains("not a valid state file"));
        assert!(State::decode(&good[..good.len() / 2])
            .unwrap_err()
            .contains("not a valid state file"));
        assert!(State::decode("").is_err());
        assert!(State::decode("[1,2]").is_err());
        assert!(State::decode("{\"files\":{}}")
            .unwrap_err()
            .contains("no `version`"));
        assert!(
            State::decode(&good.replace("\"version\":1", "\"version\":999"))
                .unwrap_err()
                .contains("version 999")
        );
    }

    #[test]
    fn a_bad_entry_costs_only_itself() {
        let text = r#"{"version":1,"files":{"/a":{"dev":1,"ino":2,"fp":"00000000000000ff","fp_len":3,"pos":9},
            "/b":{"dev":"x"},"/c":{"dev":1,"ino":2,"fp":"zz","fp_len":3,"pos":9}},"streams":{"s":"7","t":5}}"#;
        let (st, warnings) = State::decode(text).unwrap();
        assert_eq!(st.files.keys().collect::<Vec<_>>(), vec!["/a"]);
        assert_eq!(
            st.files["/a"],
            vec![FilePos {
                dev: 1,
                ino: 2,
                fp: 255,
                fp_len: 3,
                pos: 9
            }]
        );
        assert_eq!(st.streams.len(), 1);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("/b")));
    }

    #[test]
    fn record_marks() {
        let mut st = State::default();
        assert!(st.record(Mark::File {
            path: "/a".into(),
            files: vec![pos(1, 10)]
        }));
        assert!(!st.record(Mark::File {
            path: "/a".into(),
            files: vec![pos(1, 10)]
        }));
        assert!(st.record(Mark::File {
            path: "/a".into(),
            files: vec![pos(1, 20)]
        }));
        assert!(st.record(Mark::Stream {
            name: "s".into(),
            last_event_id: "9".into()
        }));
        assert!(!st.record(Mark::Stream {
            name: "s".into(),
            last_event_id: "9".into()
        }));
        assert!(st.record(Mark::Stream {
            name: "s".into(),
            last_event_id: "".into()
        }));
        assert!(st.streams.is_empty());
        assert!(st.record(Mark::File {
            path: "/a".into(),
            files: vec![]
        }));
        assert!(!st.record(Mark::File {
            path: "/a".into(),
            files: vec![]
        }));
        assert!(st.files.is_empty());
    }

    #[test]
    fn fingerprint_of_first_bytes() {
        let d = tmp("fp");
        let p = d.join("f");
        std::fs::write(&p, "first line\n").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(fingerprint(&f).unwrap(), (fnv1a(b"first line\n"), 11));
        assert!(fingerprint_matches(&f, &pos(1, 0)).unwrap());
        // Grown past FP_BYTES: the fingerprint stops there; the old short one still matches.
        std::fs::write(&p, format!("first line\n{}", "x".repeat(1000))).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(fingerprint(&f).unwrap().1, FP_BYTES as u32);
        assert!(fingerprint_matches(&f, &pos(1, 0)).unwrap());
        // Rewritten (copytruncate then new lines) or shorter: no match.
        std::fs::write(&p, "other line\n").unwrap();
        assert!(!fingerprint_matches(&File::open(&p).unwrap(), &pos(1, 0)).unwrap());
        std::fs::write(&p, "first").unwrap();
        assert!(!fingerprint_matches(&File::open(&p).unwrap(), &pos(1, 0)).unwrap());
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn atomic_save_replaces_and_leaves_no_temp() {
        let d = tmp("save");
        let p = d.join("state");
        std::fs::write(&p, "old garbage").unwrap();
        // What the file holds (the store itself is locked while open).
        let on_disk = || {
            State::decode(&std::fs::read_to_string(&p).unwrap_or_default())
                .map(|x| x.0)
                .unwrap_or_default()
        };
        let mut s = Store::open(&p).unwrap();
        assert_eq!(s.state, State::default());
        s.record(Mark::File {
            path: "/x".into(),
            files: vec![pos(3, 33)],
        });
        // A tick stages, the next one writes what was staged.
        s.tick();
        assert_eq!(on_disk(), State::default());
        s.record(Mark::File {
            path: "/x".into(),
            files: vec![pos(3, 44)],
        });
        s.tick();
        assert_eq!(on_disk().files["/x"], vec![pos(3, 33)]);
        s.save();
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![".state.lock", "state"],
            "temp or probe files left behind"
        );
        assert!(
            Store::open(&p).err().is_some_and(|e| e.contains("in use")),
            "a second store must be refused while the first lives"
        );
        drop(s);
        let again = Store::open(&p).unwrap();
        assert_eq!(again.state.files["/x"], vec![pos(3, 44)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_that_is_not_writable_is_an_error_at_open() {
        let d = tmp("nowrite");
        let f = d.join("file.txt");
        std::fs::write(&f, "").unwrap();
        let e = Store::open(&f.join("state")).err().unwrap();
        assert!(e.contains("cannot write in its directory"), "{e}");
        assert!(Store::open(&d).err().unwrap().contains("is a directory"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
