//! The command line: a lexopt loop that fills plain data (`Args`). Nothing here
//! touches the file system; `main` turns `Args` into a runtime config.

use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
tinywatcher — follow logs, match regex rules, send alerts

USAGE:
  tinywatcher watch [--config FILE] [SOURCES] [--rule REGEX]... [--until-match]
                    [--timeout DUR] [--once] [--state FILE] [--no-resources] [--json]
  tinywatcher check [--config FILE] [SOURCES] [--rule REGEX]... [-n N] [--color WHEN]
  tinywatcher test  [--config FILE] [--send]
  tinywatcher --help | --version

SOURCES:
  -f, --file PATH        follow a file (globs allowed; '-' reads standard input)
      --container NAME   follow a container's logs (not supported yet)
      --stream URL       follow a network stream (ws://, wss://, http(s)://, tcp://, tls://)

OPTIONS:
  -c, --config FILE      config file (default: ./tinywatcher.yaml,
                         $XDG_CONFIG_HOME/tinywatcher/config.yaml, /etc/tinywatcher/config.yaml)
  -r, --rule REGEX       an ad-hoc rule (repeatable); its alerts go to stdout
      --until-match      exit 0 at the first alert (print its line), 1 at end of input or timeout
      --timeout DUR      with --until-match: give up after DUR (500ms, 30s, 5m, 1h)
      --once             read files to their current end, alert, exit
      --state FILE       save and resume file positions here
      --no-resources     do not run resource checks (there are none yet)
      --json             print alerts on stdout as JSON lines
  -n, --lines N          check: how many last lines of each input (default 100)
      --send             test: send one test alert to every destination
      --color WHEN       auto, always or never (default auto; NO_COLOR is honoured;
                         --colour works too)
  -v, --verbose          more diagnostics on stderr (repeat for more)
  -q, --quiet            only errors on stderr
  -h, --help             this help
  -V, --version          the version

EXIT STATUS: 0 ran fine (or matched); 1 no match (--until-match, --once, check)
             or a failed delivery (test --send); 2 usage, config or fatal error.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Watch,
    Check,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

/// Everything the command line said, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub command: Command,
    pub config: Option<PathBuf>,
    pub files: Vec<String>,
    pub containers: Vec<String>,
    pub streams: Vec<String>,
    pub rules: Vec<String>,
    pub until_match: bool,
    pub timeout: Option<Duration>,
    pub once: bool,
    pub state: Option<PathBuf>,
    pub no_resources: bool,
    pub json: bool,
    pub lines: usize,
    /// `-n` was given (it only goes with `check`).
    pub lines_given: bool,
    pub send: bool,
    pub color: Color,
    pub verbose: u8,
    pub quiet: bool,
}

impl Args {
    fn new(command: Command) -> Args {
        Args {
            command,
            config: None,
            files: vec![],
            containers: vec![],
            streams: vec![],
            rules: vec![],
            until_match: false,
            timeout: None,
            once: false,
            state: None,
            no_resources: false,
            json: false,
            lines: 100,
            lines_given: false,
            send: false,
            color: Color::Auto,
            verbose: 0,
            quiet: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Args),
    Help,
    Version,
}

/// Parse the arguments (without the program name).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Parsed, String> {
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args::new(Command::Watch);
    let mut command: Option<Command> = None;
    let mut verbose = 0u8;
    let mut quiet = false;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('v') | Long("verbose") => verbose = verbose.saturating_add(1),
            Short('q') | Long("quiet") => quiet = true,
            Short('c') | Long("config") => {
                a.config = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Short('f') | Long("file") => a.files.push(string(&mut p, "--file")?),
            Long("container") => a.containers.push(string(&mut p, "--container")?),
            Long("stream") => a.streams.push(string(&mut p, "--stream")?),
            Short('r') | Long("rule") => a.rules.push(string(&mut p, "--rule")?),
            Long("until-match") => a.until_match = true,
            Long("timeout") => {
                let v = string(&mut p, "--timeout")?;
                let d = crate::config::parse_duration(&v).map_err(|e| format!("--timeout: {e}"))?;
                a.timeout = Some(d);
            }
            Long("once") => a.once = true,
            Long("state") => a.state = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("no-resources") => a.no_resources = true,
            Long("json") => a.json = true,
            Short('n') | Long("lines") => {
                let v = string(&mut p, "-n")?;
                a.lines = v
                    .parse()
                    .map_err(|_| format!("-n: {v:?} is not a number of lines"))?;
                a.lines_given = true;
            }
            Long("send") => a.send = true,
            Long("color") | Long("colour") => {
                a.color = match string(&mut p, "--color")?.as_str() {
                    "auto" => Color::Auto,
                    "always" => Color::Always,
                    "never" => Color::Never,
                    v => {
                        return Err(format!(
                            "--color: expected auto, always or never, got {v:?}"
                        ))
                    }
                }
            }
            Value(v) if command.is_none() => {
                command = Some(match v.to_str() {
                    Some("watch") => Command::Watch,
                    Some("check") => Command::Check,
                    Some("test") => Command::Test,
                    _ => {
                        return Err(format!(
                            "unknown command {v:?} (expected watch, check or test; see --help)"
                        ))
                    }
                })
            }
            Value(v) => return Err(format!("unexpected argument {v:?} (see --help)")),
            _ => return Err(format!("{} (see --help)", arg.unexpected())),
        }
    }
    a.command =
        command.ok_or_else(|| "missing command: watch, check or test (see --help)".to_string())?;
    a.verbose = verbose;
    a.quiet = quiet;
    check_combinations(&a)?;
    Ok(Parsed::Run(a))
}

