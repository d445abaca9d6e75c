//! The YAML configuration: strict serde structs (unknown keys refused, alert
//! destinations tagged by `type`), `${VAR}` expansion in every string, and the
//! validation that turns it into a runtime `Config`. Everything that can be
//! wrong with a config is found here, before anything starts, and reported as
//! `file:line:col: key: what was expected` (exit 2).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config error, already formatted as `file:line:col: message`.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Scalar helper types: each checks its value while deserializing, so that
// serde_yaml reports the error at the value's own line and column.
// ---------------------------------------------------------------------------

/// A string with `${VAR}`, `$VAR` and `${VAR:-default}` expanded (`$$` is a
/// literal `$`). An unset variable without a default is an error naming it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Str(pub String);

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            // YAML scalars such as `chat_id: 12345` or `name: 42` are strings to us.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        let raw = d.deserialize_any(V)?;
        expand_env(&raw, &|k| std::env::var(k).ok())
            .map(Str)
            .map_err(de::Error::custom)
    }
}

/// Expand `${VAR}`, `${VAR:-default}`, `$VAR` and `$$` in `s`.
pub fn expand_env(s: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let next = s[i..].find('$').map_or(s.len(), |n| i + n);
            out.push_str(&s[i..next]);
            i = next;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let close = s[i..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed `${{` in {s:?}"))?
                    + i;
                let inner = &s[i + 2..close];
                let (name, default) = match inner.find(":-") {
                    Some(p) => (&inner[..p], Some(&inner[p + 2..])),
                    None => (inner, None),
                };
                if !valid_var_name(name) {
                    return Err(format!("`${{{inner}}}` is not a valid variable reference"));
                }
                match (get(name).filter(|v| !(default.is_some() && v.is_empty())), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return Err(format!("environment variable `{name}` is not set (use ${{{name}:-default}} for a default)")),
                }
                i = close + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let end = s[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(s.len(), |n| i + 1 + n);
                let name = &s[i + 1..end];
                match get(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(format!(
                            "environment variable `{name}` is not set (write $$ for a literal `$`)"
                        ))
                    }
                }
                i = end;
            }
            // `$` at the end or before anything else (a regex anchor) stays as it is.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn valid_var_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A duration: a bare number is seconds; or `500ms`, `30s`, `5m`, `1h`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// Parse `500ms`, `30s`, `5m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (expected e.g. 500ms, 30s, 5m, 1h)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        u => {
            return Err(format!(
                "`{s}`: unknown unit `{u}` (expected ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e10).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: seconds, or a string such as 500ms, 30s, 5m, 1h")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                parse_duration(&v.to_string()).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!("{v} is negative; expected a duration")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                parse_duration(&v.to_string()).map(Dur).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `threshold: "N in DUR"`: fire on the Nth match within DUR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub count: u32,
    pub window: Duration,
}

/// Parse `"5 in 2m"`.
pub fn parse_threshold(s: &str) -> Result<Threshold, String> {
    let bad = || format!("`{s}` is not a threshold (expected \"N in DURATION\", e.g. \"5 in 2m\")");
    let (n, d) = s.split_once(" in ").ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("`{s}`: the count must be at least 1"));
    }
    let window = parse_duration(d).map_err(|e| format!("{}: {e}", bad()))?;
    if window.is_zero() {
        return Err(format!("`{s}`: the window must be longer than zero"));
    }
    Ok(Threshold { count, window })
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Str::deserialize(d)?;
        parse_threshold(&s).map_err(de::Error::custom)
    }
}

/// A regex, checked for syntax while parsing so the error points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Str::deserialize(d)?.0;
        check_regex(&s).map_err(de::Error::custom)?;
        Ok(Pattern(s))
    }
}

/// Check a regex's syntax; the error is regex's own, which shows where.
pub fn check_regex(s: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(s)
        .map(|_| ())
        .map_err(|e| format!("invalid regex:\n{e}"))
}

/// One name or a list of names (`alert: hook` or `alert: [hook, console]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<Str>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                let s = Str::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(OneOrMany(vec![s]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                Vec::<Str>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------

/// The whole YAML file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub identity: Option<IdentityCfg>,
    pub state_file: Option<Str>,
    pub max_line_bytes: Option<usize>,
    pub shutdown_timeout: Option<Dur>,
    pub stats_interval: Option<Dur>,
    #[serde(default)]
    pub inputs: InputsCfg,
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertCfg>,
    #[serde(default)]
    pub rules: Vec<RuleCfg>,
    pub resources: Option<serde_yaml::Value>,
    pub system_checks: Option<serde_yaml::Value>,
    pub heartbeat: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityCfg {
    pub name: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsCfg {
    #[serde(default)]
    pub files: Vec<FileCfg>,
    #[serde(default)]
    pub containers: Vec<Str>,
    #[serde(default)]
    pub streams: Vec<StreamCfg>,
    #[serde(default)]
    pub listen: Vec<ListenCfg>,
}

/// The protocol of a network stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamType {
    Websocket,
    Http,
    Sse,
    Tcp,
}

impl StreamType {
    pub fn name(self) -> &'static str {
        match self {
            StreamType::Websocket => "websocket",
            StreamType::Http => "http",
            StreamType::Sse => "sse",
            StreamType::Tcp => "tcp",
        }
    }
}

/// `tls:` of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCfg {
    /// A PEM file with an extra CA certificate to trust.
    pub ca_file: Option<Str>,
    /// Turn certificate verification off (warned about at start).
    #[serde(default)]
    pub insecure: bool,
}

/// `auth:` of an http/sse/websocket stream, as written: exactly one key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthMap {
    basic: Option<Str>,
    bearer: Option<Str>,
}

impl TryFrom<AuthMap> for AuthCfg {
    type Error = String;
    fn try_from(m: AuthMap) -> Result<AuthCfg, String> {
        match (m.basic, m.bearer) {
            (Some(b), None) if b.contains(':') => Ok(AuthCfg::Basic(b)),
            (Some(_), None) => Err("auth.basic: expected \"user:password\"".into()),
            (None, Some(t)) => Ok(AuthCfg::Bearer(t)),
            _ => Err(
                "auth: give exactly one of `basic: \"user:password\"` or `bearer: TOKEN`".into(),
            ),
        }
    }
}

