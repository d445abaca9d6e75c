//! The command line and config errors, through the real binary: exit codes,
//! `file:line:col` positions, and the `test` command's summary.

use crate::util::{run, TempDir};

/// Inputs, a destination and a rule: what `test` (like `watch`) needs.
const MINIMAL: &str = "inputs:\n  files: [/var/log/x.log]\nalerts:\n  c: { type: stdout }\nrules:\n  - { name: r, pattern: x, alert: c }\n";

fn config_error(yaml: &str) -> (String, String) {
    let d = TempDir::new("cli");
    let p = d.write("c.yaml", yaml);
    let ps = p.to_str().unwrap().to_string();
    let (code, out, err) = run(&["test", "--config", &ps]);
    assert_eq!(code, 2, "exit code for {yaml:?}; stderr: {err}");
    assert!(out.is_empty(), "stdout must stay clean: {out}");
    (ps, err)
}

#[test]
fn broken_yaml_is_exit_2_with_position() {
    let (p, err) = config_error("rules:\n  - name: [unclosed\n");
    assert!(err.contains(&format!("{p}:")), "{err}");
}

#[test]
fn unknown_key_names_key_and_position() {
    let (p, err) = config_error("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: c\n    cooldwn: 5\n");
    assert!(err.contains(&format!("{p}:7:5:")), "{err}");
    assert!(err.contains("cooldwn"), "{err}");
}

#[test]
fn wrong_type_is_an_error() {
    let (p, err) = config_error("max_line_bytes: [1, 2]\n");
    assert!(err.contains(&format!("{p}:1:")), "{err}");
}

#[test]
fn bad_regex_points_at_the_pattern() {
    let (p, err) = config_error("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: \"(unclosed\"\n    alert: c\n");
    assert!(err.contains(&format!("{p}:5:")), "{err}");
    assert!(err.contains("regex"), "{err}");
}

#[test]
fn undefined_alert_name() {
    let (p, err) = config_error("alerts:\n  c: { type: stdout }\nrules:\n  - name: r\n    pattern: x\n    alert: [c, pager]\n");
    assert!(err.contains(&format!("{p}:6:5:")), "{err}");
    assert!(err.contains("`pager` is not defined"), "{err}");
}

#[test]
fn unset_env_var_is_named() {
    let (p, err) = config_error("alerts:\n  h:\n    type: webhook\n    url: \"http://127.0.0.1:1/${TW_SURELY_UNSET_VAR}\"\n");
    assert!(err.contains(&format!("{p}:4:")), "{err}");
    assert!(err.contains("TW_SURELY_UNSET_VAR"), "{err}");
}

#[test]
fn env_var_with_default_loads() {
    let d = TempDir::new("cli");
    let p = d.write(
        "c.yaml",
        &format!("identity: {{ name: \"${{TW_SURELY_UNSET_VAR:-fallback}}\" }}\n{MINIMAL}"),
    );
    let (code, out, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("identity: fallback"), "{out}");
}

#[test]
fn misspelt_alert_type() {
    let (_, err) = config_error("alerts:\n  h:\n    type: webhok\n    url: http://x\n");
    assert!(err.contains("webhok") && err.contains("webhook"), "{err}");
}