fn string(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = p.value().map_err(|e| e.to_string())?;
    v.into_string()
        .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
}

/// Flags that only make sense with some commands.
fn check_combinations(a: &Args) -> Result<(), String> {
    let watch_only = [
        (a.until_match, "--until-match"),
        (a.timeout.is_some(), "--timeout"),
        (a.once, "--once"),
        (a.state.is_some(), "--state"),
        (a.json, "--json"),
    ];
    if a.command != Command::Watch {
        if let Some((_, f)) = watch_only.iter().find(|(on, _)| *on) {
            return Err(format!("{f} only goes with `watch`"));
        }
    }
    if !a.rules.is_empty() && a.command == Command::Test {
        return Err("--rule goes with `watch` or `check`".into());
    }
    if a.timeout.is_some_and(|t| t.is_zero()) {
        return Err("--timeout: must be longer than zero".into());
    }
    if a.command != Command::Check {
        if a.lines_given {
            return Err("-n/--lines only goes with `check`".into());
        }
        if a.color != Color::Auto {
            return Err("--color only goes with `check`".into());
        }
    }
    if a.send && a.command != Command::Test {
        return Err("--send only goes with `test`".into());
    }
    if a.timeout.is_some() && !a.until_match {
        return Err("--timeout only goes with --until-match".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Result<Parsed, String> {
        parse(s.iter().map(OsString::from))
    }
    fn args(s: &[&str]) -> Args {
        match p(s).unwrap() {
            Parsed::Run(a) => a,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn watch_with_adhoc_sources() {
        let a = args(&[
            "watch",
            "--file",
            "app.log",
            "-f",
            "-",
            "--rule",
            "ERROR|FATAL",
            "--json",
        ]);
        assert_eq!(a.command, Command::Watch);
        assert_eq!(a.files, vec!["app.log", "-"]);
        assert_eq!(a.rules, vec!["ERROR|FATAL"]);
        assert!(a.json);
    }

    #[test]
    fn options_anywhere() {
        let a = args(&["-v", "--config=x.yaml", "watch", "-vq"]);
        assert_eq!(a.config, Some(PathBuf::from("x.yaml")));
        assert_eq!(a.verbose, 2);
        assert!(a.quiet);
    }

    #[test]
    fn until_match_and_timeout() {
        let a = args(&[
            "watch",
            "--until-match",
            "--timeout",
            "500ms",
            "--file",
            "x",
        ]);
        assert!(a.until_match);
        assert_eq!(a.timeout, Some(Duration::from_millis(500)));
        assert!(p(&["watch", "--until-match", "--timeout", "soon"])
            .unwrap_err()
            .contains("--timeout"));
        assert!(p(&["watch", "--timeout", "5s"])
            .unwrap_err()
            .contains("--until-match"));
        assert!(p(&["watch", "--until-match", "--timeout", "0s"])
            .unwrap_err()
            .contains("zero"));
        assert!(p(&["test", "--rule", "x"]).unwrap_err().contains("`check`"));
    }

    #[test]
    fn check_and_test() {
        let a = args(&["check", "-n", "20", "--color", "never"]);
        assert_eq!(
            (a.command, a.lines, a.color),
            (Command::Check, 20, Color::Never)
        );
        assert!(args(&["test", "--send"]).send);
        assert!(p(&["check", "--once"]).unwrap_err().contains("watch"));
        assert!(p(&["watch", "--send"]).is_err());
        assert!(p(&["check", "-n", "many"]).is_err());
        assert!(p(&["watch", "-n", "5"]).unwrap_err().contains("check"));
        assert!(p(&["watch", "--color", "always"])
            .unwrap_err()
            .contains("check"));
    }

    #[test]
    fn help_version_and_errors() {
        assert_eq!(p(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(p(&["watch", "-h"]).unwrap(), Parsed::Help);
        assert_eq!(p(&["--version"]).unwrap(), Parsed::Version);
        assert!(p(&[]).unwrap_err().contains("missing command"));
        assert!(p(&["wach"]).unwrap_err().contains("unknown command"));
        assert!(p(&["watch", "--bogus"]).unwrap_err().contains("--bogus"));
        assert!(p(&["watch", "--file"]).is_err());
        assert!(p(&["watch", "--color", "pink"]).is_err());
    }
}