/// `auth:` of an http/sse/websocket stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "AuthMap")]
pub enum AuthCfg {
    /// `user:password`, sent as HTTP basic auth.
    Basic(Str),
    /// A token, sent as `Authorization: Bearer TOKEN`.
    Bearer(Str),
}

/// A network stream input, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCfg {
    pub name: Option<Str>,
    #[serde(rename = "type")]
    pub kind: StreamType,
    pub url: Str,
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    pub reconnect_delay: Option<Dur>,
    pub max_reconnect_delay: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub connect_timeout: Option<Dur>,
    #[serde(default)]
    pub tls: TlsCfg,
    pub auth: Option<AuthCfg>,
    pub ping_interval: Option<Dur>,
    pub max_message_bytes: Option<usize>,
    #[serde(default)]
    pub subprotocols: Vec<Str>,
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenType {
    Udp,
    Tcp,
}

impl ListenType {
    pub fn name(self) -> &'static str {
        match self {
            ListenType::Udp => "udp",
            ListenType::Tcp => "tcp",
        }
    }
}

/// A listener input (devices push lines to us), as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenCfg {
    pub name: Str,
    #[serde(rename = "type")]
    pub kind: ListenType,
    pub address: Str,
    pub max_connections: Option<usize>,
    pub idle_timeout: Option<Dur>,
}

/// Where a file input starts when there is no saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    #[default]
    End,
}

/// A file input: a path (or glob), as a plain string or `{ path, read_from }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCfg {
    pub path: Str,
    pub read_from: Option<ReadFrom>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMap {
    path: Str,
    read_from: Option<ReadFrom>,
}

impl<'de> Deserialize<'de> for FileCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileCfg;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or a map with `path` and `read_from`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileCfg, E> {
                let path = Str::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(FileCfg {
                    path,
                    read_from: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<FileCfg, A::Error> {
                let f = FileMap::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(FileCfg {
                    path: f.path,
                    read_from: f.read_from,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An alert destination, tagged by `type` (never guessed from its fields).
/// The types not supported yet keep their table only to be refused clearly.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AlertCfg {
    Stdout(StdoutCfg),
    Webhook(WebhookCfg),
    Slack(serde_yaml::Value),
    Discord(serde_yaml::Value),
    Telegram(serde_yaml::Value),
    Pagerduty(serde_yaml::Value),
    Ntfy(serde_yaml::Value),
    Email(serde_yaml::Value),
    Sendgrid(serde_yaml::Value),
    Alertmanager(serde_yaml::Value),
    Exec(serde_yaml::Value),
}

impl AlertCfg {
    pub fn type_name(&self) -> &'static str {
        match self {
            AlertCfg::Stdout(_) => "stdout",
            AlertCfg::Webhook(_) => "webhook",
            AlertCfg::Slack(_) => "slack",
            AlertCfg::Discord(_) => "discord",
            AlertCfg::Telegram(_) => "telegram",
            AlertCfg::Pagerduty(_) => "pagerduty",
            AlertCfg::Ntfy(_) => "ntfy",
            AlertCfg::Email(_) => "email",
            AlertCfg::Sendgrid(_) => "sendgrid",
            AlertCfg::Alertmanager(_) => "alertmanager",
            AlertCfg::Exec(_) => "exec",
        }
    }
}

/// `type: stdout`: alerts printed on standard output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutCfg {
    /// Print JSON lines instead of text (also set by `--json`).
    #[serde(default)]
    pub json: bool,
}

/// `type: webhook`: the alert as JSON, POSTed (or `method`) to `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookCfg {
    pub url: Str,
    #[serde(default)]
    pub method: Option<Str>,
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    /// Seconds to connect (default 5).
    pub connect_timeout: Option<Dur>,
    /// Seconds for the whole request (default 10).
    pub timeout: Option<Dur>,
    /// Attempts before an alert is dropped (default 5).
    pub max_attempts: Option<u32>,
    /// Alerts waiting to be sent before new ones are dropped (default 1024).
    pub queue: Option<usize>,
}

/// One rule, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCfg {
    pub name: Str,
    pub pattern: Option<Pattern>,
    pub text: Option<Str>,
    #[serde(default)]
    pub ignore_case: bool,
    pub exclude: Option<Pattern>,
    pub alert: OneOrMany,
    pub cooldown: Option<Dur>,
    pub threshold: Option<Threshold>,
    pub sources: Option<SourcesCfg>,
    pub message: Option<Str>,
    #[serde(default)]
    pub labels: BTreeMap<String, Str>,
    pub silence: Option<Dur>,
}

/// `sources:` of a rule: it applies only to lines from these inputs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourcesCfg {
    #[serde(default)]
    pub files: Vec<Str>,
    #[serde(default)]
    pub containers: Vec<Str>,
    #[serde(default)]
    pub streams: Vec<Str>,
    #[serde(default)]
    pub listeners: Vec<Str>,
}

// ---------------------------------------------------------------------------
// The runtime config.
// ---------------------------------------------------------------------------

/// A file input to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// A path or a glob (`*`, `?`, `[`).
    pub path: String,
    pub read_from: ReadFrom,
}

/// The validated configuration every part of the program runs from.
#[derive(Debug)]
pub struct Config {
    /// The file it came from (none in ad-hoc mode).
    pub path: Option<PathBuf>,
    pub identity: String,
    pub max_line_bytes: usize,
    pub shutdown_timeout: Duration,
    pub stats_interval: Duration,
    pub files: Vec<FileSpec>,
    /// `--file -`: read lines from standard input.
    pub stdin: bool,
    pub streams: Vec<StreamSpec>,
    pub listen: Vec<ListenSpec>,
    pub alerts: BTreeMap<String, AlertCfg>,
    pub rules: Vec<RuleCfg>,
    /// `state_file:` (`--state` overrides it): where positions are saved.
    pub state_file: Option<PathBuf>,
}

pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// The shortest reconnect delay of a stream (also the floor of an SSE `retry:`).
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Where a config is looked for when `--config` is not given.
pub fn search_path() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("tinywatcher.yaml")];
    match std::env::var_os("XDG_CONFIG_HOME").filter(|s| !s.is_empty()) {
        Some(x) => v.push(PathBuf::from(x).join("tinywatcher/config.yaml")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                v.push(PathBuf::from(h).join(".config/tinywatcher/config.yaml"));
            }
        }
    }
    v.push(PathBuf::from("/etc/tinywatcher/config.yaml"));
    v
}

