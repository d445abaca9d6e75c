//! File input: follows every configured file and glob with `tail -F`
//! semantics on ONE thread. One inotify instance watches the files' parent
//! directories, not the files: rename-rotation, a file that does not exist
//! yet and a new glob match all show up as directory events, and an append
//! wakes the thread within a millisecond. A rescan every second (and at once
//! on any create/rename/delete/attribute event) re-expands globs, compares the
//! inode at each path with the open one, and retries what failed. Without
//! inotify (not Linux, or no instance left) the same loop polls every 250 ms.
//!
//! Idle cost: one fd per file, no thread per file, a 250 ms poll timeout to
//! notice the stop flag. Reading: 128 KiB chunks, one `Event::Lines` per
//! chunk's worth of whole lines, one shared read buffer.
//!
//! With `--state`, each path starts from its saved files and positions (see
//! `plan_resume`: a file rotated while we were not running is found by inode
//! in the same directory and finished first), and an `Event::Mark` follows the
//! batches of each read turn: the files open for the path and the byte after
//! the last whole line sent. With `--once`, no inotify: every file is read to
//! its current end, then `Event::End` ends the run.

use super::lines::Lines;
use super::send;
use crate::config::{is_glob, FileSpec, ReadFrom};
use crate::event::{Event, Source, Stop};
use crate::state::{self, FilePos, Mark};
use crate::stats::{self, STATS};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes per read.
const CHUNK: usize = 128 * 1024;
/// Chunks one file may read before the others get a turn (fairness while catching up).
const TURN: usize = 8;
/// Longest wait between looks at the stop flag (and poll interval without inotify).
const TICK: Duration = Duration::from_millis(250);
/// Globs re-expanded, paths compared and failures retried this often.
const RESCAN: Duration = Duration::from_secs(1);
/// A rotated-away or deleted file is still read until it has not grown for this long
/// (an application writes to its old file until it reopens its log).
const LINGER: Duration = Duration::from_secs(5);

/// How the file input starts and ends (`--once`, `--state`).
#[derive(Default)]
pub struct Options {
    /// Read every file to its current end, send `Event::End`, stop.
    pub once: bool,
    /// Saved positions to start from; also: send `Event::Mark`s.
    pub resume: Option<Resume>,
    /// `--until-match`: poll for the first `LAZY_WATCH` before creating the
    /// inotify instance. A match in what the files already hold then ends the
    /// run without one: tearing an inotify instance down at exit costs the
    /// kernel an RCU grace period (5-20 ms), most of such a run's time.
    pub lazy_watch: bool,
}

/// How long `lazy_watch` polls (every `LAZY_POLL`) before using inotify.
const LAZY_WATCH: Duration = Duration::from_millis(100);
const LAZY_POLL: Duration = Duration::from_millis(5);

/// The file positions loaded from a state file.
pub struct Resume {
    /// The state file, named in warnings.
    pub state_file: PathBuf,
    /// Absolute path -> its files, oldest first (as `state::State::files`).
    pub files: BTreeMap<String, Vec<FilePos>>,
}

/// Follow `files` until `stop` (or until the matcher is gone), resuming saved
/// positions and/or reading once as `opts` says.
pub fn spawn(
    files: Vec<FileSpec>,
    max_line_bytes: usize,
    tx: Sender<Event>,
    stop: Stop,
    opts: Options,
) -> JoinHandle<()> {
    // The first scan (opening each file, placing it at its end or its saved
    // position) happens before this returns: a line appended once `watch`
    // says it runs is never missed.
    let mut f = Follower::new(files, max_line_bytes, tx, stop, opts);
    let _ = f.rescan(true);
    std::thread::Builder::new()
        .name("input:files".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let _ = if f.once { f.run_once() } else { f.run() };
            log::debug!("file input stopped");
        })
        .expect("cannot start the file input thread")
}

/// The loop ends: stop flag set or the matcher is gone.
type Quit = super::Closed;

/// One configured path or glob.
struct Spec {
    pattern: String,
    glob: bool,
    read_from: ReadFrom,
    /// The directory to watch for new matches (a glob's longest literal prefix).
    base: PathBuf,
    /// "no file matches yet" was said.
    said_nothing: bool,
}

/// An open file being read.
struct Open {
    file: File,
    /// (dev, inode): how a rotation is told from an append.
    id: (u64, u64),
    pos: u64,
    lines: Lines,
    /// Last time it grew (or was detached): lingering old files close after `LINGER` of quiet.
    grew: Instant,
    /// Fingerprint of its first bytes and how many (`--state`), computed when first needed.
    fp: Option<(u64, u32)>,
}

/// One path being followed (a plain path, or one a glob produced).
struct Tracked {
    source: Source,
    /// The absolute path: its key in the state file.
    abs: String,
    /// The files and positions the matcher was last told (`--state`); `None`: no entry.
    last_mark: Option<Vec<FilePos>>,
    from_glob: bool,
    dir: PathBuf,
    /// When the path is a symlink: where it points (its directory is watched
    /// too, since appends show up there).
    link: Option<PathBuf>,
    /// The file now at the path.
    cur: Option<Open>,
    /// Files that were at the path before (rotated, deleted), read to their end first.
    old: Vec<Open>,
    /// It existed when we started and `read_from: end`: (dev, ino, size then).
    initial: Option<(u64, u64, u64)>,
    /// The problem last logged (each distinct one is logged and counted once).
    problem: Option<String>,
    said_waiting: bool,
    /// Rescan generation that last produced this path.
    seen: u64,
    /// Has (or may have) data to read.
    due: bool,
}

struct Io {
    tx: Sender<Event>,
    stop: Stop,
    max: usize,
    /// Lines were sent since this was last cleared (a mark may be due).
    sent: bool,
}

impl Io {
    fn send(&mut self, source: &Source, text: String) -> Result<(), Quit> {
        self.sent = true;
        send(
            &self.tx,
            &self.stop,
            Event::Lines {
                source: source.clone(),
                text,
            },
        )
    }
}

struct Follower {
    specs: Vec<Spec>,
    files: BTreeMap<PathBuf, Tracked>,
    /// `dir/name` as an inotify event spells it -> key in `files`.
    index: HashMap<PathBuf, PathBuf>,
    index_stale: bool,
    notify: Option<notify::Inotify>,
    /// `lazy_watch`: when to create `notify`.
    watch_from: Option<Instant>,
    io: Io,
    gen: u64,
    /// `--once`: read to the end, then stop.
    once: bool,
    /// `--state`: send `Event::Mark`s.
    marks: bool,
    /// Saved positions, used up by the first scan.
    resume: Option<Resume>,
    /// State entries to drop (paths no longer followed).
    forgets: Vec<String>,
}

