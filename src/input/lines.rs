//! The one line splitter every input uses: raw byte chunks in, batches of whole
//! lines out (one `String`, every line ending in `\n`). A partial last line is
//! held until its newline arrives; a line longer than `max_line_bytes` is cut
//! there and the rest of it skipped without being buffered (a 50 MB line costs
//! no more memory than a short one). Invalid UTF-8 is replaced, NUL passes.
//!
//! Cost per chunk: newlines are not searched one by one; from each line start
//! the splitter looks backwards from `max_line_bytes` ahead for the last
//! newline, which proves every line in between short enough, so a chunk of
//! short lines is crossed in a few steps. Then one copy into the batch, one
//! UTF-8 check and one newline count (for the stats), all vectorizable.

use crate::stats::{self, STATS};

/// Splits a byte stream into batches of whole lines. One per stream (file,
/// connection, stdin); it holds at most `max_line_bytes` between calls.
#[derive(Debug)]
pub struct Lines {
    max: usize,
    /// The partial last line (no newline yet), at most `max` bytes.
    pending: Vec<u8>,
    /// Skipping the rest of a line that was cut, up to its newline.
    discarding: bool,
}

impl Lines {
    pub fn new(max_line_bytes: usize) -> Lines {
        Lines {
            max: max_line_bytes.max(1),
            pending: Vec::new(),
            discarding: false,
        }
    }

    /// Take the next chunk of the stream; returns the whole lines it completed
    /// (with any held partial line in front), or `None` if it completed none.
    pub fn feed(&mut self, data: &[u8]) -> Option<String> {
        let max = self.max;
        let mut data = data;
        let mut out: Vec<u8> = Vec::new();
        if self.discarding {
            match memchr_nl(data) {
                None => return None,
                Some(q) => {
                    data = &data[q + 1..];
                    self.discarding = false;
                }
            }
        }
        if !self.pending.is_empty() {
            // Complete the held line: its newline must come within `room + 1` bytes.
            let room = max - self.pending.len();
            let win = &data[..data.len().min(room + 1)];
            match memchr_nl(win) {
                Some(q) => {
                    out.reserve_exact(self.pending.len() + data.len());
                    out.extend_from_slice(&self.pending);
                    out.extend_from_slice(&data[..=q]);
                    self.release_pending();
                    data = &data[q + 1..];
                }
                None if data.len() <= room => {
                    self.pending.extend_from_slice(data);
                    return None;
                }
                None => {
                    let cut = char_floor(data, 0, room);
                    out.reserve_exact(self.pending.len() + data.len());
                    out.extend_from_slice(&self.pending);
                    out.extend_from_slice(&data[..cut]);
                    out.push(b'\n');
                    self.release_pending();
                    stats::add(&STATS.lines_cut, 1);
                    match memchr_nl(&data[room..]) {
                        Some(q) => data = &data[room + q + 1..],
                        None => {
                            self.discarding = true;
                            return finish(out);
                        }
                    }
                }
            }
        }
        // `r` is the start of the current line; `seg..r` is a run of good lines
        // not yet copied out.
        let len = data.len();
        let (mut seg, mut r) = (0, 0);
        loop {
            let long;
            (r, long) = short_lines_end(data, r, max);
            if !long {
                break; // a partial line (possibly empty) is left
            }
            // The line at `r` has more than `max` bytes: keep `max`, skip the rest.
            let cut = char_floor(data, r, r + max);
            if out.capacity() == 0 {
                out.reserve_exact(len + 1);
            }
            out.extend_from_slice(&data[seg..cut]);
            out.push(b'\n');
            stats::add(&STATS.lines_cut, 1);
            match memchr_nl(&data[r + max..]) {
                Some(q) => {
                    r = r + max + q + 1;
                    seg = r;
                }
                None => {
                    self.discarding = true;
                    return finish(out);
                }
            }
        }
        if seg < r {
            if out.capacity() == 0 {
                out.reserve_exact(r - seg);
            }
            out.extend_from_slice(&data[seg..r]);
        }
        self.pending.extend_from_slice(&data[r..]);
        finish(out)
    }

    /// A buffer to read the next chunk into, with room for `chunk` bytes: it
    /// already holds the partial line, so `feed_buffer` needs no copy.
    pub fn buffer(&mut self, chunk: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.pending.len() + chunk);
        v.extend_from_slice(&self.pending);
        self.pending.clear();
        v
    }

    /// Take a buffer from `buffer` with the new bytes appended: the same as
    /// `feed`, but the batch is the buffer itself when no line in it is too
    /// long (the common case), so the bytes are not copied again.
    pub fn feed_buffer(&mut self, mut data: Vec<u8>) -> Option<String> {
        if self.discarding {
            return self.feed(&data);
        }
        let (r, long) = short_lines_end(&data, 0, self.max);
        if long {
            return self.feed(&data); // a line too long: the general path cuts it
        }
        self.pending.extend_from_slice(&data[r..]);
        data.truncate(r);
        finish(data)
    }

    /// End of input: the held partial line, if any, as a line of its own.
    pub fn flush_partial(&mut self) -> Option<String> {
        self.discarding = false;
        if self.pending.is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut self.pending);
        out.push(b'\n');
        finish(out)
    }

    /// Skip everything up to the next newline (a reader that starts in the
    /// middle of a line too long to take whole).
    pub fn skip_to_newline(&mut self) {
        self.release_pending();
        self.discarding = true;
    }

    /// Empty the held line; give a big buffer back (many idle inputs each
    /// keeping a once-long line's buffer would add up).
    fn release_pending(&mut self) {
        if self.pending.capacity() > 4096 {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
    }

    /// Bytes held as a partial line (a file's saved position stops before them).
    pub fn partial_len(&self) -> usize {
        self.pending.len()
    }
}