/// Read and parse a config file (not yet validated).
pub fn load_file(path: &Path) -> Result<(RawConfig, String), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
    if meta.is_dir() {
        return Err(ConfigError(format!(
            "{}: is a directory, expected a YAML config file",
            path.display()
        )));
    }
    let src = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
    let raw = parse_str(&src, &path.display().to_string())?;
    Ok((raw, src))
}

/// Parse YAML text; errors carry `name:line:col`.
pub fn parse_str(src: &str, name: &str) -> Result<RawConfig, ConfigError> {
    if src.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_yaml::from_str::<RawConfig>(src).map_err(|e| yaml_error(e, src, name))
}

fn yaml_error(e: serde_yaml::Error, src: &str, name: &str) -> ConfigError {
    let mut msg = e.to_string();
    // serde_yaml appends " at line L column C"; we put the position in front.
    if let Some(p) = msg.rfind(" at line ") {
        msg.truncate(p);
    }
    let start = e.location().map_or(0, |l| l.index());
    let at = refine_location(&msg, src, start);
    let (line, col) = line_col(src, at);
    ConfigError(format!(
        "{name}:{line}:{col}: {}",
        name_the_entry(msg, src, at)
    ))
}

/// serde_yaml names a rule by its index and an alert table not at all
/// (`rules[2]: …`, `alerts: …`): add the rule's and the table's name.
fn name_the_entry(msg: String, src: &str, at: usize) -> String {
    if let Some(rest) = msg.strip_prefix("alerts:") {
        // The alert table the position is in: the nearest line at or above
        // it indented as the tables under `alerts:` are.
        let indent = |l: &str| l.len() - l.trim_start().len();
        let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
        let lines: Vec<&str> = src.lines().collect();
        let here = src[..char_floor(src, at)].matches('\n').count();
        let name = lines
            .iter()
            .position(|l| l.starts_with("alerts:"))
            .and_then(|a| {
                let child = indent(lines.get(a + 1..)?.iter().find(|l| content(l))?);
                lines
                    .get(a + 1..=here.min(lines.len().saturating_sub(1)))?
                    .iter()
                    .rev()
                    .find(|l| content(l) && indent(l) == child)
                    .map(|l| {
                        l.trim()
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .trim_matches(['"', '\''])
                            .to_string()
                    })
            });
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            return format!("alerts.{n}:{rest}");
        }
        return msg;
    }
    if let Some(rest) = msg.strip_prefix("rules[") {
        if let Some((idx, tail)) = rest.split_once(']') {
            let named = idx.parse::<usize>().ok().and_then(|i| {
                let v: serde_yaml::Value = serde_yaml::from_str(src).ok()?;
                v.get("rules")?
                    .get(i)?
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            });
            if let Some(n) = named {
                return format!("rules[{idx}] ({n}){tail}");
            }
        }
    }
    msg
}

/// serde_yaml places some errors at the start of the enclosing mapping (a
/// rule, an alert table); move them to the key or value the message names.
fn refine_location(msg: &str, src: &str, start: usize) -> usize {
    let start = char_floor(src, start);
    // A bad regex: regex's message quotes the pattern on its second line.
    if let Some(p) = msg.find("regex parse error:") {
        if let Some(pat) = msg[p..]
            .lines()
            .nth(1)
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if let Some(off) = src[start..].find(pat) {
                return start + off;
            }
        }
    }
    let token = msg.split('`').nth(1).unwrap_or("");
    if token.is_empty() {
        return start;
    }
    if msg.contains("unknown field") || msg.contains("missing field") {
        if let Some(off) = find_key(src, start, token) {
            return off;
        }
    }
    if msg.contains("environment variable") {
        for t in [format!("${{{token}"), format!("${token}")] {
            if let Some(off) = src[start..].find(&t) {
                return start + off;
            }
        }
    }
    src[start..].find(token).map_or(start, |off| start + off)
}

/// The byte offset of `key:` (as a YAML key) at or after `from`.
fn find_key(src: &str, from: usize, key: &str) -> Option<usize> {
    let mut at = from;
    while let Some(p) = src[at..].find(key) {
        let pos = at + p;
        let before_ok = pos == 0
            || matches!(
                src.as_bytes()[pos - 1],
                b' ' | b'\n' | b'{' | b',' | b'"' | b'\''
            );
        let after = &src[pos + key.len()..];
        let after_ok = after
            .trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with(':');
        if before_ok && after_ok {
            return Some(pos);
        }
        at = pos + key.len();
    }
    None
}

/// `pos`, moved back to a character boundary of `src` (positions from the
/// YAML parser are not guaranteed to be byte offsets).
fn char_floor(src: &str, pos: usize) -> usize {
    let mut p = pos.min(src.len());
    while !src.is_char_boundary(p) {
        p -= 1;
    }
    p
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..char_floor(src, pos)];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

/// Position of a validation error: the `key` inside the `section` entry `entry`.
fn locate(src: &str, section: &str, entry: &str, key: &str) -> (usize, usize) {
    let mut at = find_key(src, 0, section).unwrap_or(0);
    if !entry.is_empty() {
        if let Some(p) = src[at..].find(entry) {
            at += p;
        }
    }
    if !key.is_empty() {
        if let Some(p) = find_key(src, at, key) {
            at = p;
        }
    }
    line_col(src, at)
}

/// What the command line adds to (or, in ad-hoc mode, is instead of) a file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub files: Vec<String>,
    pub containers: Vec<String>,
    pub streams: Vec<String>,
    pub rules: Vec<String>,
    /// Where files without `read_from` start: `end` when watching, `beginning`
    /// for `--until-match` and `--once` (a line already there counts).
    pub default_read_from: ReadFrom,
    /// Ad-hoc rules get no destination (`--until-match` prints the line itself).
    pub adhoc_without_alerts: bool,
}