/// What a wait for inotify events found.
#[derive(Debug)]
enum Change {
    /// An append (or close after writing) to `dir/name`.
    Wrote(PathBuf),
    /// Something was created, renamed, deleted or changed attributes: rescan.
    Rescan,
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The longest leading part of a glob without glob characters: the directory to watch.
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let comps: Vec<_> = Path::new(pattern).components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

impl Follower {
    fn new(
        files: Vec<FileSpec>,
        max: usize,
        tx: Sender<Event>,
        stop: Stop,
        opts: Options,
    ) -> Follower {
        let specs = files
            .into_iter()
            .map(|f| {
                let glob = is_glob(&f.path);
                let base = if glob {
                    glob_base(&f.path)
                } else {
                    parent_dir(Path::new(&f.path))
                };
                Spec {
                    pattern: f.path,
                    glob,
                    read_from: f.read_from,
                    base,
                    said_nothing: false,
                }
            })
            .collect();
        Follower {
            specs,
            files: BTreeMap::new(),
            index: HashMap::new(),
            index_stale: true,
            notify: if opts.once || opts.lazy_watch {
                None
            } else {
                notify::Inotify::new()
            },
            watch_from: (opts.lazy_watch && !opts.once).then(|| Instant::now() + LAZY_WATCH),
            io: Io {
                tx,
                stop,
                max,
                sent: false,
            },
            gen: 0,
            once: opts.once,
            marks: opts.resume.is_some(),
            resume: opts.resume,
            forgets: Vec::new(),
        }
    }

    /// `--once`: read every file (rotated ones first) to its current end, then
    /// say where each one ended and that the input is done.
    fn run_once(&mut self) -> Result<(), Quit> {
        self.send_marks()?;
        self.service()?;
        // Rotated files are finished for good: a last line without newline counts.
        for t in self.files.values_mut() {
            for mut o in t.old.drain(..) {
                if let Some(text) = o.lines.flush_partial() {
                    self.io.send(&t.source, text)?;
                }
            }
        }
        self.send_marks()?;
        send(
            &self.io.tx,
            &self.io.stop,
            Event::End {
                source: Arc::from("files"),
            },
        )
    }