/// Count the bytes and make the batch a `String` (no copy when it is valid).
/// Lines are not counted here: a count costs a pass over every byte.
fn finish(out: Vec<u8>) -> Option<String> {
    if out.is_empty() {
        return None;
    }
    stats::add(&STATS.bytes, out.len() as u64);
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => {
            stats::add(&STATS.invalid_utf8, 1);
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    })
}

/// Step from the line start `r` over whole lines of at most `max` bytes:
/// returns where the stepping stopped, and whether a line longer than `max`
/// starts there (otherwise what is left is a partial line, possibly empty).
/// From each line start it looks backwards from `max` ahead for the last
/// newline, so a run of short lines is crossed in a few steps.
#[inline]
fn short_lines_end(data: &[u8], mut r: usize, max: usize) -> (usize, bool) {
    let len = data.len();
    loop {
        let end = len.min(r + max + 1);
        match memrchr_nl(&data[r..end]) {
            Some(q) => r += q + 1,
            None => return (r, !(end == len && len - r <= max)),
        }
    }
}

/// Move a cut at `cut` back (at most 3 bytes, not before `lo`) so it does not
/// split a UTF-8 character.
fn char_floor(b: &[u8], lo: usize, cut: usize) -> usize {
    let mut c = cut;
    while c > lo && cut - c < 3 && c < b.len() && (b[c] & 0xC0) == 0x80 {
        c -= 1;
    }
    if c < b.len() && (b[c] & 0xC0) == 0x80 {
        cut // not UTF-8 anyway: cut where asked
    } else {
        c
    }
}

const W: usize = std::mem::size_of::<usize>();
const LO: usize = usize::MAX / 255; // 0x0101…
const HI: usize = LO * 0x80;
const NL: usize = LO * b'\n' as usize;

/// Does the word contain a `\n` byte (SWAR: no false negatives; a hit is confirmed bytewise)?
#[inline(always)]
fn has_nl(w: usize) -> bool {
    let x = w ^ NL;
    x.wrapping_sub(LO) & !x & HI != 0
}

#[inline(always)]
fn word(s: &[u8], i: usize) -> usize {
    usize::from_ne_bytes(s[i..i + W].try_into().unwrap())
}