/// Validate a parsed config (plus command-line sources and rules) into a `Config`.
/// `src` and `name` are the file's text and name, for error positions.
pub fn validate(
    raw: RawConfig,
    src: &str,
    name: &str,
    path: Option<PathBuf>,
    ov: &Overrides,
) -> Result<Config, ConfigError> {
    let err = |section: &str, entry: &str, key: &str, msg: String| {
        let (l, c) = locate(src, section, entry, key);
        ConfigError(format!("{name}:{l}:{c}: {msg}"))
    };
    let not_yet = |section: &str, entry: &str, key: &str, what: &str| {
        err(
            section,
            entry,
            key,
            format!("{what} is not supported yet in this version of tinywatcher"),
        )
    };

    let state_file = match &raw.state_file {
        Some(p) if p.trim().is_empty() => {
            return Err(err(
                "state_file",
                "",
                "",
                "state_file: an empty path".into(),
            ))
        }
        Some(p) if Path::new(&p.0).is_dir() => {
            return Err(err(
                "state_file",
                "",
                "",
                format!(
                    "state_file: {} is a directory; give a file path such as {}/state",
                    p.0,
                    p.0.trim_end_matches('/')
                ),
            ))
        }
        Some(p) => Some(PathBuf::from(&p.0)),
        None => None,
    };
    if !raw.inputs.containers.is_empty() || !ov.containers.is_empty() {
        return Err(not_yet(
            "containers",
            "",
            "",
            "inputs.containers (container logs)",
        ));
    }
    if raw.resources.is_some() {
        return Err(not_yet(
            "resources",
            "",
            "",
            "resources (CPU/memory/disk checks)",
        ));
    }
    if raw.system_checks.is_some() {
        return Err(not_yet(
            "system_checks",
            "",
            "",
            "system_checks (health checks)",
        ));
    }
    if raw.heartbeat.is_some() {
        return Err(not_yet("heartbeat", "", "", "heartbeat"));
    }

    let identity = match raw.identity.and_then(|i| i.name) {
        Some(n) if !n.trim().is_empty() => n.0,
        Some(_) => {
            return Err(err(
                "identity",
                "",
                "name",
                "identity.name: must not be empty".into(),
            ))
        }
        None => hostname(),
    };
    let max_line_bytes = raw.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
    if max_line_bytes < 16 {
        return Err(err(
            "max_line_bytes",
            "",
            "",
            format!("max_line_bytes: {max_line_bytes} is too small (at least 16)"),
        ));
    }

    // Alerts.
    let mut alerts = raw.alerts;
    for (aname, a) in &alerts {
        match a {
            AlertCfg::Stdout(_) => {}
            AlertCfg::Webhook(w) => {
                if let Err(e) = check_authority(&w.url) {
                    return Err(err(
                        "alerts",
                        &format!("{aname}:"),
                        "url",
                        format!("alerts.{aname}.url: {e}"),
                    ));
                }
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err(err(
                        "alerts",
                        &format!("{aname}:"),
                        "url",
                        format!(
                            "alerts.{aname}.url: expected an http:// or https:// URL, got {:?}",
                            crate::net::redact_url(&w.url)
                        ),
                    ));
                }
                if let Some(m) = &w.method {
                    if !matches!(m.to_ascii_uppercase().as_str(), "POST" | "PUT" | "PATCH") {
                        return Err(err(
                            "alerts",
                            &format!("{aname}:"),
                            "method",
                            format!(
                                "alerts.{aname}.method: expected POST, PUT or PATCH, got {:?}",
                                m.0
                            ),
                        ));
                    }
                }
                for (key, d) in [
                    ("timeout", w.timeout),
                    ("connect_timeout", w.connect_timeout),
                ] {
                    if d.is_some_and(|d| d.0.is_zero()) {
                        return Err(err(
                            "alerts",
                            &format!("{aname}:"),
                            key,
                            format!("alerts.{aname}.{key}: must be longer than zero"),
                        ));
                    }
                }
                if w.max_attempts == Some(0) {
                    return Err(err(
                        "alerts",
                        &format!("{aname}:"),
                        "max_attempts",
                        format!("alerts.{aname}.max_attempts: must be at least 1"),
                    ));
                }
                if w.queue == Some(0) {
                    return Err(err(
                        "alerts",
                        &format!("{aname}:"),
                        "queue",
                        format!("alerts.{aname}.queue: must be at least 1"),
                    ));
                }
            }
            other => {
                return Err(not_yet(
                    "alerts",
                    &format!("{aname}:"),
                    "type",
                    &format!("alerts.{aname}: destination type `{}`", other.type_name()),
                ));
            }
        }
    }

    // Rules: from the file, or ad-hoc from --rule.
    let mut rules = raw.rules;
    if !ov.rules.is_empty() {
        if !ov.adhoc_without_alerts && !alerts.contains_key("stdout") {
            alerts.insert("stdout".into(), AlertCfg::Stdout(StdoutCfg::default()));
        }
        for (i, r) in ov.rules.iter().enumerate() {
            check_regex(r).map_err(|e| ConfigError(format!("--rule {r:?}: {e}")))?;
            let name = if ov.rules.len() == 1 {
                "rule".to_string()
            } else {
                format!("rule{}", i + 1)
            };
            rules.push(RuleCfg {
                name: Str(name),
                pattern: Some(Pattern(r.clone())),
                text: None,
                ignore_case: false,
                exclude: None,
                alert: OneOrMany(if ov.adhoc_without_alerts {
                    vec![]
                } else {
                    vec![Str("stdout".into())]
                }),
                cooldown: Some(Dur(Duration::ZERO)),
                threshold: None,
                sources: None,
                message: None,
                labels: BTreeMap::new(),
                silence: None,
            });
        }
    }
    let mut seen = HashSet::new();
    for r in &rules {
        let rn = &r.name.0;
        let entry = format!("name: {rn}");
        if rn.trim().is_empty() {
            return Err(err(
                "rules",
                "name:",
                "name",
                "rules: a rule's `name` must not be empty".into(),
            ));
        }
        if !seen.insert(rn.clone()) {
            return Err(err(
                "rules",
                &entry,
                "name",
                format!("rules: two rules are named `{rn}`; names must be unique"),
            ));
        }
        match (&r.pattern, &r.text) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "rules",
                    &entry,
                    "text",
                    format!("rules.{rn}: has both `pattern` and `text`; give exactly one"),
                ))
            }
            (None, None) => {
                return Err(err(
                    "rules",
                    &entry,
                    "name",
                    format!("rules.{rn}: has neither `pattern` nor `text`; give exactly one"),
                ))
            }
            _ => {}
        }
        if r.alert.0.is_empty() && !ov.adhoc_without_alerts {
            return Err(err(
                "rules",
                &entry,
                "alert",
                format!("rules.{rn}.alert: names no alert"),
            ));
        }
        for a in &r.alert.0 {
            if !alerts.contains_key(&a.0) {
                let known: Vec<&str> = alerts.keys().map(|s| s.as_str()).collect();
                return Err(err(
                    "rules",
                    &entry,
                    "alert",
                    format!(
                        "rules.{rn}.alert: `{}` is not defined under `alerts:` (defined: {})",
                        a.0,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        if r.silence.is_some() {
            return Err(not_yet(
                "rules",
                &entry,
                "silence",
                &format!("rules.{rn}.silence"),
            ));
        }
        if let Some(s) = &r.sources {
            for f in &s.files {
                if is_glob(f) {
                    glob::Pattern::new(f).map_err(|e| {
                        err(
                            "rules",
                            &entry,
                            "files",
                            format!("rules.{rn}.sources.files: bad glob {:?}: {e}", f.0),
                        )
                    })?;
                }
            }
        }
        if let Some(m) = &r.message {
            crate::rule::check_template(m, r).map_err(|e| {
                err(
                    "rules",
                    &entry,
                    "message",
                    format!("rules.{rn}.message: {e}"),
                )
            })?;
        }
    }

    // Files: from the config, plus (or, in ad-hoc mode, instead) --file.
    let mut files = Vec::new();
    let mut stdin = false;
    for f in raw
        .inputs
        .files
        .iter()
        .map(|f| (f.path.0.clone(), f.read_from))
        .chain(ov.files.iter().map(|f| (f.clone(), None)))
    {
        let (p, rf) = f;
        if p == "-" {
            stdin = true;
            continue;
        }
        if p.trim().is_empty() {
            return Err(err("files", "", "", "inputs.files: an empty path".into()));
        }
        if is_glob(&p) {
            glob::Pattern::new(&p).map_err(|e| {
                err(
                    "files",
                    &p,
                    "",
                    format!("inputs.files: bad glob {p:?}: {e}"),
                )
            })?;
        } else if Path::new(&p).is_dir() {
            return Err(err(
                "files",
                &p,
                "",
                format!(
                    "inputs.files: {p} is a directory; give a file or a glob such as {p}/*.log"
                ),
            ));
        }
        let spec = FileSpec {
            path: p,
            read_from: rf.unwrap_or(ov.default_read_from),
        };
        if !files.contains(&spec) {
            files.push(spec);
        }
    }

    let shutdown_timeout = raw.shutdown_timeout.map_or(Duration::from_secs(5), |d| d.0);
    let stats_interval = raw
        .stats_interval
        .map_or(Duration::from_secs(3600), |d| d.0);
    let mut streams = Vec::new();
    let adhoc_streams = ov
        .streams
        .iter()
        .map(|u| adhoc_stream(u))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConfigError)?;
    let nconf = raw.inputs.streams.len();
    for (i, s) in raw
        .inputs
        .streams
        .iter()
        .chain(adhoc_streams.iter())
        .enumerate()
    {
        let mut spec = stream_spec(s).map_err(|(key, msg)| {
            err("streams", &s.url.0, key, format!("inputs.streams: {msg}"))
        })?;
        // `--stream` has no way to name a stream: two on one host:port get `#2`, `#3`…
        if i >= nconf {
            let base = spec.name.clone();
            let mut k = 1;
            while streams.iter().any(|o: &StreamSpec| o.name == spec.name) {
                k += 1;
                spec.name = format!("{base}#{k}");
            }
        }
        if streams.iter().any(|o: &StreamSpec| o.name == spec.name) {
            return Err(err(
                "streams",
                &s.url.0,
                "",
                format!(
                    "inputs.streams: two streams are named `{}`; give each a unique `name`",
                    spec.name
                ),
            ));
        }
        streams.push(spec);
    }
    let mut listen = Vec::new();
    for l in &raw.inputs.listen {
        let entry = l.name.0.to_string();
        let address: std::net::SocketAddr = l
            .address
            .parse()
            .map_err(|_| err("listen", &entry, "address", format!("inputs.listen.{}.address: {:?} is not an IP:port address (e.g. \"0.0.0.0:514\")", l.name.0, l.address.0)))?;
        if listen.iter().any(|o: &ListenSpec| o.name == l.name.0) {
            return Err(err(
                "listen",
                &entry,
                "name",
                format!("inputs.listen: two listeners are named `{}`", l.name.0),
            ));
        }
        if l.kind == ListenType::Udp && l.max_connections.is_some() {
            return Err(err("listen", &entry, "max_connections", format!("inputs.listen.{}.max_connections: udp has no connections (it is for tcp listeners)", l.name.0)));
        }
        if l.max_connections == Some(0) {
            return Err(err(
                "listen",
                &entry,
                "max_connections",
                "inputs.listen: max_connections must be at least 1".into(),
            ));
        }
        listen.push(ListenSpec {
            name: l.name.0.clone(),
            kind: l.kind,
            address,
            max_connections: l.max_connections.unwrap_or(64),
            idle_timeout: l.idle_timeout.map_or(Duration::from_secs(600), |d| d.0),
        });
    }
    // `sources:` names must name something: a typo would silence the rule.
    for r in &rules {
        let Some(src) = &r.sources else { continue };
        let entry = format!("name: {}", r.name.0);
        if !src.containers.is_empty() {
            return Err(not_yet(
                "rules",
                &entry,
                "containers",
                &format!("rules.{}.sources.containers (container logs)", r.name.0),
            ));
        }
        for (names, known, what) in [
            (
                &src.streams,
                streams.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
                "streams",
            ),
            (
                &src.listeners,
                listen.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
                "listeners",
            ),
        ] {
            if let Some(n) = names.iter().find(|n| !known.contains(&n.0.as_str())) {
                let have = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(err("rules", &entry, what, format!("rules.{}.sources.{what}: `{}` is not the name of one of the {what} (defined: {have})", r.name.0, n.0)));
            }
        }
    }
    Ok(Config {
        path,
        identity,
        max_line_bytes,
        shutdown_timeout,
        stats_interval,
        files,
        stdin,
        streams,
        listen,
        alerts,
        rules,
        state_file,
    })
}

/// A network stream input, validated, with its defaults filled in.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Unique; the source is `stream:NAME`. Default: the URL's host[:port].
    pub name: String,
    pub kind: StreamType,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// First reconnect delay (default 5 s), doubling up to `max_reconnect_delay` (60 s).
    pub reconnect_delay: Duration,
    pub max_reconnect_delay: Duration,
    /// No data (not even a ping) for this long: reconnect (default 120 s; 0 = never).
    pub idle_timeout: Duration,
    /// TCP connect and TLS/HTTP/WebSocket handshake timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Read only with the `tls` feature (without it, TLS URLs are refused here).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls: TlsCfg,
    pub auth: Option<AuthCfg>,
    /// WebSocket: our own ping every this long (default 30 s; 0 = never).
    pub ping_interval: Duration,
    /// WebSocket: largest message accepted (default 16 MiB).
    pub max_message_bytes: usize,
    /// WebSocket: `Sec-WebSocket-Protocol` values offered.
    pub subprotocols: Vec<String>,
}

/// A listener input, validated.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// The source is `listen:NAME`.
    pub name: String,
    pub kind: ListenType,
    pub address: std::net::SocketAddr,
    /// tcp: connections served at once (default 64); more are refused and counted.
    pub max_connections: usize,
    /// tcp: a connection silent this long is closed (default 600 s).
    pub idle_timeout: Duration,
}