    /// Tell the matcher about paths whose files or positions changed (after a
    /// rescan), and about paths no longer followed.
    fn send_marks(&mut self) -> Result<(), Quit> {
        if !self.marks {
            return Ok(());
        }
        for path in std::mem::take(&mut self.forgets) {
            send(
                &self.io.tx,
                &self.io.stop,
                Event::Mark {
                    source: Arc::from("files"),
                    mark: Mark::File {
                        path,
                        files: Vec::new(),
                    },
                },
            )?;
        }
        for t in self.files.values_mut() {
            sync_mark(t, &self.io)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), Quit> {
        let mut next_rescan = Instant::now() + RESCAN;
        let mut changes = Vec::new();
        self.send_marks()?;
        loop {
            self.service()?;
            if self.io.stop.is_stopped() {
                return Err(super::Closed);
            }
            let mut timeout = TICK.min(next_rescan.saturating_duration_since(Instant::now()));
            if self.watch_from.is_some() {
                timeout = LAZY_POLL;
            }
            changes.clear();
            match &mut self.notify {
                Some(n) => n.wait(timeout, &mut changes),
                None => std::thread::sleep(timeout),
            }
            let mut rescan = Instant::now() >= next_rescan;
            if self.watch_from.is_some_and(|t| Instant::now() >= t) {
                // The lazy start is over: watch (the rescan adds the watches).
                self.watch_from = None;
                self.notify = notify::Inotify::new();
                rescan = true;
            }
            for c in changes.drain(..) {
                match c {
                    Change::Rescan => rescan = true,
                    Change::Wrote(p) => {
                        match self.index.get(&p).and_then(|k| self.files.get_mut(k)) {
                            Some(t) => t.due = true,
                            // A rotated-away name: read the files we still hold open.
                            None => self
                                .files
                                .values_mut()
                                .filter(|t| !t.old.is_empty())
                                .for_each(|t| t.due = true),
                        }
                    }
                }
            }
            // Files no watch covers are polled.
            let notify = &self.notify;
            for t in self.files.values_mut() {
                if notify.as_ref().is_none_or(|n| !n.is_watched(&t.dir)) {
                    t.due = true;
                }
            }
            if rescan {
                self.rescan(false)?;
                self.send_marks()?;
                next_rescan = Instant::now() + RESCAN;
            }
        }
    }

    /// Read every file that is due, a turn each, until none has more.
    fn service(&mut self) -> Result<(), Quit> {
        loop {
            let mut more = false;
            for (key, t) in self.files.iter_mut() {
                if !t.due {
                    continue;
                }
                t.due = false;
                self.io.sent = false;
                let got_more = read_tracked(key, t, &mut self.io)?;
                if self.marks && self.io.sent {
                    sync_mark(t, &self.io)?;
                }
                if got_more {
                    t.due = true;
                    more = true;
                }
            }
            if !more {
                return Ok(());
            }
            if self.io.stop.is_stopped() {
                return Err(super::Closed);
            }
        }
    }

    /// Expand globs, compare every path with its open file, retry failures,
    /// close old files gone quiet, update the watches.
    fn rescan(&mut self, first: bool) -> Result<(), Quit> {
        self.gen += 1;
        let gen = self.gen;
        let mut linked = Vec::new();
        for si in 0..self.specs.len() {
            let paths: Vec<PathBuf> = if self.specs[si].glob {
                expand(&self.specs[si].pattern)
            } else {
                vec![PathBuf::from(&self.specs[si].pattern)]
            };
            let spec = &mut self.specs[si];
            if spec.glob && paths.is_empty() && !spec.said_nothing {
                if self.once {
                    log::info!("no file matches {}", spec.pattern);
                } else {
                    log::info!("no file matches {} yet; waiting for one", spec.pattern);
                }
                spec.said_nothing = true;
            }
            for p in paths {
                if let Some(t) = self.files.get_mut(&p) {
                    t.seen = gen;
                    continue;
                }
                spec.said_nothing = false;
                let abs = abs_key(&p);
                // A saved entry decides where the path starts; without one, `read_from` does.
                let saved = if first {
                    self.resume
                        .as_mut()
                        .and_then(|r| r.files.remove_entry(&abs))
                } else {
                    None
                };
                let (mut cur, mut old, mut initial) = (None, Vec::new(), None);
                if let (Some((_, v)), Some(r)) = (&saved, &self.resume) {
                    (cur, old) = plan_resume(&p, v, &r.state_file, self.io.max);
                } else if first && spec.read_from == ReadFrom::End {
                    initial = std::fs::metadata(&p)
                        .ok()
                        .filter(|m| m.is_file())
                        .map(|m| (m.dev(), m.ino(), m.len()));
                }
                if spec.glob && !first {
                    log::info!(
                        "{} matches {}: a new file to follow",
                        p.display(),
                        spec.pattern
                    );
                }
                let resumed = cur.is_some();
                let t = Tracked {
                    source: Arc::from(format!("file:{}", p.display())),
                    abs,
                    last_mark: saved.map(|(_, v)| v),
                    from_glob: spec.glob,
                    dir: parent_dir(&p),
                    link: None,
                    cur,
                    old,
                    initial,
                    problem: None,
                    said_waiting: false,
                    seen: gen,
                    due: true,
                };
                self.files.insert(p.clone(), t);
                self.index_stale = true;
                if resumed {
                    linked.push(p);
                }
            }
        }
        for p in linked {
            self.note_link(&p);
        }
        if first {
            self.resume_leftovers(gen);
        }
        // Glob matches that are gone: finish what is open, then forget them.
        for (key, t) in self.files.iter_mut() {
            if t.from_glob && t.seen != gen {
                if let Some(mut o) = t.cur.take() {
                    log::info!("{} no longer matches: finishing it", key.display());
                    o.grew = Instant::now();
                    t.old.push(o);
                }
            }
        }
        // Paths already followed first, so a rename within a glob is adopted, not re-read.
        let keys: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, t)| t.cur.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.check(&k);
        }
        let keys: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, t)| t.cur.is_none() && t.seen == gen)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.check(&k);
        }
        // Old files that went quiet: read what is left, flush a last partial line, close.
        for (key, t) in self.files.iter_mut() {
            t.due = true;
            let mut i = 0;
            while i < t.old.len() {
                if t.old[i].grew.elapsed() < LINGER {
                    i += 1;
                    continue;
                }
                if read_open(key, &mut t.old[i], &t.source, &mut self.io)? != Got::Done {
                    i += 1;
                    continue;
                }
                let mut o = t.old.remove(i);
                if let Some(text) = o.lines.flush_partial() {
                    self.io.send(&t.source, text)?;
                }
                log::debug!("{}: closed the old file (byte {})", key.display(), o.pos);
            }
        }
        let before = self.files.len();
        let forgets = &mut self.forgets;
        self.files.retain(|_, t| {
            let gone = t.from_glob && t.seen != gen && t.cur.is_none() && t.old.is_empty();
            if gone && t.last_mark.is_some() {
                forgets.push(t.abs.clone());
            }
            !gone
        });
        if self.files.len() != before {
            self.index_stale = true;
        }
        if let Some(n) = &mut self.notify {
            let wanted: BTreeSet<PathBuf> = self
                .files
                .values()
                .flat_map(|t| {
                    std::iter::once(t.dir.clone()).chain(t.link.as_deref().map(parent_dir))
                })
                .chain(self.specs.iter().map(|s| s.base.clone()))
                .collect();
            n.sync(&wanted);
        }
        if self.index_stale {
            self.index =
                self.files
                    .iter()
                    .flat_map(|(k, t)| {
                        let real = t.link.as_deref().and_then(|l| {
                            l.file_name().map(|n| (parent_dir(l).join(n), k.clone()))
                        });
                        k.file_name()
                            .map(|n| (t.dir.join(n), k.clone()))
                            .into_iter()
                            .chain(real)
                    })
                    .collect();
            self.index_stale = false;
        }
        Ok(())
    }

    /// Compare the path with the file open for it; open, switch or note a problem.
    fn check(&mut self, key: &Path) {
        let name = key.display();
        let once = self.once;
        let meta = std::fs::metadata(key);
        let Some(t) = self.files.get_mut(key) else {
            return;
        };
        let id = match meta {
            Ok(m) if m.is_file() => (m.dev(), m.ino()),
            Ok(m) => {
                if let Some(mut o) = t.cur.take() {
                    log::info!("{name} was replaced: finishing the old file");
                    o.grew = Instant::now();
                    t.old.push(o);
                }
                let what = if m.is_dir() {
                    "is a directory"
                } else {
                    "is not a regular file"
                };
                problem(t, key, what.to_string());
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                t.problem = None;
                if let Some(mut o) = t.cur.take() {
                    if t.from_glob {
                        log::info!("{name} was moved or removed: finishing it");
                    } else {
                        log::info!("{name} was moved or removed: finishing it, then waiting for the path to reappear");
                        t.said_waiting = true;
                    }
                    o.grew = Instant::now();
                    t.old.push(o);
                } else if !t.from_glob && !t.said_waiting {
                    if once {
                        log::info!("{name} does not exist; nothing to read");
                    } else {
                        log::info!("{name} does not exist yet; waiting for it");
                    }
                    t.said_waiting = true;
                }
                return;
            }
            Err(e) => {
                problem(t, key, format!("cannot look at it: {e}"));
                return;
            }
        };
        if let Some(c) = &t.cur {
            if c.id == id {
                return;
            }
            log::info!("{name} rotated: finishing the old file, then reading the new one");
            let mut o = t.cur.take().unwrap();
            o.grew = Instant::now();
            t.old.push(o);
        }
        // The same file under a new name (renamed within a glob, or moved away
        // and back): continue where it was instead of reading it again.
        let adopted = self.files.iter_mut().find_map(|(k, o)| {
            let i = o.old.iter().position(|x| x.id == id)?;
            Some((k.clone(), o.old.remove(i)))
        });
        let t = self.files.get_mut(key).unwrap();
        if let Some((from, mut o)) = adopted {
            if from != key {
                log::info!(
                    "{name} is {} renamed: continuing at byte {}",
                    from.display(),
                    o.pos
                );
            } else {
                log::info!("{name} is back: continuing at byte {}", o.pos);
            }
            o.grew = Instant::now();
            t.cur = Some(o);
            self.note_link(key);
            let t = self.files.get_mut(key).unwrap();
            t.initial = None;
            t.problem = None;
            t.said_waiting = false;
            return;
        }
        match open_at(key, t.initial, self.io.max) {
            Ok(o) => {
                if t.problem.take().is_some() {
                    log::info!("{name} can be read again");
                }
                log::info!("following {name} from byte {}", o.pos);
                t.initial = None;
                t.said_waiting = false;
                t.cur = Some(o);
                t.due = true;
                self.note_link(key);
            }
            Err(e) => problem(t, key, e),
        }
    }

    /// Saved entries no configured path used: a glob match renamed or removed
    /// while we were not running (finish its file if it is still in the
    /// directory), or a path no longer configured (forget it).
    fn resume_leftovers(&mut self, gen: u64) {
        let Some(r) = &mut self.resume else { return };
        let left = std::mem::take(&mut r.files);
        for (abs, saved) in left {
            let p = PathBuf::from(&abs);
            let globbed = self.specs.iter().any(|s| {
                s.glob
                    && glob::Pattern::new(&abs_key(Path::new(&s.pattern)))
                        .is_ok_and(|g| g.matches_path(&p))
            });
            if !globbed {
                log::debug!(
                    "state file {}: {abs} is no longer followed; dropping its entry",
                    r.state_file.display()
                );
                self.forgets.push(abs);
                continue;
            }
            let (_, old) = plan_resume(&p, &saved, &r.state_file, self.io.max);
            if old.is_empty() {
                self.forgets.push(abs);
                continue;
            }
            let t = Tracked {
                source: Arc::from(format!("file:{abs}")),
                abs,
                last_mark: Some(saved),
                from_glob: true,
                dir: parent_dir(&p),
                link: None,
                cur: None,
                old,
                initial: None,
                problem: None,
                said_waiting: true,
                seen: gen,
                due: true,
            };
            self.files.insert(p, t);
            self.index_stale = true;
        }
    }

    /// Remember where a symlinked path points, so its real directory is watched.
    fn note_link(&mut self, key: &Path) {
        let link = match std::fs::symlink_metadata(key) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(key).ok(),
            _ => None,
        };
        let Some(t) = self.files.get_mut(key) else {
            return;
        };
        if t.link != link {
            t.link = link;
            self.index_stale = true;
        }
    }
}