#[test]
fn config_path_is_a_directory() {
    let d = TempDir::new("cli");
    let (code, _, err) = run(&["test", "--config", d.0.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn file_input_that_is_a_directory() {
    let d = TempDir::new("cli");
    let (code, _, err) = run(&["watch", "--file", d.0.to_str().unwrap(), "--rule", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn test_refuses_what_watch_refuses() {
    let d = TempDir::new("cli");
    let p = d.write("c.yaml", "alerts:\n  c: { type: stdout }\n");
    let (code, _, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no rules"), "{err}");
    let p = d.write(
        "c2.yaml",
        "alerts:\n  c: { type: stdout }\nrules:\n  - { name: r, pattern: x, alert: c }\n",
    );
    let (code, _, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no inputs"), "{err}");
}

#[test]
fn test_command_summarises() {
    let d = TempDir::new("cli");
    let p = d.write(
        "c.yaml",
        "identity: { name: edge-1 }\ninputs:\n  files: [/var/log/x.log]\nalerts:\n  console: { type: stdout }\n  hook: { type: webhook, url: \"http://127.0.0.1:9/a?token=s3cret\" }\nrules:\n  - name: errors\n    pattern: ERROR\n    alert: [console, hook]\n",
    );
    let (code, out, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "edge-1",
        "/var/log/x.log",
        "errors",
        "console: stdout",
        "hook: webhook",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&[]).0, 2);
    assert_eq!(run(&["frobnicate"]).0, 2);
    assert_eq!(run(&["watch", "--bogus"]).0, 2);
    let (code, _, err) = run(&["watch", "--file", "x", "--rule", "(bad"]);
    assert_eq!(code, 2);
    assert!(err.contains("regex"), "{err}");
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("USAGE") && out.contains("--until-match"));
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("tinywatcher "));
}

#[test]
fn no_config_found_is_explained() {
    let d = TempDir::new("cli");
    let o = std::process::Command::new(crate::util::BIN)
        .args(["watch"])
        .current_dir(&d.0)
        .env("XDG_CONFIG_HOME", d.path("xdg"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if std::path::Path::new("/etc/tinywatcher/config.yaml").exists() {
        eprintln!(
            "notice: /etc/tinywatcher/config.yaml exists here; skipping the no-config assertion"
        );
        return;
    }
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("no config file found"), "{err}");
}

#[test]
fn config_found_in_current_directory() {
    let d = TempDir::new("cli");
    d.write(
        "tinywatcher.yaml",
        &format!("identity: {{ name: from-cwd }}\n{MINIMAL}"),
    );
    let o = std::process::Command::new(crate::util::BIN)
        .args(["test"])
        .current_dir(&d.0)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("from-cwd"));
}

#[test]
fn features_of_later_versions_are_refused_clearly() {
    let d = TempDir::new("cli");
    let p = d.write(
        "c.yaml",
        "inputs:\n  containers: [api]\nalerts:\n  c: { type: stdout }\n",
    );
    let (code, _, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not supported yet") && err.contains(":2:"),
        "{err}"
    );
}

#[test]
fn every_example_config_is_valid() {
    // Examples name their secrets as env vars; give them values.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let o = std::process::Command::new(crate::util::BIN)
            .args(["test", "--config", p.to_str().unwrap()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HOOK_URL", "https://hooks.example.org/x")
            .env("HOOK_TOKEN", "t")
            .env("K8S_TOKEN", "t")
            .env("AZURE_PASS", "p")
            .env("PASS", "p")
            .env("TOKEN", "t")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if !cfg!(feature = "tls")
            && err.contains("needs TLS, and this tinywatcher was built without the `tls` feature")
        {
            // A TLS stream in a binary built without TLS: refused at load, as it should be.
            assert_eq!(o.status.code(), Some(2), "{}: {err}", p.display());
            continue;
        }
        assert_eq!(o.status.code(), Some(0), "{}: {err}", p.display());
        n += 1;
    }
    assert!(n >= 2, "found {n} example configs");
}

#[test]
fn adhoc_streams_on_one_host_get_distinct_names() {
    let d = TempDir::new("cli");
    let c = d.write(
        "c.yaml",
        "alerts:\n  c: { type: stdout }\nrules:\n  - { name: r, pattern: x, alert: c }\n",
    );
    let (code, out, err) = run(&[
        "test",
        "--config",
        c.to_str().unwrap(),
        "--stream",
        "http://127.0.0.1:1/a",
        "--stream",
        "http://127.0.0.1:1/b",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stream 127.0.0.1:1: http") && out.contains("stream 127.0.0.1:1#2: http"),
        "{out}"
    );
}

#[test]
fn webhook_timeout_zero_is_refused() {
    let (_, err) =
        config_error("alerts:\n  h: { type: webhook, url: \"http://127.0.0.1:9/\", timeout: 0 }\n");
    assert!(err.contains("timeout: must be longer than zero"), "{err}");
}

#[test]
fn identity_defaults_to_the_hostname() {
    let d = TempDir::new("cli");
    let p = d.write("c.yaml", MINIMAL);
    let (code, out, err) = run(&["test", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(out.contains(&format!("identity: {}", host.trim())), "{out}");
}