/// The host[:port] of a URL must be that: a password with an unencoded `/`,
/// `?`, `#` or `@` would otherwise be taken for the host, sent to DNS and
/// shown in logs. The URL is not echoed in the error.
pub fn check_authority(url: &str) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostport = authority.rsplit_once('@').map_or(authority, |x| x.1);
    let port = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|x| x.1),
        None => hostport.rsplit_once(':').map(|x| x.1),
    };
    let bad_port = port.is_some_and(|p| p.parse::<u16>().is_err());
    let stray_at = !authority.contains('@')
        && rest[authority.len()..].contains('@')
        && authority.contains(':');
    if bad_port || stray_at {
        return Err("the URL's host:port does not parse; if its user name or password holds `/`, `?`, `#`, `@` or `:`, percent-encode them (`%2F`, `%3F`, `%23`, `%40`, `%3A`) or use `auth:`".into());
    }
    Ok(())
}

/// `--stream URL`: the type comes from the scheme.
fn adhoc_stream(url: &str) -> Result<StreamCfg, String> {
    let scheme = url.split_once("://").map(|x| x.0.to_ascii_lowercase());
    let kind = match scheme.as_deref() {
        Some("ws" | "wss") => StreamType::Websocket,
        Some("http" | "https") => StreamType::Http,
        Some("tcp" | "tls") => StreamType::Tcp,
        _ => {
            return Err(format!(
                "--stream {:?}: expected a ws://, wss://, http://, https://, tcp:// or tls:// URL",
                crate::net::redact_url(url)
            ))
        }
    };
    Ok(StreamCfg {
        name: None,
        kind,
        url: Str(url.to_string()),
        headers: BTreeMap::new(),
        reconnect_delay: None,
        max_reconnect_delay: None,
        idle_timeout: None,
        connect_timeout: None,
        tls: TlsCfg::default(),
        auth: None,
        ping_interval: None,
        max_message_bytes: None,
        subprotocols: vec![],
    })
}