/// Log and count a problem once per distinct condition; later retries at debug.
fn problem(t: &mut Tracked, key: &Path, what: String) {
    if t.problem.as_deref() == Some(what.as_str()) {
        log::debug!("{}: still {what}; will retry", key.display());
        return;
    }
    log::warn!("{}: {what}; will retry", key.display());
    stats::add(&STATS.read_errors, 1);
    t.problem = Some(what);
}

/// Expand a glob to the non-directory paths it matches now.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let Ok(paths) = glob::glob(pattern) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for p in paths {
        match p {
            Ok(p) => {
                if !p.is_dir() {
                    v.push(p);
                }
            }
            Err(e) => log::debug!("{pattern}: {e}"),
        }
    }
    v
}

/// Open `path`: at `initial`'s size if it is still that file (aligned back to
/// the start of a line), else at 0 (a file that appeared after we started).
fn open_at(path: &Path, initial: Option<(u64, u64, u64)>, max: usize) -> Result<Open, String> {
    // O_NONBLOCK: a FIFO swapped in after the check must not hang the thread.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let m = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !m.is_file() {
        return Err(if m.is_dir() {
            "is a directory".into()
        } else {
            "is not a regular file".into()
        });
    }
    let id = (m.dev(), m.ino());
    let mut lines = Lines::new(max);
    let pos = match initial {
        Some((dev, ino, size)) if (dev, ino) == id => {
            let (pos, skip) = line_start(&file, size.min(m.len()), max);
            if skip {
                lines.skip_to_newline();
            }
            pos
        }
        _ => 0,
    };
    file.seek(SeekFrom::Start(pos))
        .map_err(|e| format!("cannot seek: {e}"))?;
    // Starting past the first bytes: note them now, to tell a rewrite later.
    let fp = if pos > 0 {
        state::fingerprint(&file).ok()
    } else {
        None
    };
    Ok(Open {
        file,
        id,
        pos,
        lines,
        grew: Instant::now(),
        fp,
    })
}

/// The key of a path in the state file: absolute, not resolved (files are
/// followed by name, so a symlink is its own entry).
fn abs_key(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Where a path with saved files starts (`--state`). The file at the path is
/// resumed at its saved position if it is the same file (device, inode, first
/// bytes) and not shorter; a saved file no longer at the path (rotated while
/// we were not running) is looked for by inode among the other files of the
/// directory (`app.log.1`, `app.log-20261204`; a compressed copy is a new
/// inode, never found) and finished from its position first. A saved file
/// that was truncated or rewritten, or is gone, may have been copied first
/// (logrotate `copytruncate`, `copy`): a regular file of the directory that
/// starts with its first bytes and is at least as long as its saved position
/// is that copy (the most recently modified, if several), finished from the
/// position first. Otherwise the file at the path is new since, or was
/// truncated: read from its start.
/// Returns (the file at the path, resumed; the rotated files to finish first).
fn plan_resume(
    path: &Path,
    saved: &[FilePos],
    state_file: &Path,
    max: usize,
) -> (Option<Open>, Vec<Open>) {
    let name = path.display();
    let sf = state_file.display();
    let dir = parent_dir(path);
    let at_path = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()));
    // Files already spoken for (never taken as a copy): the one at the path,
    // and those resumed for an earlier entry.
    let mut taken: Vec<(u64, u64)> = at_path.into_iter().collect();
    let (mut cur, mut old) = (None, Vec::new());
    for (i, fp) in saved.iter().enumerate() {
        let top = i + 1 == saved.len();
        let changed = if at_path == Some((fp.dev, fp.ino)) {
            if !top {
                log::debug!("{name}: a file rotated away before the last run is back at the path; not resuming it");
                continue;
            }
            match open_resumed(path, fp, (fp.dev, fp.ino), max) {
                Ok(o) => {
                    log::info!("{name}: resuming at byte {} (state file {sf})", o.pos);
                    cur = Some(o);
                    continue;
                }
                Err(Unfit::Changed(why)) => Some(why),
                Err(Unfit::Other(why)) => {
                    log::info!(
                        "{name} changed since the last run ({why}): reading it from the start"
                    );
                    continue;
                }
            }
        } else {
            match find_in_dir(&dir, fp) {
                Some(p) => {
                    match open_resumed(&p, fp, (fp.dev, fp.ino), max) {
                        Ok(o) => {
                            log::info!("{name} was rotated while tinywatcher was not running: finishing {} from byte {} first", p.display(), o.pos);
                            taken.push(o.id);
                            old.push(o);
                        }
                        Err(Unfit::Changed(why) | Unfit::Other(why)) => {
                            log::warn!("state file {sf}: the file that was {name} is now {}, but {why}; not reading the rest of it", p.display())
                        }
                    }
                    continue;
                }
                None => None,
            }
        };
        // Truncated or rewritten in place, or gone: look for a copy made first.
        if let Some((p, o)) = find_copy(&dir, fp, &taken, max) {
            match &changed {
                Some(why) => log::info!(
                    "{name} changed since the last run ({why}): finishing {} (a copy of it) from byte {} first, then reading {name} from the start",
                    p.display(),
                    o.pos
                ),
                None => log::info!(
                    "the file that was {name} at the last run is gone, but {} is a copy of it: finishing that from byte {} first",
                    p.display(),
                    o.pos
                ),
            }
            taken.push(o.id);
            old.push(o);
            continue;
        }
        match changed {
            Some(why) => log::info!("{name} changed since the last run ({why}): reading it from the start"),
            None if top && at_path.is_some() => {
                log::warn!("state file {sf}: the file that was {name} at the last run is gone (rotated and removed or compressed?); reading the new {name} from its start")
            }
            None if top => log::warn!("state file {sf}: {name} no longer exists; starting fresh for it"),
            None => log::warn!("state file {sf}: a rotated file of {name} (inode {}) is gone; the rest of it is not read", fp.ino),
        }
    }
    (cur, old)
}

/// Why a saved file cannot be resumed.
enum Unfit {
    /// Truncated below the saved position, or its first bytes differ: a
    /// copy may hold the rest.
    Changed(String),
    /// Cannot be opened or read, or is another file now.
    Other(String),
}

/// Open `path` at `fp`'s saved position, if it is the file `id` and starts
/// with `fp`'s first bytes.
fn open_resumed(path: &Path, fp: &FilePos, id: (u64, u64), max: usize) -> Result<Open, Unfit> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Unfit::Other(format!("it cannot be opened: {e}")))?;
    let m = file
        .metadata()
        .map_err(|e| Unfit::Other(format!("it cannot be looked at: {e}")))?;
    if !m.is_file() || (m.dev(), m.ino()) != id {
        return Err(Unfit::Other("it was replaced".into()));
    }
    if m.len() < fp.pos {
        return Err(Unfit::Changed(
            "truncated: shorter than the saved position".into(),
        ));
    }
    match state::fingerprint_matches(&file, fp) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Unfit::Changed(
                "its first bytes differ: truncated and rewritten".into(),
            ))
        }
        Err(e) => return Err(Unfit::Other(format!("it cannot be read: {e}"))),
    }
    let mut lines = Lines::new(max);
    if fp.pos > 0 {
        // A saved position is just after a newline, unless a line too long
        // was being skipped: skip the rest of that one.
        let mut b = [0u8; 1];
        if file.read_exact_at(&mut b, fp.pos - 1).is_ok() && b[0] != b'\n' {
            lines.skip_to_newline();
        }
    }
    file.seek(SeekFrom::Start(fp.pos))
        .map_err(|e| Unfit::Other(format!("it cannot be read: {e}")))?;
    Ok(Open {
        file,
        id,
        pos: fp.pos,
        lines,
        grew: Instant::now(),
        fp: Some((fp.fp, fp.fp_len)),
    })
}

