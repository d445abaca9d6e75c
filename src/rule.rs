//! The compiled rule set. Matching is two-staged so the common case — a line
//! no rule wants — costs as little as grep: one multi-pattern regex scans a
//! whole batch of lines at once and stops only on candidate lines; each
//! candidate is then checked line by line with a `RegexSet` and the matched
//! rules' own regexes (for captures, `exclude` and `sources`).

use crate::config::{RuleCfg, Threshold, DEFAULT_COOLDOWN};
use crate::input::lines::{memchr_nl, memrchr_nl};
use regex::{Regex, RegexSet};
use regex_automata::meta;
use regex_automata::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A piece of a `message` template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Rule,
    Line,
    Source,
    Identity,
    Suppressed,
    /// A capture group by number or name.
    Group(String),
}

/// A parsed `message:` template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Part>);

fn parse_template(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|x| x.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|x| x.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let close = s[i..].find('}').ok_or_else(|| {
                    format!("unclosed `{{` at byte {i} (write `{{{{` for a literal brace)")
                })? + i;
                let name = s[i + 1..close].trim();
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(match name {
                    "rule" => Part::Rule,
                    "line" => Part::Line,
                    "source" => Part::Source,
                    "identity" => Part::Identity,
                    "suppressed" => Part::Suppressed,
                    "" => return Err("empty placeholder `{}`".into()),
                    n => Part::Group(n.to_string()),
                });
                while chars.peek().is_some_and(|x| x.0 <= close) {
                    chars.next();
                }
            }
            '}' => {
                return Err(format!(
                    "stray `}}` at byte {i} (write `}}}}` for a literal brace)"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// The regex a rule matches with (text rules are escaped literals).
fn rule_regex_src(r: &RuleCfg) -> String {
    let body = match (&r.pattern, &r.text) {
        (Some(p), _) => p.0.clone(),
        (None, Some(t)) => regex::escape(t),
        (None, None) => String::new(),
    };
    if r.ignore_case {
        format!("(?i:{body})")
    } else {
        body
    }
}

/// Check a rule's `message` template: braces balanced, placeholders known
/// (a built-in name, or a capture group of the rule by number or name).
pub fn check_template(t: &str, r: &RuleCfg) -> Result<(), String> {
    let parts = parse_template(t)?;
    let re = Regex::new(&rule_regex_src(r)).map_err(|e| e.to_string())?;
    for p in parts {
        if let Part::Group(g) = p {
            let ok = match g.parse::<usize>() {
                Ok(n) => n < re.captures_len(),
                Err(_) => re.capture_names().flatten().any(|n| n == g),
            };
            if !ok {
                return Err(format!(
                    "`{{{g}}}` is neither a built-in placeholder ({{rule}} {{line}} {{source}} {{identity}} {{suppressed}}) nor a capture group of the pattern"
                ));
            }
        }
    }
    Ok(())
}

/// Which inputs a rule applies to.
#[derive(Debug, Clone)]
pub struct SourceFilter {
    files: Vec<FileMatch>,
    containers: Vec<String>,
    streams: Vec<String>,
    listeners: Vec<String>,
}

#[derive(Debug, Clone)]
enum FileMatch {
    Exact(String),
    Glob(glob::Pattern),
}

impl FileMatch {
    fn matches(&self, p: &str) -> bool {
        match self {
            FileMatch::Exact(e) => e == p,
            FileMatch::Glob(g) => g.matches(p),
        }
    }
}

fn absolute(p: &str) -> String {
    if p == "-" {
        return p.to_string();
    }
    // As the file input names its state entries (`std::path::absolute`: not resolved).
    std::path::absolute(p).map_or_else(|_| p.to_string(), |a| a.to_string_lossy().into_owned())
}

impl SourceFilter {
    /// Does this filter let lines from `source` (`file:/x`, `stream:k8s`…) through?
    pub fn allows(&self, source: &str) -> bool {
        if let Some(p) = source.strip_prefix("file:") {
            // As written, then (only for a relative path: no work per line
            // otherwise) from the current directory, as the filter's paths are.
            self.files.iter().any(|f| f.matches(p))
                || (!Path::new(p).is_absolute() && {
                    let abs = absolute(p);
                    self.files.iter().any(|f| f.matches(&abs))
                })
        } else if source == "stdin" {
            self.files.iter().any(|f| f.matches("-"))
        } else if let Some(c) = source.strip_prefix("container:") {
            self.containers.iter().any(|x| x == c)
        } else if let Some(s) = source.strip_prefix("stream:") {
            self.streams.iter().any(|x| x == s)
        } else if let Some(l) = source.strip_prefix("listen:") {
            self.listeners.iter().any(|x| x == l)
        } else {
            false
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub regex: Regex,
    pub exclude: Option<Regex>,
    /// Indexes of its destinations (see `alert::Senders`).
    pub alerts: Vec<usize>,
    pub cooldown: Duration,
    pub threshold: Option<Threshold>,
    pub sources: Option<SourceFilter>,
    template: Option<Template>,
    pub labels: Arc<BTreeMap<String, String>>,
    has_groups: bool,
}

/// What a template can refer to when rendered.
pub struct Ctx<'a> {
    pub identity: &'a str,
    pub source: &'a str,
    pub line: &'a str,
    pub suppressed: u64,
    pub captures: &'a BTreeMap<String, String>,
}

impl Rule {
    /// Captures of this rule's regex in `line`: named groups by name, the rest by number.
    pub fn captures(&self, line: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if !self.has_groups {
            return out;
        }
        if let Some(c) = self.regex.captures(line) {
            for (i, name) in self.regex.capture_names().enumerate().skip(1) {
                if let Some(m) = c.get(i) {
                    out.insert(
                        name.map_or_else(|| i.to_string(), |n| n.to_string()),
                        m.as_str().to_string(),
                    );
                }
            }
        }
        out
    }

    /// The alert message: the template rendered, or the line itself.
    pub fn message(&self, cx: &Ctx) -> String {
        let Some(t) = &self.template else {
            return cx.line.to_string();
        };
        let mut s = String::new();
        for p in &t.0 {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Rule => s.push_str(&self.name),
                Part::Line => s.push_str(cx.line),
                Part::Source => s.push_str(cx.source),
                Part::Identity => s.push_str(cx.identity),
                Part::Suppressed => s.push_str(&cx.suppressed.to_string()),
                Part::Group(g) => {
                    // Numbered groups may be named too: look the number up by name.
                    let v = cx.captures.get(g).or_else(|| {
                        let n: usize = g.parse().ok()?;
                        let name = self.regex.capture_names().nth(n)??;
                        cx.captures.get(name)
                    });
                    if let Some(v) = v {
                        s.push_str(v)
                    }
                }
            }
        }
        s
    }
}

/// Every rule, plus the two matchers over all of them.
#[derive(Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// All rules in one multi-line regex, run over whole batches.
    scan: Option<meta::Regex>,
    /// All rules, run on one candidate line to tell which matched.
    set: RegexSet,
}

impl RuleSet {
    /// Compile validated rules. `alert_index` maps a destination name to its index.
    pub fn compile(
        cfgs: &[RuleCfg],
        alert_index: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<RuleSet, String> {
        let mut rules = Vec::new();
        let mut srcs = Vec::new();
        for r in cfgs {
            let src = rule_regex_src(r);
            let regex = Regex::new(&src).map_err(|e| format!("rule {}: {e}", r.name.0))?;
            let exclude = match &r.exclude {
                Some(p) => {
                    Some(Regex::new(&p.0).map_err(|e| format!("rule {}: exclude: {e}", r.name.0))?)
                }
                None => None,
            };
            let alerts = r
                .alert
                .0
                .iter()
                .map(|a| {
                    alert_index(&a.0)
                        .ok_or_else(|| format!("rule {}: no alert named {}", r.name.0, a.0))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sources = r.sources.as_ref().map(|s| SourceFilter {
                files: s
                    .files
                    .iter()
                    .map(|f| match crate::config::is_glob(f) {
                        true => glob::Pattern::new(&absolute(f))
                            .map(FileMatch::Glob)
                            .unwrap_or(FileMatch::Exact(f.0.clone())),
                        false => FileMatch::Exact(absolute(f)),
                    })
                    .collect(),
                containers: s.containers.iter().map(|x| x.0.clone()).collect(),
                streams: s.streams.iter().map(|x| x.0.clone()).collect(),
                listeners: s.listeners.iter().map(|x| x.0.clone()).collect(),
            });
            let template = match &r.message {
                Some(m) => Some(Template(
                    parse_template(m).map_err(|e| format!("rule {}: message: {e}", r.name.0))?,
                )),
                None => None,
            };
            let has_groups = regex.captures_len() > 1;
            rules.push(Rule {
                name: Arc::from(r.name.0.as_str()),
                regex,
                exclude,
                alerts,
                cooldown: r.cooldown.map_or(DEFAULT_COOLDOWN, |d| d.0),
                threshold: r.threshold,
                sources,
                template,
                labels: Arc::new(
                    r.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect(),
                ),
                has_groups,
            });
            srcs.push(src);
        }
        let set = RegexSet::new(&srcs).map_err(|e| e.to_string())?;
        let scan = if srcs.is_empty() {
            None
        } else {
            // Multi-line, CRLF-aware: `^`/`$` are line boundaries, `\r\n` included.
            let multi: Vec<String> = srcs.iter().map(|s| format!("(?mR:{s})")).collect();
            Some(meta::Regex::new_many(&multi).map_err(|e| e.to_string())?)
        };
        Ok(RuleSet { rules, scan, set })
    }

    /// Call `on_line` with every line of `text` (whole lines, each ending in
    /// `\n`) that some rule may match, without its newline, and the indexes of
    /// the rules whose regex matches it.
    #[inline]
    pub fn scan<'a>(
        &self,
        text: &'a str,
        mut on_line: impl FnMut(&'a str, &mut dyn Iterator<Item = usize>),
    ) {
        let Some(scan) = &self.scan else { return };
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let Some(m) = scan.find(Input::new(bytes).span(at..bytes.len())) else {
                break;
            };
            if m.start() >= bytes.len() {
                break; // an empty match after the last newline: there is no line there
            }
            let ls = memrchr_nl(&bytes[at..m.start()]).map_or(at, |p| at + p + 1);
            let le = memchr_nl(&bytes[m.start()..]).map_or(bytes.len(), |p| m.start() + p);
            // A CRLF line is matched and reported without its `\r`.
            let line = text[ls..le].strip_suffix('\r').unwrap_or(&text[ls..le]);
            let hits = self.set.matches(line);
            if hits.matched_any() {
                on_line(line, &mut hits.into_iter());
            }
            at = le + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OneOrMany, Pattern, SourcesCfg, Str};

    fn rule(name: &str, pattern: Option<&str>, text: Option<&str>) -> RuleCfg {
        RuleCfg {
            name: Str(name.into()),
            pattern: pattern.map(|p| Pattern(p.into())),
            text: text.map(|t| Str(t.into())),
            ignore_case: false,
            exclude: None,
            alert: OneOrMany(vec![Str("c".into())]),
            cooldown: None,
            threshold: None,
            sources: None,
            message: None,
            labels: BTreeMap::new(),
            silence: None,
        }
    }

    fn hits(set: &RuleSet, text: &str) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        set.scan(text, |l, it| v.push((l.to_string(), it.collect())));
        v
    }

    #[test]
    fn scan_finds_candidate_lines_only() {
        let s = RuleSet::compile(
            &[rule("e", Some("ERROR"), None), rule("t", None, Some("a.b"))],
            &|_| Some(0),
        )
        .unwrap();
        let h = hits(&s, "ok\nan ERROR here\naxb\na.b and ERROR\nlast\n");
        assert_eq!(
            h,
            vec![
                ("an ERROR here".into(), vec![0]),
                ("a.b and ERROR".into(), vec![0, 1])
            ]
        );
    }

    #[test]
    fn anchors_are_per_line() {
        let s = RuleSet::compile(
            &[
                rule("a", Some("^start"), None),
                rule("b", Some("end$"), None),
            ],
            &|_| Some(0),
        )
        .unwrap();
        let h = hits(&s, "x start\nstart x\nthe end\nend x\n");
        assert_eq!(
            h,
            vec![("start x".into(), vec![0]), ("the end".into(), vec![1])]
        );
    }

    #[test]
    fn an_empty_match_at_the_end_is_not_a_line() {
        let s = RuleSet::compile(&[rule("blank", Some(r"^\s*$"), None)], &|_| Some(0)).unwrap();
        assert_eq!(hits(&s, "a\nb\n"), vec![]);
        assert_eq!(hits(&s, "a\n\nb\n"), vec![("".into(), vec![0])]);
    }

    #[test]
    fn crlf_lines_lose_their_cr() {
        let s = RuleSet::compile(&[rule("b", Some("end$"), None)], &|_| Some(0)).unwrap();
        let h = hits(&s, "the end\r\nend x\r\n");
        assert_eq!(h, vec![("the end".into(), vec![0])]);
    }

    #[test]
    fn cross_line_scan_match_does_not_hide_a_real_one() {
        // `\s+B` matches "\nB" across lines, but per line only "x B" matches.
        let s = RuleSet::compile(&[rule("r", Some(r"\s+B"), None)], &|_| Some(0)).unwrap();
        let h = hits(&s, "A\nB\nx B\n");
        assert_eq!(h, vec![("x B".into(), vec![0])]);
    }

    #[test]
    fn ignore_case_and_captures_and_template() {
        let mut r = rule("db", Some(r"OperationalError: (?P<reason>\w+) (\d+)"), None);
        r.message = Some(Str(
            "{rule} on {identity}: {reason} #{2} ({suppressed}) {{x}}".into(),
        ));
        let mut c = rule("ci", Some("warn"), None);
        c.ignore_case = true;
        let s = RuleSet::compile(&[r, c], &|_| Some(0)).unwrap();
        let h = hits(&s, "WARN x\nOperationalError: timeout 42\n");
        assert_eq!(h[0].1, vec![1]);
        let caps = s.rules[0].captures("OperationalError: timeout 42");
        assert_eq!(caps["reason"], "timeout");
        assert_eq!(caps["2"], "42");
        let cx = Ctx {
            identity: "box",
            source: "file:/x",
            line: "l",
            suppressed: 3,
            captures: &caps,
        };
        assert_eq!(s.rules[0].message(&cx), "db on box: timeout #42 (3) {x}");
    }

    #[test]
    fn duplicate_group_names_across_rules_compile() {
        let s = RuleSet::compile(
            &[
                rule("a", Some("(?P<x>a)"), None),
                rule("b", Some("(?P<x>b)"), None),
            ],
            &|_| Some(0),
        );
        assert!(s.is_ok());
    }

    #[test]
    fn templates_are_checked() {
        let r = rule("r", Some("(?P<a>x)"), None);
        assert!(check_template("{a} {1} {rule}", &r).is_ok());
        assert!(check_template("{b}", &r).is_err());
        assert!(check_template("{2}", &r).is_err());
        assert!(check_template("{a", &r).is_err());
        assert!(check_template("a}", &r).is_err());
    }

    #[test]
    fn source_filters() {
        let f = SourceFilter {
            files: vec![
                FileMatch::Exact("/var/log/a.log".into()),
                FileMatch::Glob(glob::Pattern::new("/srv/*.log").unwrap()),
            ],
            containers: vec!["api".into()],
            streams: vec!["k8s".into()],
            listeners: vec!["syslog".into()],
        };
        assert!(f.allows("file:/var/log/a.log"));
        assert!(f.allows("file:/srv/x.log"));
        assert!(!f.allows("file:/var/log/b.log"));
        assert!(f.allows("container:api") && !f.allows("container:web"));
        assert!(f.allows("stream:k8s") && f.allows("listen:syslog") && !f.allows("stdin"));
        let _ = SourcesCfg::default();
    }
}