/// Validate one stream: the URL fits the type; defaults filled in.
/// Errors are (the key at fault, the message).
fn stream_spec(s: &StreamCfg) -> Result<StreamSpec, (&'static str, String)> {
    let url = s.url.0.trim().to_string();
    let shown = crate::net::redact_url(&url);
    let scheme = url.split_once("://").map(|x| x.0.to_ascii_lowercase());
    let ok = match (s.kind, scheme.as_deref()) {
        (StreamType::Websocket, Some("ws" | "wss")) => true,
        (StreamType::Http | StreamType::Sse, Some("http" | "https")) => true,
        (StreamType::Tcp, Some("tcp" | "tls")) => true,
        (StreamType::Tcp, None) => url
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
        _ => false,
    };
    if !ok {
        let want = match s.kind {
            StreamType::Websocket => "a ws:// or wss:// URL",
            StreamType::Http | StreamType::Sse => "an http:// or https:// URL",
            StreamType::Tcp => "host:port, tcp://host:port or tls://host:port",
        };
        return Err((
            "url",
            format!("url {shown:?}: expected {want} for type {}", s.kind.name()),
        ));
    }
    if let Some(tls_scheme @ ("wss" | "https" | "tls")) = scheme.as_deref() {
        if !cfg!(feature = "tls") {
            return Err(("url", format!("url {shown:?}: {tls_scheme}:// needs TLS, and this tinywatcher was built without the `tls` feature")));
        }
    }
    let rest = url.split_once("://").map_or(url.as_str(), |x| x.1);
    let hostport = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = hostport.rsplit_once('@').map_or(hostport, |x| x.1);
    if hostport.is_empty() {
        return Err(("url", format!("url {shown:?} has no host")));
    }
    check_authority(&url).map_err(|e| ("url", e))?;
    let name = match &s.name {
        Some(n) if n.trim().is_empty() => {
            return Err(("name", "a stream's `name` must not be empty".into()))
        }
        Some(n) => n.0.clone(),
        None => hostport.to_string(),
    };
    if s.kind == StreamType::Tcp && (!s.headers.is_empty() || s.auth.is_some()) {
        return Err((
            "headers",
            format!("stream {name}: `headers` and `auth` need an http, sse or websocket stream"),
        ));
    }
    if s.kind != StreamType::Websocket
        && (s.ping_interval.is_some()
            || s.max_message_bytes.is_some()
            || !s.subprotocols.is_empty())
    {
        return Err(("ping_interval", format!("stream {name}: ping_interval, max_message_bytes and subprotocols are for websocket streams")));
    }
    if let Some(ca) = &s.tls.ca_file {
        if !Path::new(&ca.0).is_file() {
            return Err((
                "ca_file",
                format!(
                    "stream {name}: tls.ca_file {:?} is not a readable file",
                    ca.0
                ),
            ));
        }
    }
    let reconnect_delay = s.reconnect_delay.map_or(Duration::from_secs(5), |d| d.0);
    if reconnect_delay < MIN_RECONNECT_DELAY {
        return Err(("reconnect_delay", format!("stream {name}: reconnect_delay must be at least 100ms (a server that closes at once would be hammered)")));
    }
    let max_reconnect_delay = s
        .max_reconnect_delay
        .map_or(Duration::from_secs(60), |d| d.0)
        .max(reconnect_delay);
    Ok(StreamSpec {
        name,
        kind: s.kind,
        url,
        headers: s
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        reconnect_delay,
        max_reconnect_delay,
        idle_timeout: s.idle_timeout.map_or(Duration::from_secs(120), |d| d.0),
        connect_timeout: s.connect_timeout.map_or(Duration::from_secs(10), |d| d.0),
        tls: s.tls.clone(),
        auth: s.auth.clone(),
        ping_interval: s.ping_interval.map_or(Duration::from_secs(30), |d| d.0),
        max_message_bytes: s.max_message_bytes.unwrap_or(16 << 20),
        subprotocols: s.subprotocols.iter().map(|x| x.0.clone()).collect(),
    })
}

