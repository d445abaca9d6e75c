//! `tinywatcher check`: run the rules over the last N lines of each file and
//! print every hit with the matched part highlighted, then a summary per rule.
//! Sends nothing. The tail is read by seeking back from the end, so a 1 GB
//! file costs a few reads, not a scan.

use crate::config::{is_glob, Config};
use crate::flags::Color;
use crate::rule::RuleSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

const BLOCK: u64 = 64 * 1024;

/// The last `n` lines of `f` (without their newlines), each cut at `max` bytes.
/// A last line without a newline counts as a line.
pub fn tail_lines(f: &mut File, n: usize, max: usize) -> std::io::Result<Vec<String>> {
    if n == 0 {
        return Ok(vec![]);
    }
    let len = f.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    // Read blocks backwards until the buffer holds n+1 newlines (or the start).
    loop {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        let trailing = usize::from(buf.last() == Some(&b'\n'));
        if newlines >= n + trailing || pos == 0 {
            break;
        }
        // Bound the memory for files of a few huge lines: stop once we hold enough bytes.
        if buf.len() as u64 > (n as u64 + 1) * (max as u64 + 1) {
            break;
        }
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        pos = start;
    }
    log::debug!(
        "read {} bytes from the end for the last {n} lines",
        buf.len()
    );
    if buf.is_empty() {
        return Ok(vec![]);
    }
    let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if pos > 0 && !lines.is_empty() {
        lines.remove(0); // a partial first line: we started mid-line
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..]
        .iter()
        .map(|l| {
            let l = &l[..l.len().min(max)];
            String::from_utf8_lossy(l).into_owned()
        })
        .collect())
}

/// The last `n` lines of standard input, read to its end (each cut at `max`).
fn stdin_tail(n: usize, max: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut last = std::collections::VecDeque::with_capacity(n.min(4096));
    let mut buf = Vec::new();
    let mut input = std::io::stdin().lock();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if n == 0 {
                    continue;
                }
                let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(String::from_utf8_lossy(&line[..line.len().min(max)]).into_owned());
            }
            Err(e) => {
                log::warn!("stdin: {e}");
                break;
            }
        }
    }
    last.into()
}