/// The regular file in `dir` with `fp`'s device and inode.
fn find_in_dir(dir: &Path, fp: &FilePos) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        // lstat: a symlink to the file is not the file.
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() && (m.dev(), m.ino()) == (fp.dev, fp.ino) {
            return Some(e.path());
        }
    }
    None
}

/// A copy of the saved file `fp` in `dir` (not one of `taken`): a regular
/// file starting with its first bytes and at least as long as its saved
/// position, the most recently modified if several; opened at the position.
fn find_copy(
    dir: &Path,
    fp: &FilePos,
    taken: &[(u64, u64)],
    max: usize,
) -> Option<(PathBuf, Open)> {
    let mut best: Option<(std::time::SystemTime, PathBuf, Open)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        // lstat: a symlink is not a copy.
        let Ok(m) = e.metadata() else { continue };
        let id = (m.dev(), m.ino());
        if !m.is_file() || m.len() < fp.pos || m.len() < fp.fp_len as u64 || taken.contains(&id) {
            continue;
        }
        let mtime = m.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_some_and(|(t, _, _)| *t >= mtime) {
            continue;
        }
        let p = e.path();
        if let Ok(o) = open_resumed(&p, fp, id, max) {
            best = Some((mtime, p, o));
        }
    }
    best.map(|(_, p, o)| (p, o))
}

/// Where an open file is: the byte after the last whole line sent (the held
/// partial line is not counted, so it is read again after a restart).
fn file_pos(o: &mut Open) -> Option<FilePos> {
    // A fingerprint of fewer than FP_BYTES is taken again once the file is longer.
    if o.fp
        .is_none_or(|(_, n)| (n as usize) < state::FP_BYTES && o.pos > n as u64)
    {
        o.fp = state::fingerprint(&o.file).ok();
    }
    let (fp, fp_len) = o.fp?;
    let pos = o.pos.saturating_sub(o.lines.partial_len() as u64);
    Some(FilePos {
        dev: o.id.0,
        ino: o.id.1,
        fp,
        fp_len,
        pos,
    })
}

/// Send an `Event::Mark` for a path if its files or positions changed since
/// the last one: after the batches it covers, on the same channel.
fn sync_mark(t: &mut Tracked, io: &Io) -> Result<(), Quit> {
    let files: Vec<FilePos> = t
        .old
        .iter_mut()
        .chain(t.cur.iter_mut())
        .filter_map(file_pos)
        .collect();
    let same = match &t.last_mark {
        Some(v) => *v == files,
        None => files.is_empty(),
    };
    if same {
        return Ok(());
    }
    t.last_mark = if files.is_empty() {
        None
    } else {
        Some(files.clone())
    };
    send(
        &io.tx,
        &io.stop,
        Event::Mark {
            source: t.source.clone(),
            mark: Mark::File {
                path: t.abs.clone(),
                files,
            },
        },
    )
}

/// Where to start reading "at the end" `pos`: after the last newline before
/// it, so a line being written when we start is not split. When that line is
/// already too long, start at `pos` and skip to its end (the bool).
fn line_start(file: &File, pos: u64, max: usize) -> (u64, bool) {
    if pos == 0 {
        return (0, false);
    }
    let back = (max as u64 + 1).min(CHUNK as u64).min(pos);
    let mut buf = vec![0u8; back as usize];
    if file.read_exact_at(&mut buf, pos - back).is_err() {
        return (pos, false);
    }
    match super::lines::memrchr_nl(&buf) {
        Some(i) => (pos - back + i as u64 + 1, false),
        None if back == pos && pos <= max as u64 => (0, false),
        None => (pos, true),
    }
}

/// What a read found.
#[derive(PartialEq, Eq, Debug)]
enum Got {
    /// At the end for now.
    Done,
    /// Read its turn's worth; there may be more.
    More,
    Failed(String),
}

/// Read the old files (to their end) first, then the current one.
/// Returns whether there may be more to read.
fn read_tracked(key: &Path, t: &mut Tracked, io: &mut Io) -> Result<bool, Quit> {
    let mut more = false;
    let mut failed = None;
    for o in t.old.iter_mut() {
        match read_open(key, o, &t.source, io)? {
            Got::Done => {}
            Got::More => more = true,
            Got::Failed(e) => failed = Some(e),
        }
    }
    if !more {
        if let Some(c) = &mut t.cur {
            match read_open(key, c, &t.source, io)? {
                Got::Done => {}
                Got::More => more = true,
                Got::Failed(e) => failed = Some(e),
            }
        }
    }
    if let Some(e) = failed {
        problem(t, key, e);
    }
    Ok(more)
}

/// Was the file truncated and written past our position between two looks
/// (so that its size alone cannot tell)? Its first bytes changed: compare
/// them with what we saw, one small `pread`. While the file is shorter than
/// `FP_BYTES`, the fingerprint grows with it.
fn rewritten(o: &mut Open, size: u64) -> bool {
    if o.pos == 0 {
        return false;
    }
    let Some((fp, fp_len)) = o.fp else {
        o.fp = state::fingerprint(&o.file).ok();
        return false;
    };
    let saw = FilePos {
        dev: 0,
        ino: 0,
        fp,
        fp_len,
        pos: 0,
    };
    let same = state::fingerprint_matches(&o.file, &saw).unwrap_or(true);
    if same && (fp_len as usize) < state::FP_BYTES && size > fp_len as u64 {
        o.fp = state::fingerprint(&o.file).ok();
    }
    !same
}