/// The first `\n` in `s`.
pub fn memchr_nl(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 2 * W <= s.len() {
        if has_nl(word(s, i)) || has_nl(word(s, i + W)) {
            break;
        }
        i += 2 * W;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// The last `\n` in `s`.
pub fn memrchr_nl(s: &[u8]) -> Option<usize> {
    let mut e = s.len();
    while e >= 2 * W {
        if has_nl(word(s, e - W)) || has_nl(word(s, e - 2 * W)) {
            break;
        }
        e -= 2 * W;
    }
    s[..e].iter().rposition(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_and_a_held_partial() {
        let mut l = Lines::new(100);
        assert_eq!(l.feed(b"a\nbb\nccc").as_deref(), Some("a\nbb\n"));
        assert_eq!(l.partial_len(), 3);
        assert_eq!(l.feed(b"c"), None);
        assert_eq!(l.feed(b"c\nd").as_deref(), Some("ccccc\n"));
        assert_eq!(l.flush_partial().as_deref(), Some("d\n"));
        assert_eq!(l.flush_partial(), None);
        assert_eq!(l.feed(b""), None);
        assert_eq!(l.feed(b"\n").as_deref(), Some("\n"));
    }

    #[test]
    fn crlf_and_nul_pass_through() {
        let mut l = Lines::new(100);
        assert_eq!(l.feed(b"a\r\nb\0c\n").as_deref(), Some("a\r\nb\0c\n"));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let before = stats::get(&STATS.invalid_utf8);
        let mut l = Lines::new(100);
        assert_eq!(
            l.feed(b"ok \xff\xfe ERR\n").as_deref(),
            Some("ok \u{FFFD}\u{FFFD} ERR\n")
        );
        assert!(stats::get(&STATS.invalid_utf8) > before);
    }

    #[test]
    fn exactly_max_is_kept_max_plus_one_is_cut() {
        let mut l = Lines::new(16);
        let s16 = "0123456789abcdef";
        assert_eq!(
            l.feed(format!("{s16}\n").as_bytes()).unwrap(),
            format!("{s16}\n")
        );
        let before = stats::get(&STATS.lines_cut);
        assert_eq!(
            l.feed(format!("{s16}X\nnext\n").as_bytes()).unwrap(),
            format!("{s16}\nnext\n")
        );
        assert!(stats::get(&STATS.lines_cut) > before);
        // Held partial of exactly max bytes, then its newline.
        assert_eq!(l.feed(s16.as_bytes()), None);
        assert_eq!(l.feed(b"\n").unwrap(), format!("{s16}\n"));
        // Held partial, then one byte too many.
        assert_eq!(l.feed(s16.as_bytes()), None);
        assert_eq!(l.feed(b"YYY").unwrap(), format!("{s16}\n"));
        assert_eq!(l.feed(b"ZZZ\nok\n").unwrap(), "ok\n");
    }

    #[test]
    fn a_huge_line_is_cut_and_never_buffered() {
        let mut l = Lines::new(32);
        let mut out = String::new();
        out += &l.feed(b"first\nBEGIN").unwrap_or_default();
        let junk = vec![b'x'; 1 << 16];
        for _ in 0..200 {
            if let Some(s) = l.feed(&junk) {
                out += &s;
            }
            assert!(l.partial_len() <= 32);
            assert!(l.pending.capacity() <= 64, "held {}", l.pending.capacity());
        }
        out += &l.feed(b"xxx\nafter MATCH\n").unwrap();
        assert_eq!(
            out,
            format!("first\nBEGIN{}\nafter MATCH\n", "x".repeat(27))
        );
    }

    #[test]
    fn cut_does_not_split_a_character() {
        let mut l = Lines::new(16);
        // 15 ASCII bytes then a 3-byte character straddling the cut.
        let line = format!("{}€tail\n", "a".repeat(15));
        assert_eq!(
            l.feed(line.as_bytes()).unwrap(),
            format!("{}\n", "a".repeat(15))
        );
    }

    #[test]
    fn several_long_lines_in_one_chunk() {
        let mut l = Lines::new(20);
        let a = "A".repeat(50);
        let b = "B".repeat(21);
        let input = format!("short\n{a}\nmid\n{b}\nend\npart");
        assert_eq!(
            l.feed(input.as_bytes()).unwrap(),
            format!("short\n{}\nmid\n{}\nend\n", &a[..20], &b[..20])
        );
        assert_eq!(l.flush_partial().unwrap(), "part\n");
    }

    #[test]
    fn memchr_helpers_agree_with_naive() {
        let mut s = [b'a'; 100];
        for pos in [0usize, 1, 7, 8, 15, 16, 17, 50, 98, 99] {
            s.iter_mut().for_each(|b| *b = b'a');
            s[pos] = b'\n';
            for n in 0..=100 {
                let sl = &s[..n];
                assert_eq!(
                    memchr_nl(sl),
                    sl.iter().position(|&b| b == b'\n'),
                    "{pos} {n}"
                );
                assert_eq!(
                    memrchr_nl(sl),
                    sl.iter().rposition(|&b| b == b'\n'),
                    "{pos} {n}"
                );
            }
        }
        let t: Vec<u8> = (0..10_000u32)
            .map(|i| if i % 7 == 0 { b'\n' } else { b'q' })
            .collect();
        assert_eq!(memchr_nl(&t[1..]), Some(6));
        assert_eq!(memrchr_nl(&t), Some(9996));
    }

    /// Any chunking gives the same lines as splitting the whole input at once.
    #[test]
    fn random_chunking_matches_a_reference() {
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let max = 16 + rnd(40) as usize;
            let mut input = Vec::new();
            for _ in 0..rnd(60) {
                let cap = if rnd(4) == 0 { 200 } else { 30 };
                let len = rnd(cap) as usize;
                input.extend((0..len).map(|_| b'a' + rnd(26) as u8));
                input.push(b'\n');
            }
            input.extend((0..rnd(10)).map(|_| b'z'));
            // Reference: split whole, cut each line at max, last partial flushed.
            let mut want = String::new();
            let (body, last) = match input.iter().rposition(|&b| b == b'\n') {
                Some(p) => (&input[..=p], &input[p + 1..]),
                None => (&input[..0], &input[..]),
            };
            for line in body
                .split(|&b| b == b'\n')
                .take(body.iter().filter(|&&b| b == b'\n').count())
            {
                want.push_str(std::str::from_utf8(&line[..line.len().min(max)]).unwrap());
                want.push('\n');
            }
            if !last.is_empty() {
                want.push_str(std::str::from_utf8(&last[..last.len().min(max)]).unwrap());
                want.push('\n');
            }
            let mut l = Lines::new(max);
            let mut got = String::new();
            let mut i = 0;
            while i < input.len() {
                let n = (1 + rnd(80) as usize).min(input.len() - i);
                if let Some(s) = l.feed(&input[i..i + n]) {
                    assert!(s.ends_with('\n'));
                    got += &s;
                }
                assert!(l.partial_len() <= max);
                i += n;
            }
            got += &l.flush_partial().unwrap_or_default();
            assert_eq!(got, want, "round {round}, max {max}");
        }
    }
}