/// Should output be coloured?
pub fn use_color(c: Color) -> bool {
    match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                // SAFETY: isatty only inspects the descriptor.
                && unsafe { libc::isatty(1) } == 1
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

const RED: &str = "\x1b[1;31m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Run `check`. Returns the exit status: 0 when anything matched, 1 if not.
pub fn run(cfg: &Config, rules: &RuleSet, n: usize, color: bool) -> Result<u8, String> {
    let mut files: Vec<String> = Vec::new();
    for f in &cfg.files {
        if is_glob(&f.path) {
            let mut found: Vec<String> = glob::glob(&f.path)
                .map_err(|e| format!("{}: {e}", f.path))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if found.is_empty() {
                log::warn!("{}: no file matches", f.path);
            }
            found.sort();
            files.append(&mut found);
        } else {
            files.push(f.path.clone());
        }
    }
    let mut counts = vec![0u64; rules.rules.len()];
    let mut checked = 0usize;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut w = |s: &str| -> Result<(), String> {
        match out.write_all(s.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => r.map_err(|e| format!("stdout: {e}")),
        }
    };
    // Each file's last lines, then standard input's (`--file -`: read to its end).
    let mut unreadable = 0;
    let tails: Vec<(String, Vec<String>)> = files
        .iter()
        .filter_map(|path| {
            match File::open(path).and_then(|mut f| tail_lines(&mut f, n, cfg.max_line_bytes)) {
                Ok(l) => Some((format!("file:{path}"), l)),
                Err(e) => {
                    log::warn!("{path}: {e}");
                    unreadable += 1;
                    None
                }
            }
        })
        .collect();
    if unreadable > 0 && tails.is_empty() && !cfg.stdin {
        return Err(format!("none of the {unreadable} file(s) could be read"));
    }
    let stdin = cfg
        .stdin
        .then(|| ("stdin".to_string(), stdin_tail(n, cfg.max_line_bytes)));
    for (source, lines) in tails.into_iter().chain(stdin) {
        checked += lines.len();
        let mut text = lines.join("\n");
        text.push('\n');
        let mut hits: Vec<(String, Vec<usize>)> = Vec::new();
        rules.scan(&text, |line, idx| {
            let ok: Vec<usize> = idx
                .filter(|&i| {
                    let r = &rules.rules[i];
                    r.sources.as_ref().is_none_or(|f| f.allows(&source))
                        && r.exclude.as_ref().is_none_or(|e| !e.is_match(line))
                })
                .collect();
            if !ok.is_empty() {
                hits.push((line.to_string(), ok));
            }
        });
        for (line, idx) in hits {
            let names: Vec<&str> = idx.iter().map(|&i| &*rules.rules[i].name).collect();
            for &i in &idx {
                counts[i] += 1;
            }
            let shown = if color {
                highlight(&line, idx.iter().map(|&i| &rules.rules[i].regex))
            } else {
                line.clone()
            };
            if color {
                w(&format!(
                    "{DIM}{source}{RESET} {CYAN}[{}]{RESET} {shown}\n",
                    names.join(",")
                ))?;
            } else {
                w(&format!("{source} [{}] {shown}\n", names.join(",")))?;
            }
        }
    }
    let total: u64 = counts.iter().sum();
    let inputs = files.len() + usize::from(cfg.stdin);
    w(&format!(
        "-- {} line(s) checked in {} input(s); {} hit(s)\n",
        checked, inputs, total
    ))?;
    let width = rules.rules.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for (r, c) in rules.rules.iter().zip(&counts) {
        w(&format!("{:width$}  {c}\n", &*r.name))?;
    }
    let _ = out.flush();
    Ok(if total > 0 { 0 } else { 1 })
}

/// The line with every match of the given regexes wrapped in colour.
fn highlight<'a>(line: &str, regexes: impl Iterator<Item = &'a regex::Regex>) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for re in regexes {
        spans.extend(
            re.find_iter(line)
                .filter(|m| !m.is_empty())
                .map(|m| (m.start(), m.end())),
        );
    }
    spans.sort();
    let mut out = String::with_capacity(line.len() + 16);
    let mut at = 0;
    for (s, e) in spans {
        if e <= at {
            continue;
        }
        let s = s.max(at);
        out.push_str(&line[at..s]);
        out.push_str(RED);
        out.push_str(&line[s..e]);
        out.push_str(RESET);
        at = e;
    }
    out.push_str(&line[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(content: &[u8]) -> File {
        let p =
            std::env::temp_dir().join(format!("tw-check-{}-{}", std::process::id(), content.len()));
        std::fs::write(&p, content).unwrap();
        let f = File::open(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }

    #[test]
    fn tail_of_small_and_unterminated() {
        let mut f = tmp(b"a\nb\nc\n");
        assert_eq!(tail_lines(&mut f, 2, 100).unwrap(), vec!["b", "c"]);
        assert_eq!(tail_lines(&mut f, 10, 100).unwrap(), vec!["a", "b", "c"]);
        let mut f = tmp(b"a\nb\nlast");
        assert_eq!(tail_lines(&mut f, 2, 100).unwrap(), vec!["b", "last"]);
        let mut f = tmp(b"");
        assert!(tail_lines(&mut f, 5, 100).unwrap().is_empty());
    }

    #[test]
    fn tail_across_blocks() {
        let mut s = String::new();
        for i in 0..50_000 {
            s.push_str(&format!("line {i}\n"));
        }
        let mut f = tmp(s.as_bytes());
        let t = tail_lines(&mut f, 3, 100).unwrap();
        assert_eq!(t, vec!["line 49997", "line 49998", "line 49999"]);
        let t = tail_lines(&mut f, 20_000, 100).unwrap();
        assert_eq!(t.len(), 20_000);
        assert_eq!(t[0], "line 30000");
    }

    #[test]
    fn highlight_merges_spans() {
        let a = regex::Regex::new("ERR").unwrap();
        let b = regex::Regex::new("RO").unwrap();
        let h = highlight("x ERROR y", [&a, &b].into_iter());
        assert_eq!(h, format!("x {RED}ERR{RESET}{RED}O{RESET}R y"));
    }
}