/// Does this path contain glob characters?
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The machine's hostname (the default identity).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let h = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !h.is_empty() {
            return h;
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion() {
        assert_eq!(expand_env("a ${HOME} b", &env).unwrap(), "a /root b");
        assert_eq!(expand_env("$HOME/x", &env).unwrap(), "/root/x");
        assert_eq!(expand_env("${NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_env("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_env("cost $$5", &env).unwrap(), "cost $5");
        assert_eq!(expand_env("end$", &env).unwrap(), "end$");
        assert_eq!(expand_env("(a|b)$|^x", &env).unwrap(), "(a|b)$|^x");
        assert!(expand_env("${NOPE}", &env).unwrap_err().contains("`NOPE`"));
        assert!(expand_env("$NOPE", &env).unwrap_err().contains("`NOPE`"));
        assert!(expand_env("${HOME", &env).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(
            parse_duration("18446744073709551615").is_err(),
            "too long to add to an Instant"
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(
            parse_threshold("5 in 2m").unwrap(),
            Threshold {
                count: 5,
                window: Duration::from_secs(120)
            }
        );
        assert_eq!(
            parse_threshold("3 in 500ms").unwrap().window,
            Duration::from_millis(500)
        );
        assert!(parse_threshold("5 per 2m").is_err());
        assert!(parse_threshold("0 in 2m").is_err());
        assert!(parse_threshold("x in 2m").is_err());
    }

    fn parse(src: &str) -> Result<Config, ConfigError> {
        let raw = parse_str(src, "c.yaml")?;
        validate(raw, src, "c.yaml", None, &Overrides::default())
    }

    #[test]
    fn reference_config_loads() {
        let c = parse(
            "identity:\n  name: box\ninputs:\n  files:\n    - /var/log/a.log\n    - { path: /var/log/b.log, read_from: beginning }\nalerts:\n  console:\n    type: stdout\n  hook:\n    type: webhook\n    url: http://127.0.0.1:9/x\nrules:\n  - name: r\n    pattern: \"ERR(OR)?\"\n    alert: [console, hook]\n    cooldown: 30\n  - name: t\n    text: \"a.b\"\n    alert: console\n    threshold: \"5 in 2s\"\n",
        )
        .unwrap();
        assert_eq!(c.identity, "box");
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.files[1].read_from, ReadFrom::Beginning);
        assert_eq!(c.rules.len(), 2);
        assert!(matches!(c.alerts["hook"], AlertCfg::Webhook(_)));
    }

    #[test]
    fn unknown_key_has_position() {
        let e = parse("inputs:\n  files: []\nrules:\n  - name: r\n    patern: x\n    alert: c\n")
            .unwrap_err()
            .0;
        assert!(e.starts_with("c.yaml:5:5:"), "{e}");
        assert!(e.contains("patern"), "{e}");
    }

    #[test]
    fn unknown_key_in_alert_has_position() {
        let e = parse("alerts:\n  hook:\n    type: webhook\n    url: http://x\n    heders: {}\n")
            .unwrap_err()
            .0;
        assert!(e.contains("heders"), "{e}");
        assert!(e.starts_with("c.yaml:5:"), "{e}");
    }

    #[test]
    fn errors_name_the_rule_and_the_alert_table() {
        let e = parse("rules:\n  - name: db_down\n    patern: x\n    alert: c\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("rules[0] (db_down): unknown field `patern`"),
            "{e}"
        );
        let e = parse("alerts:\n  console: { type: stdout }\n  hook:\n    type: webhook\n    url: http://x\n    heders: {}\n").unwrap_err().0;
        assert!(e.contains("alerts.hook: unknown field `heders`"), "{e}");
        let e = parse("alerts:\n  c: { type: stdout, jsn: true }\n")
            .unwrap_err()
            .0;
        assert!(e.contains("alerts.c: unknown field `jsn`"), "{e}");
    }

    #[test]
    fn misspelt_alert_type() {
        let e = parse("alerts:\n  hook:\n    type: webhok\n    url: http://x\n")
            .unwrap_err()
            .0;
        assert!(e.contains("webhok"), "{e}");
    }

    #[test]
    fn bad_regex_has_position() {
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: \"a(b\"\n    alert: c\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:5:"), "{e}");
        assert!(e.contains("regex"), "{e}");
    }

    #[test]
    fn undefined_alert() {
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: nope\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:6:5:"), "{e}");
        assert!(e.contains("`nope`"), "{e}");
    }

    #[test]
    fn both_pattern_and_text() {
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    text: y\n    alert: c\n").unwrap_err().0;
        assert!(e.contains("both"), "{e}");
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    alert: c\n")
            .unwrap_err()
            .0;
        assert!(e.contains("neither"), "{e}");
    }

    #[test]
    fn wrong_type() {
        let e = parse("max_line_bytes: lots\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:1:"), "{e}");
    }

    #[test]
    fn broken_yaml() {
        let e = parse("rules:\n  - name: [unclosed\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:"), "{e}");
    }

    #[test]
    fn unset_env_var_has_position() {
        let e = parse(
            "alerts:\n  hook:\n    type: webhook\n    url: \"http://x/${TW_TEST_SURELY_UNSET}\"\n",
        )
        .unwrap_err()
        .0;
        assert!(e.starts_with("c.yaml:4:"), "{e}");
        assert!(e.contains("TW_TEST_SURELY_UNSET"), "{e}");
    }

    #[test]
    fn missing_alert_key_and_bad_type() {
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("missing field `alert`") && e.starts_with("c.yaml:4:"),
            "{e}"
        );
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: c\n    cooldown: soon\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:7:"), "{e}");
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: c\n    threshold: lots\n").unwrap_err().0;
        assert!(e.starts_with("c.yaml:7:") && e.contains("threshold"), "{e}");
    }

    #[test]
    fn directory_as_file_input() {
        let e = parse("inputs:\n  files:\n    - /tmp\n").unwrap_err().0;
        assert!(
            e.contains("is a directory") && e.starts_with("c.yaml:3:"),
            "{e}"
        );
    }

    #[test]
    fn unencoded_secrets_in_url_userinfo_are_refused_without_echo() {
        for u in [
            "http://admin:s3cr?etPass@127.0.0.1:18099/logs",
            "http://admin:s3cr/etPass@127.0.0.1/logs",
            "http://h:99999/",
        ] {
            let e = parse(&format!(
                "inputs:\n  streams:\n    - {{ name: s, type: http, url: {u:?} }}\n"
            ))
            .unwrap_err()
            .0;
            assert!(e.contains("percent-encode") && !e.contains("etPass"), "{e}");
        }
        for u in [
            "http://u:p%3Fw@127.0.0.1:80/x?q=a@b",
            "http://127.0.0.1/x",
            "http://[::1]:8080/",
            "http://user@host/p",
        ] {
            assert!(check_authority(u).is_ok(), "{u}");
        }
        let e = parse("alerts:\n  h: { type: webhook, url: \"https://u:p/w@hooks.example/x\" }\n")
            .unwrap_err()
            .0;
        assert!(e.contains("percent-encode") && !e.contains("p/w"), "{e}");
    }

    #[test]
    fn sources_must_name_defined_streams_and_listeners() {
        let e = parse("inputs:\n  listen:\n    - { name: syslog, type: udp, address: \"127.0.0.1:5514\" }\nalerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: c\n    sources: { listeners: [syslgo] }\n").unwrap_err().0;
        assert!(
            e.contains("`syslgo`") && e.contains("defined: syslog") && e.starts_with("c.yaml:10:"),
            "{e}"
        );
        let e = parse("alerts:\n  c: { type: stdout }\nrules:\n  - { name: r, pattern: x, alert: c, sources: { containers: [web] } }\n").unwrap_err().0;
        assert!(e.contains("not supported yet"), "{e}");
        let e = parse("inputs:\n  listen:\n    - { name: s, type: udp, address: \"127.0.0.1:5514\", max_connections: 5 }\n").unwrap_err().0;
        assert!(e.contains("udp has no connections"), "{e}");
    }

    #[test]
    fn later_features_refused_clearly() {
        let c = parse("inputs:\n  streams:\n    - { name: k, type: tcp, url: \"127.0.0.1:1\" }\n    - { type: websocket, url: \"ws://k8s:6443/api\" }\n").unwrap();
        assert_eq!(c.streams[1].name, "k8s:6443");
        let e =
            parse("inputs:\n  streams:\n    - { name: k, type: websocket, url: \"http://x\" }\n")
                .unwrap_err()
                .0;
        assert!(e.contains("ws://") && e.starts_with("c.yaml:3:"), "{e}");
        let c = parse("inputs:\n  streams:\n    - { type: http, url: \"http://a/x\", auth: { basic: \"u:p\" } }\n    - { type: sse, url: \"http://b/x\", auth: { bearer: tok } }\n").unwrap();
        assert_eq!(c.streams[0].auth, Some(AuthCfg::Basic(Str("u:p".into()))));
        assert_eq!(c.streams[1].auth, Some(AuthCfg::Bearer(Str("tok".into()))));
        let e = parse("inputs:\n  streams:\n    - { type: http, url: \"http://a/x\", auth: { basic: a, bearer: b } }\n").unwrap_err().0;
        assert!(e.contains("exactly one"), "{e}");
        let e = parse("inputs:\n  listen:\n    - { name: s, type: udp, address: \"nowhere\" }\n")
            .unwrap_err()
            .0;
        assert!(e.contains("IP:port"), "{e}");
        let e = parse("alerts:\n  s:\n    type: slack\n    url: http://x\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("not supported yet") && e.starts_with("c.yaml:3:"),
            "{e}"
        );
    }

    /// Without the `tls` feature a TLS URL is a config error at load time
    /// (file:line:col), not a failure of every connection at run time.
    #[test]
    fn tls_stream_urls_need_the_tls_feature() {
        for (kind, url) in [
            ("websocket", "wss://k8s:6443/api?token=s3cr3t99"),
            ("http", "https://a/x"),
            ("sse", "HTTPS://a/x"),
            ("tcp", "tls://logs:6514"),
        ] {
            let src =
                format!("inputs:\n  streams:\n    - {{ name: k, type: {kind}, url: \"{url}\" }}\n");
            let res = parse(&src);
            if cfg!(feature = "tls") {
                assert_eq!(res.unwrap().streams[0].url, url);
            } else {
                let e = res.unwrap_err().0;
                assert!(e.starts_with("c.yaml:3:"), "{e}");
                assert!(
                    e.contains(
                        "needs TLS, and this tinywatcher was built without the `tls` feature"
                    ),
                    "{e}"
                );
                assert!(!e.contains("s3cr3t99"), "{e}");
            }
        }
        let ov = Overrides {
            streams: vec!["wss://k8s:6443/x".into()],
            rules: vec!["E".into()],
            ..Default::default()
        };
        let res = validate(RawConfig::default(), "", "command line", None, &ov);
        if cfg!(feature = "tls") {
            assert!(res.is_ok());
        } else {
            assert!(res.unwrap_err().0.contains("wss:// needs TLS"));
        }
    }
}
