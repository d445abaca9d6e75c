//! tinywatcher: follow logs, match regex rules, send alerts.
//!
//! The data flow is inputs -> channel -> matcher -> senders: `main` parses
//! the command line and the config (everything that can be wrong is found
//! there), starts the senders, the inputs and the signal thread, runs the
//! matcher on this thread, and shuts down in order.

mod alert;
mod backoff;
mod check;
mod config;
mod event;
mod flags;
mod input;
mod matcher;
mod net;
mod rule;
mod state;
mod stats;

use crate::config::{Config, ConfigError, Overrides};
use crate::event::Stop;
use crate::flags::{Args, Command, Parsed};
use crate::matcher::{Matcher, Outcome};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// A failure that ends the run with exit status 2.
struct Fatal(String);

impl From<ConfigError> for Fatal {
    fn from(e: ConfigError) -> Fatal {
        Fatal(e.0)
    }
}

fn main() -> ExitCode {
    let parsed = match flags::parse(std::env::args_os().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tinywatcher: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match parsed {
        Parsed::Help => return print_stdout(flags::USAGE),
        Parsed::Version => {
            return print_stdout(&format!("tinywatcher {}\n", env!("CARGO_PKG_VERSION")))
        }
        Parsed::Run(a) => a,
    };
    init_logging(&args);
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(e)) => {
            eprintln!("tinywatcher: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_stdout(s: &str) -> ExitCode {
    // A closed stdout (`| head`) is not an error.
    let _ = std::io::stdout().write_all(s.as_bytes());
    ExitCode::SUCCESS
}

fn init_logging(a: &Args) {
    let level = match (a.quiet, a.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(format!("tinywatcher={level}")),
    )
    .format_target(false)
    .init();
}

/// Load the config named by `--config`, found on the search path, or (with
/// ad-hoc sources and rules) none at all; then merge the command line into it.
fn load_config(a: &Args) -> Result<Config, Fatal> {
    let adhoc = !a.rules.is_empty()
        && (!a.files.is_empty() || !a.containers.is_empty() || !a.streams.is_empty());
    let path: Option<PathBuf> = match &a.config {
        Some(p) => Some(p.clone()),
        None if adhoc => None,
        None => match config::search_path().into_iter().find(|p| p.is_file()) {
            Some(p) => Some(p),
            None => {
                let looked: Vec<String> = config::search_path()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(Fatal(format!(
                    "no config file found (looked for {}); give --config FILE, or sources and rules: tinywatcher watch --file app.log --rule 'ERROR|FATAL'",
                    looked.join(", ")
                )));
            }
        },
    };
    let (raw, src, name) = match &path {
        Some(p) => {
            let (raw, src) = config::load_file(p)?;
            (raw, src, p.display().to_string())
        }
        None => (
            Default::default(),
            String::new(),
            "command line".to_string(),
        ),
    };
    let ov = Overrides {
        files: a.files.clone(),
        containers: a.containers.clone(),
        streams: a.streams.clone(),
        rules: a.rules.clone(),
        default_read_from: if a.until_match || a.once {
            config::ReadFrom::Beginning
        } else {
            config::ReadFrom::End
        },
        adhoc_without_alerts: a.until_match || a.command == Command::Check,
    };
    let mut cfg = config::validate(raw, &src, &name, path, &ov)?;
    if a.command == Command::Check && !a.files.is_empty() {
        // `check --file X` narrows the check to X.
        cfg.files.retain(|f| a.files.contains(&f.path));
    }
    Ok(cfg)
}

fn run(a: &Args) -> Result<u8, Fatal> {
    let cfg = load_config(a)?;
    match a.command {
        Command::Test => test_config(&cfg, a),
        Command::Check => {
            if cfg.rules.is_empty() {
                return Err(Fatal(
                    "no rules: add `rules:` to the config or give --rule REGEX".into(),
                ));
            }
            if !cfg.streams.is_empty() || !cfg.listen.is_empty() {
                if cfg.files.is_empty() && !cfg.stdin {
                    return Err(Fatal("check reads the last lines of files (or of --file -); streams and listeners have none: use `watch --until-match --timeout DUR` on them".into()));
                }
                log::warn!(
                    "check reads files only: skipping {} stream(s) and {} listener(s)",
                    cfg.streams.len(),
                    cfg.listen.len()
                );
            }
            let rules = rule::RuleSet::compile(&cfg.rules, &|_| Some(0)).map_err(Fatal)?;
            check::run(&cfg, &rules, a.lines, check::use_color(a.color)).map_err(Fatal)
        }
        Command::Watch => watch(cfg, a),
    }
}

/// `tinywatcher test`: the config is valid (and `watch` would run it); say
/// what it holds.
fn test_config(cfg: &Config, a: &Args) -> Result<u8, Fatal> {
    runnable(cfg)?;
    let mut out = String::new();
    let src = cfg
        .path
        .as_ref()
        .map_or("command line".into(), |p| p.display().to_string());
    out.push_str(&format!("config {src}: OK\nidentity: {}\n", cfg.identity));
    out.push_str(&format!(
        "inputs: {} file(s){}, {} stream(s), {} listener(s)\n",
        cfg.files.len(),
        if cfg.stdin { " + stdin" } else { "" },
        cfg.streams.len(),
        cfg.listen.len()
    ));
    for f in &cfg.files {
        out.push_str(&format!(
            "  file {} (read_from: {})\n",
            f.path,
            if f.read_from == config::ReadFrom::Beginning {
                "beginning"
            } else {
                "end"
            }
        ));
    }
    for st in &cfg.streams {
        out.push_str(&format!(
            "  stream {}: {} {}\n",
            st.name,
            st.kind.name(),
            net::redact_url(&st.url)
        ));
    }
    for l in &cfg.listen {
        out.push_str(&format!(
            "  listen {}: {} on {}\n",
            l.name,
            l.kind.name(),
            l.address
        ));
    }
    if let Some(p) = &cfg.state_file {
        out.push_str(&format!("state file: {}\n", p.display()));
    }
    out.push_str(&format!("rules: {}\n", cfg.rules.len()));
    for r in &cfg.rules {
        let what = match (&r.pattern, &r.text) {
            (Some(p), _) => format!("pattern {:?}", p.0),
            (_, Some(t)) => format!("text {:?}", t.0),
            _ => String::new(),
        };
        let alerts: Vec<&str> = r.alert.0.iter().map(|s| s.0.as_str()).collect();
        out.push_str(&format!(
            "  {}: {} -> {}\n",
            r.name.0,
            what,
            alerts.join(", ")
        ));
    }
    out.push_str(&format!("alerts: {}\n", cfg.alerts.len()));
    for (n, d) in &cfg.alerts {
        out.push_str(&format!("  {n}: {}\n", d.type_name()));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    if a.send {
        let mut failed = 0;
        for (n, d) in &cfg.alerts {
            match alert::send_test(n, d, cfg, a.json) {
                Ok(()) => println!("send {n}: ok"),
                Err(e) => {
                    failed += 1;
                    println!("send {n}: FAILED: {e}");
                }
            }
        }
        if failed > 0 {
            return Ok(1);
        }
    }
    Ok(0)
}

/// `tinywatcher watch`: inputs -> channel -> matcher -> senders, until a signal
/// (or, with `--once`, until the files are read to their end).
/// What `watch` needs to run at all (`test` says the same).
fn runnable(cfg: &Config) -> Result<(), Fatal> {
    if cfg.rules.is_empty() {
        return Err(Fatal(
            "no rules: add `rules:` to the config or give --rule REGEX".into(),
        ));
    }
    if cfg.files.is_empty() && !cfg.stdin && cfg.streams.is_empty() && cfg.listen.is_empty() {
        return Err(Fatal(
            "no inputs: add `inputs:` to the config or give --file PATH or --stream URL".into(),
        ));
    }
    Ok(())
}

fn watch(mut cfg: Config, a: &Args) -> Result<u8, Fatal> {
    runnable(&cfg)?;
    if a.once {
        if cfg.files.is_empty() && !cfg.stdin {
            return Err(Fatal(
                "--once reads file inputs to their end, and there are none (streams and listeners have no end): give --file PATH or add inputs.files".into(),
            ));
        }
        if !cfg.streams.is_empty() || !cfg.listen.is_empty() {
            log::warn!(
                "--once reads files only: not starting {} stream(s) and {} listener(s)",
                cfg.streams.len(),
                cfg.listen.len()
            );
            cfg.streams.clear();
            cfg.listen.clear();
        }
    }
    // A state file that cannot be written is found now, not at the first save.
    let store = match a.state.as_ref().or(cfg.state_file.as_ref()) {
        Some(p) => Some(state::Store::open(p).map_err(Fatal)?),
        None => None,
    };
    let cfg = &cfg;
    let started = Instant::now();
    let stop = Stop::new();
    spawn_signal_thread(stop.clone())?;

    let senders =
        alert::Senders::start(&cfg.alerts, a.json, a.until_match, &stop).map_err(Fatal)?;
    let rules = rule::RuleSet::compile(&cfg.rules, &|n| senders.index_of(n)).map_err(Fatal)?;
    // Batches are up to ~128 KiB: 16 in flight bound the memory a burst costs.
    let (tx, rx) = crossbeam_channel::bounded(16);
    let mode = match (a.once, a.until_match) {
        (true, _) => input::Mode::Once,
        (false, true) => input::Mode::UntilMatch,
        _ => input::Mode::Watch,
    };
    let handles = input::start(
        cfg,
        tx,
        stop.clone(),
        mode,
        store.as_ref().map(|s| (s.path(), &s.state)),
    );
    let inputs = handles.len();
    let nets = if a.once {
        String::new()
    } else {
        format!(
            ", {} stream(s), {} listener(s)",
            cfg.streams.len(),
            cfg.listen.len()
        )
    };
    log::info!(
        "{} {} file input(s){}{} with {} rule(s), {} destination(s)",
        if a.once { "reading" } else { "watching" },
        cfg.files.len(),
        if cfg.stdin { " and stdin" } else { "" },
        nets,
        cfg.rules.len(),
        cfg.alerts.len()
    );

    let mut m = Matcher::new(rules, &cfg.identity, &senders);
    m.until_match = a.until_match;
    m.store = store;
    let deadline = a.timeout.map(|t| started + t);
    let outcome = m.run(&rx, stop.notified(), inputs, cfg.stats_interval, deadline);
    stop.stop();
    if !a.until_match && !a.once {
        // Give the inputs a moment to end in order (a WebSocket sends its Close).
        let end = Instant::now() + std::time::Duration::from_secs(2);
        while handles.iter().any(|h| !h.is_finished()) && Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let first = m.first.take();
    let store = m.store.take();
    drop(m);
    log::debug!("matcher finished: {outcome:?}; flushing senders");
    let left = senders.finish(Instant::now() + cfg.shutdown_timeout);
    if left > 0 {
        log::warn!("{left} alert(s) not delivered before the shutdown deadline");
    }
    // Positions of what the matcher processed (its alerts delivered or given up on).
    if let Some(mut s) = store {
        s.save();
    }
    log::info!("stats: {}", stats::STATS.summary());
    if a.once && !a.until_match {
        if first.is_none() {
            log::info!("--once: no rule matched");
            return Ok(1);
        }
        return Ok(0);
    }
    if !a.until_match {
        return Ok(0);
    }
    match (outcome, first) {
        (Outcome::Matched, Some(alert)) => {
            let text = if a.json {
                alert::match_json(&alert)
            } else {
                alert.line.clone()
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}").and_then(|_| out.flush());
            Ok(0)
        }
        (Outcome::TimedOut, _) => {
            log::info!("no match within {:?}", a.timeout.unwrap_or_default());
            Ok(1)
        }
        _ => {
            log::info!("no match before the end of input");
            Ok(1)
        }
    }
}

/// SIGINT/SIGTERM: the first stops the run in order, a second exits at once.
fn spawn_signal_thread(stop: Stop) -> Result<(), Fatal> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Fatal(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut n = 0;
            for sig in signals.forever() {
                n += 1;
                if n == 1 {
                    log::info!("signal {sig}: shutting down (send it again to exit at once)");
                    stop.stop();
                } else {
                    eprintln!("tinywatcher: second signal, exiting now");
                    std::process::exit(130);
                }
            }
        })
        .map_err(|e| Fatal(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}