/// Read up to a turn's worth from one open file and send the whole lines.
fn read_open(key: &Path, o: &mut Open, source: &Source, io: &mut Io) -> Result<Got, Quit> {
    let size = match o.file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Ok(Got::Failed(format!("cannot stat: {e}"))),
    };
    let rewritten = size > o.pos && rewritten(o, size);
    if size < o.pos || rewritten {
        if rewritten {
            log::info!("{} was truncated and written again (its first bytes changed): reading from the start", key.display());
        } else {
            log::info!("{} truncated: reading from the start", key.display());
        }
        if let Err(e) = o.file.seek(SeekFrom::Start(0)) {
            return Ok(Got::Failed(format!("cannot seek: {e}")));
        }
        o.pos = 0;
        o.fp = None;
        // The held partial line was written (`tail` shows it): a line of its
        // own, not the front of the first line after the truncation.
        if let Some(text) = o.lines.flush_partial() {
            io.send(source, text)?;
        }
    }
    if size == o.pos {
        return Ok(Got::Done);
    }
    for _ in 0..TURN {
        // Read straight into the batch buffer (after the held partial line):
        // the bytes are copied once, by the kernel.
        let mut buf = o.lines.buffer(CHUNK);
        let held = buf.len();
        let res = (&mut o.file).take(CHUNK as u64).read_to_end(&mut buf);
        let n = buf.len() - held;
        if n > 0 {
            if o.pos == 0 && o.fp.is_none() {
                // The file's first bytes, as read (not read again later: the
                // file may be rewritten by then), to tell a rewrite.
                let k = n.min(state::FP_BYTES);
                o.fp = Some((state::fnv1a(&buf[held..held + k]), k as u32));
            }
            o.pos += n as u64;
            o.grew = Instant::now();
        }
        // Also puts the held partial line back when nothing was read.
        if let Some(text) = o.lines.feed_buffer(buf) {
            io.send(source, text)?;
        }
        match res {
            Ok(_) if n == 0 => return Ok(Got::Done),
            Ok(_) if n < CHUNK && o.pos >= size => return Ok(Got::Done),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Done),
            Err(e) => return Ok(Got::Failed(format!("read error: {e}"))),
        }
    }
    Ok(Got::More)
}

#[cfg(target_os = "linux")]
mod notify {
    //! One inotify instance watching directories.
    use super::Change;
    use std::collections::{BTreeSet, HashMap};
    use std::ffi::{CString, OsStr};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    const MASK: u32 = libc::IN_MODIFY
        | libc::IN_CREATE
        | libc::IN_MOVED_TO
        | libc::IN_MOVED_FROM
        | libc::IN_DELETE
        | libc::IN_ATTRIB
        | libc::IN_CLOSE_WRITE
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_ONLYDIR;

    pub struct Inotify {
        fd: OwnedFd,
        by_dir: HashMap<PathBuf, i32>,
        /// One wd can stand for two spellings of the same directory.
        by_wd: HashMap<i32, Vec<PathBuf>>,
        /// Directories that could not be watched (said once; their files are polled).
        failed: BTreeSet<PathBuf>,
    }

    impl Inotify {
        pub fn new() -> Option<Inotify> {
            let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
            if fd < 0 {
                log::warn!(
                    "inotify is not available ({}); polling files every 250 ms",
                    io::Error::last_os_error()
                );
                return None;
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Some(Inotify {
                fd,
                by_dir: HashMap::new(),
                by_wd: HashMap::new(),
                failed: BTreeSet::new(),
            })
        }

        pub fn is_watched(&self, dir: &Path) -> bool {
            self.by_dir.contains_key(dir)
        }

        /// Watch exactly the directories in `wanted` (those that exist).
        pub fn sync(&mut self, wanted: &BTreeSet<PathBuf>) {
            for d in wanted {
                if self.by_dir.contains_key(d) {
                    continue;
                }
                let Ok(c) = CString::new(d.as_os_str().as_bytes()) else {
                    continue;
                };
                let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
                if wd < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::NotFound && self.failed.insert(d.clone()) {
                        log::warn!(
                            "cannot watch {} ({e}); polling its files every 250 ms",
                            d.display()
                        );
                    }
                    continue;
                }
                self.failed.remove(d);
                self.by_dir.insert(d.clone(), wd);
                self.by_wd.entry(wd).or_default().push(d.clone());
            }
            let gone: Vec<PathBuf> = self
                .by_dir
                .keys()
                .filter(|d| !wanted.contains(*d))
                .cloned()
                .collect();
            for d in gone {
                self.forget(&d, true);
            }
        }

        fn forget(&mut self, d: &Path, rm: bool) {
            let Some(wd) = self.by_dir.remove(d) else {
                return;
            };
            if let Some(v) = self.by_wd.get_mut(&wd) {
                v.retain(|x| x != d);
                if v.is_empty() {
                    self.by_wd.remove(&wd);
                    if rm {
                        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
                    }
                }
            }
        }

        /// Wait up to `timeout` for events; append what they mean to `out`.
        pub fn wait(&mut self, timeout: Duration, out: &mut Vec<Change>) {
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
                return;
            }
            let mut buf = [0u64; 1024];
            let hdr = std::mem::size_of::<libc::inotify_event>();
            loop {
                let n = unsafe {
                    libc::read(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        std::mem::size_of_val(&buf),
                    )
                };
                if n <= 0 {
                    return; // EAGAIN: drained
                }
                let bytes =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
                let mut off = 0;
                while off + hdr <= bytes.len() {
                    let ev: libc::inotify_event =
                        unsafe { std::ptr::read_unaligned(bytes[off..].as_ptr().cast()) };
                    let end = (off + hdr + ev.len as usize).min(bytes.len());
                    let raw = &bytes[off + hdr..end];
                    let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                    off = end;
                    self.event(ev.wd, ev.mask, OsStr::from_bytes(name), out);
                }
            }
        }

        fn event(&mut self, wd: i32, mask: u32, name: &OsStr, out: &mut Vec<Change>) {
            if mask & libc::IN_Q_OVERFLOW != 0 {
                out.push(Change::Rescan);
                return;
            }
            if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                // The directory itself went away or moved: watch its path again at the rescan.
                let dirs = self.by_wd.get(&wd).cloned().unwrap_or_default();
                for d in dirs {
                    self.forget(&d, mask & libc::IN_IGNORED == 0);
                }
                out.push(Change::Rescan);
                return;
            }
            let Some(dirs) = self.by_wd.get(&wd) else {
                return;
            };
            if mask & !(libc::IN_MODIFY | libc::IN_CLOSE_WRITE | libc::IN_ISDIR) == 0
                && !name.is_empty()
            {
                for d in dirs {
                    out.push(Change::Wrote(d.join(name)));
                }
            } else {
                out.push(Change::Rescan);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod notify {
    //! No inotify here: the follower polls.
    use super::Change;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub struct Inotify;

    impl Inotify {
        pub fn new() -> Option<Inotify> {
            None
        }
        pub fn is_watched(&self, _: &Path) -> bool {
            false
        }
        pub fn sync(&mut self, _: &BTreeSet<PathBuf>) {}
        pub fn wait(&mut self, timeout: Duration, _: &mut Vec<Change>) {
            std::thread::sleep(timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Receiver};
    use std::io::Write;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "twu-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn p(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
        fn s(&self, name: &str) -> String {
            self.p(name).to_str().unwrap().to_string()
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn append(p: &Path, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn seq(r: std::ops::RangeInclusive<u32>) -> String {
        r.map(|i| format!("SEQ-{i:06} some log text\n")).collect()
    }

    fn seq_lines(r: std::ops::RangeInclusive<u32>) -> Vec<String> {
        r.map(|i| format!("SEQ-{i:06} some log text")).collect()
    }

    /// A follower driven through a channel: (source, line) pairs received.
    struct Run {
        rx: Receiver<Event>,
        stop: Stop,
        handle: Option<JoinHandle<()>>,
        got: Vec<(String, String)>,
        ended: bool,
    }

    impl Run {
        fn start(specs: &[(&str, ReadFrom)], max: usize) -> Run {
            let (tx, rx) = bounded(64);
            let stop = Stop::new();
            let files = specs
                .iter()
                .map(|(p, r)| FileSpec {
                    path: p.to_string(),
                    read_from: *r,
                })
                .collect();
            let handle = spawn(files, max, tx, stop.clone(), Options::default());
            Run {
                rx,
                stop,
                handle: Some(handle),
                got: Vec::new(),
                ended: false,
            }
        }
        fn recv(&mut self, d: Duration) {
            match self.rx.recv_timeout(d) {
                Ok(Event::Lines { source, text }) => {
                    assert!(
                        text.ends_with('\n'),
                        "batch must end with a newline: {text:?}"
                    );
                    for l in text.lines() {
                        self.got.push((source.to_string(), l.to_string()));
                    }
                }
                Ok(Event::End { .. }) => self.ended = true,
                Ok(Event::Mark { .. }) | Err(_) => {}
            }
        }
        /// Receive until a line contains `needle` (5 s at most).
        fn wait_line(&mut self, needle: &str) {
            let end = Instant::now() + Duration::from_secs(5);
            while !self.got.iter().any(|(_, l)| l.contains(needle)) {
                assert!(
                    Instant::now() < end,
                    "no line with {needle:?}; got {:?}",
                    self.got
                );
                self.recv(Duration::from_millis(20));
            }
        }
        /// Receive whatever comes within `d`.
        fn settle(&mut self, d: Duration) {
            let end = Instant::now() + d;
            while Instant::now() < end {
                self.recv(Duration::from_millis(10));
            }
        }
        /// Append `SYNC` lines to `file` until one arrives: the follower has started.
        fn sync(&mut self, file: &Path) {
            for i in 0..100 {
                append(file, &format!("SYNC-{i}\n"));
                let end = Instant::now() + Duration::from_millis(50);
                while Instant::now() < end {
                    if self.got.iter().any(|(_, l)| l.starts_with("SYNC")) {
                        return;
                    }
                    self.recv(Duration::from_millis(5));
                }
            }
            panic!("the follower never started");
        }
        fn seqs(&self) -> Vec<String> {
            self.got
                .iter()
                .filter(|(_, l)| l.starts_with("SEQ-"))
                .map(|(_, l)| l.clone())
                .collect()
        }
        fn from(&self, source_end: &str) -> Vec<String> {
            self.got
                .iter()
                .filter(|(s, l)| s.ends_with(source_end) && !l.starts_with("SYNC"))
                .map(|(_, l)| l.clone())
                .collect()
        }
    }

    impl Drop for Run {
        fn drop(&mut self) {
            self.stop.stop();
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    #[test]
    fn read_from_end_and_beginning() {
        let d = Tmp::new("rf");
        std::fs::write(d.p("a.log"), "OLD-1\nOLD-2\n").unwrap();
        std::fs::write(d.p("b.log"), "OLD-1\nOLD-2\n").unwrap();
        let mut r = Run::start(
            &[
                (&d.s("a.log"), ReadFrom::End),
                (&d.s("b.log"), ReadFrom::Beginning),
            ],
            1000,
        );
        r.sync(&d.p("a.log"));
        append(&d.p("a.log"), "NEW-a\n");
        append(&d.p("b.log"), "NEW-b\n");
        r.wait_line("NEW-a");
        r.wait_line("NEW-b");
        assert_eq!(r.from("a.log"), vec!["NEW-a"]);
        assert_eq!(r.from("b.log"), vec!["OLD-1", "OLD-2", "NEW-b"]);
        assert!(r.got.iter().all(|(s, _)| s.starts_with("file:")));
    }

    #[test]
    fn read_from_end_does_not_split_a_line_being_written() {
        let d = Tmp::new("mid");
        std::fs::write(d.p("c.log"), "old\npart").unwrap();
        std::fs::write(d.p("sync.log"), "").unwrap();
        let mut r = Run::start(
            &[
                (&d.s("c.log"), ReadFrom::End),
                (&d.s("sync.log"), ReadFrom::End),
            ],
            1000,
        );
        r.sync(&d.p("sync.log"));
        append(&d.p("c.log"), "ial\nnext\n");
        r.wait_line("next");
        assert_eq!(r.from("c.log"), vec!["partial", "next"]);
    }

    #[test]
    fn partial_line_is_held_until_its_newline() {
        let d = Tmp::new("part");
        std::fs::write(d.p("sync.log"), "").unwrap();
        let mut r = Run::start(
            &[
                (&d.s("a.log"), ReadFrom::End),
                (&d.s("sync.log"), ReadFrom::End),
            ],
            1000,
        );
        r.sync(&d.p("sync.log"));
        append(&d.p("a.log"), "SEQ-1 par");
        r.settle(Duration::from_millis(300));
        append(&d.p("sync.log"), "SYNC-again\n");
        r.wait_line("SYNC-again");
        assert!(r.from("a.log").is_empty(), "{:?}", r.got);
        append(&d.p("a.log"), "tial\n");
        r.wait_line("SEQ-1 partial");
        r.settle(Duration::from_millis(100));
        assert_eq!(r.from("a.log"), vec!["SEQ-1 partial"]);
    }

    #[test]
    fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
        let d = Tmp::new("rot");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::End)], 1000);
        r.sync(&p);
        let mut w = OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(seq(1..=50).as_bytes()).unwrap();
        r.wait_line("SEQ-000050");
        std::fs::rename(&p, d.p("app.log.1")).unwrap();
        w.write_all(seq(51..=60).as_bytes()).unwrap();
        let mut w2 = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        w2.write_all(seq(61..=100).as_bytes()).unwrap();
        r.wait_line("SEQ-000100");
        r.wait_line("SEQ-000060");
        // Written to the old file after the switch: still read (it lingers).
        w.write_all(seq(101..=105).as_bytes()).unwrap();
        r.wait_line("SEQ-000105");
        r.settle(Duration::from_millis(100));
        let mut got = r.seqs();
        got.sort();
        assert_eq!(got, seq_lines(1..=105));
        // The old file's lines came before the new file's.
        let s = r.seqs();
        let p60 = s.iter().position(|l| l.contains("SEQ-000060")).unwrap();
        let p61 = s.iter().position(|l| l.contains("SEQ-000061")).unwrap();
        assert!(p60 < p61, "{s:?}");
    }

    #[test]
    fn copytruncate_and_truncate_start_over() {
        let d = Tmp::new("trunc");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::End)], 1000);
        r.sync(&p);
        append(&p, &seq(1..=100));
        r.wait_line("SEQ-000100");
        std::fs::copy(&p, d.p("app.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, &seq(101..=110));
        r.wait_line("SEQ-000110");
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, &seq(111..=112));
        r.wait_line("SEQ-000112");
        r.settle(Duration::from_millis(100));
        assert_eq!(r.seqs(), seq_lines(1..=112));
    }

    #[test]
    fn deleted_then_recreated() {
        let d = Tmp::new("del");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::End)], 1000);
        r.sync(&p);
        append(&p, &seq(1..=20));
        r.wait_line("SEQ-000020");
        std::fs::remove_file(&p).unwrap();
        append(&p, &seq(21..=30));
        r.wait_line("SEQ-000030");
        r.settle(Duration::from_millis(100));
        assert_eq!(r.seqs(), seq_lines(1..=30));
    }

    #[test]
    fn missing_file_and_directory_then_created() {
        let d = Tmp::new("miss");
        std::fs::write(d.p("sync.log"), "").unwrap();
        let mut r = Run::start(
            &[
                (&d.s("sub/app.log"), ReadFrom::End),
                (&d.s("late.log"), ReadFrom::End),
                (&d.s("sync.log"), ReadFrom::End),
            ],
            1000,
        );
        r.sync(&d.p("sync.log"));
        append(&d.p("late.log"), &seq(1..=3));
        std::fs::create_dir(d.p("sub")).unwrap();
        append(&d.p("sub/app.log"), &seq(4..=6));
        r.wait_line("SEQ-000003");
        r.wait_line("SEQ-000006");
        r.settle(Duration::from_millis(100));
        assert_eq!(r.from("late.log"), seq_lines(1..=3));
        assert_eq!(r.from("sub/app.log"), seq_lines(4..=6));
    }

    #[test]
    fn glob_picks_up_new_files_from_their_start_and_drops_removed_ones() {
        let d = Tmp::new("glob");
        std::fs::write(d.p("a.log"), "OLD\n").unwrap();
        let mut r = Run::start(&[(&d.s("*.log"), ReadFrom::End)], 1000);
        r.sync(&d.p("a.log"));
        std::fs::write(d.p("b.log"), seq(1..=5)).unwrap();
        std::fs::write(d.p("b.txt"), seq(900..=901)).unwrap();
        r.wait_line("SEQ-000005");
        std::fs::remove_file(d.p("a.log")).unwrap();
        append(&d.p("b.log"), &seq(6..=6));
        r.wait_line("SEQ-000006");
        // A file matching again later is a new file: read from its start.
        std::fs::write(d.p("a.log"), seq(7..=8)).unwrap();
        r.wait_line("SEQ-000008");
        r.settle(Duration::from_millis(100));
        assert_eq!(r.from("b.log"), seq_lines(1..=6));
        assert_eq!(r.from("a.log"), seq_lines(7..=8));
        assert!(
            !r.got
                .iter()
                .any(|(_, l)| l.contains("OLD") || l.contains("SEQ-0009")),
            "{:?}",
            r.got
        );
    }

    #[test]
    fn rename_within_a_glob_is_not_read_twice() {
        let d = Tmp::new("grn");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log*"), ReadFrom::End)], 1000);
        r.sync(&p);
        append(&p, &seq(1..=10));
        r.wait_line("SEQ-000010");
        std::fs::rename(&p, d.p("app.log.1")).unwrap();
        append(&d.p("app.log.1"), &seq(11..=12));
        append(&p, &seq(13..=14));
        r.wait_line("SEQ-000012");
        r.wait_line("SEQ-000014");
        r.settle(Duration::from_millis(1300)); // past a periodic rescan
        let mut got = r.seqs();
        got.sort();
        assert_eq!(got, seq_lines(1..=14));
    }

    #[test]
    fn replaced_by_a_directory_then_by_a_file() {
        let d = Tmp::new("dir");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::End)], 1000);
        r.sync(&p);
        append(&p, &seq(1..=2));
        r.wait_line("SEQ-000002");
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        r.settle(Duration::from_millis(1200)); // let a rescan see the directory
        std::fs::remove_dir(&p).unwrap();
        append(&p, &seq(3..=4));
        r.wait_line("SEQ-000004");
        assert_eq!(r.seqs(), seq_lines(1..=4));
    }

    #[test]
    fn a_symlinked_file_wakes_on_append() {
        let d = Tmp::new("link");
        std::fs::create_dir(d.p("real")).unwrap();
        std::fs::create_dir(d.p("logs")).unwrap();
        std::fs::write(d.p("real/app.log"), "").unwrap();
        std::os::unix::fs::symlink(d.p("real/app.log"), d.p("logs/app.log")).unwrap();
        let mut r = Run::start(&[(&d.s("logs/app.log"), ReadFrom::End)], 1000);
        r.sync(&d.p("real/app.log"));
        r.settle(Duration::from_millis(1100)); // the first rescan has set up the watch
        for i in 1..=3 {
            let t = Instant::now();
            append(&d.p("real/app.log"), &seq(i..=i));
            r.wait_line(&format!("SEQ-{i:06}"));
            assert!(
                t.elapsed() < Duration::from_millis(150),
                "woken by polling, not inotify: {:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn long_lines_are_cut_and_later_lines_still_arrive() {
        let d = Tmp::new("long");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::Beginning)], 100);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"LONG-").unwrap();
        f.write_all(&vec![b'x'; 3 << 20]).unwrap();
        f.write_all(b"\nSEQ-1 after\xff\0 done\n").unwrap();
        r.wait_line("SEQ-1 after");
        assert_eq!(
            r.got.len(),
            2,
            "{:?}",
            r.got.iter().map(|(_, l)| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(r.got[0].1.len(), 100);
        assert_eq!(r.got[1].1, "SEQ-1 after\u{FFFD}\0 done");
    }

    #[test]
    fn stops_promptly_and_when_the_receiver_is_gone() {
        let d = Tmp::new("stop");
        let p = d.p("app.log");
        std::fs::write(&p, "").unwrap();
        let mut r = Run::start(&[(&d.s("app.log"), ReadFrom::End)], 1000);
        r.sync(&p);
        let t = Instant::now();
        r.stop.stop();
        r.handle.take().unwrap().join().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );

        let (tx, rx) = bounded(1);
        let h = spawn(
            vec![FileSpec {
                path: d.s("app.log"),
                read_from: ReadFrom::Beginning,
            }],
            1000,
            tx,
            Stop::new(),
            Options::default(),
        );
        drop(rx);
        append(&p, "more\n");
        let t = Instant::now();
        while !h.is_finished() {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "still running with no receiver"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `cargo test --release --bin tinywatcher file_throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn file_throughput() {
        let d = Tmp::new("perf");
        let p = d.p("big.log");
        let mut body = String::with_capacity(130 << 20);
        for i in 0..1_000_000u32 {
            body.push_str(&format!("2026-12-04T10:00:00.000Z host app[{i:07}]: INFO request handled path=/api/v1/items/{} status=200 ms=12\n", i % 977));
        }
        std::fs::write(&p, &body).unwrap();
        let t = Instant::now();
        let r = Run::start(&[(&d.s("big.log"), ReadFrom::Beginning)], 64 * 1024);
        let (mut lines, mut bytes) = (0usize, 0usize);
        while lines < 1_000_000 {
            if let Ok(Event::Lines { text, .. }) = r.rx.recv_timeout(Duration::from_secs(5)) {
                bytes += text.len();
                lines += text.as_bytes().iter().filter(|&&b| b == b'\n').count();
            }
        }
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "{lines} lines, {} MB in {s:.3}s (reader + channel): {:.1} M lines/s",
            bytes >> 20,
            lines as f64 / s / 1e6
        );
    }
}
