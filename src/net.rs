//! Networking shared by every HTTP destination and stream: the one ureq Agent,
//! TLS, timeouts, and the redaction of secrets in anything logged.
//!
//! Agents are shared: one per distinct (connect, overall) timeout pair, so
//! destinations with the same timeouts share one connection pool. TLS is the
//! `tls` cargo feature (native-tls with the system's roots); without it an
//! `https://` URL is refused with a clear error (`tls_unavailable`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The User-Agent sent with every request.
pub const USER_AGENT: &str = concat!("tinywatcher/", env!("CARGO_PKG_VERSION"));

/// The shared agent for requests with these timeouts: `connect` for the TCP
/// (and TLS) connection, `overall` for the whole request including the
/// response body. Redirects are not followed (a POST body would be lost) and
/// non-2xx statuses are returned as responses, not errors.
pub fn agent(connect: Duration, overall: Duration) -> ureq::Agent {
    static AGENTS: OnceLock<Mutex<HashMap<(Duration, Duration), ureq::Agent>>> = OnceLock::new();
    let mut map = AGENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry((connect, overall))
        .or_insert_with(|| build_agent(connect, overall))
        .clone()
}

fn build_agent(connect: Duration, overall: Duration) -> ureq::Agent {
    let b = ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_global(Some(overall))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .max_idle_connections_per_host(2);
    #[cfg(feature = "tls")]
    let b = b.tls_config(
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build(),
    );
    b.build().new_agent()
}

/// `Some(error)` when `url` needs TLS and this binary was built without it.
pub fn tls_unavailable(url: &str) -> Option<String> {
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if https && !cfg!(feature = "tls") {
        Some(format!(
            "{}: https:// needs TLS, and this tinywatcher was built without the `tls` feature",
            redact_url(url)
        ))
    } else {
        None
    }
}

/// A URL with its secrets hidden: userinfo, path beyond the host and the query
/// are replaced by `***` (chat webhooks carry their token in the path).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "***".into(),
    };
    // Conservative: with an `@` anywhere, everything up to the last one may be
    // userinfo (a password with an unencoded `/`, `?` or `#` in it).
    let rest = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host_end < rest.len() {
        format!("{scheme}://{host}/***")
    } else {
        format!("{scheme}://{host}")
    }
}

/// Scrub the secrets of `url` (and any of `secrets`, e.g. header values) out
/// of `text`, typically an error message from an HTTP library that may quote
/// the URL in full or in part: the URL itself becomes `redact_url(url)`, and
/// its userinfo, path, query and fragment, and every secret, become `***`.
pub fn scrub(text: &str, url: &str, secrets: &[&str]) -> String {
    let mut out = text.replace(url, &redact_url(url));
    let mut parts: Vec<&str> = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..host_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            parts.push(userinfo);
            // user and password apart, too
            parts.extend(userinfo.split(':'));
        }
        let tail = &rest[host_end..];
        parts.push(tail);
        // path alone, query alone, and each path segment and query value
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        parts.push(path);
        parts.push(query);
        parts.extend(path.split('/'));
        parts.extend(query.split('&'));
        parts.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(_, v)| v)),
        );
    }
    parts.extend(secrets.iter().copied());
    // Longest first, so a secret's pieces do not break up the whole.
    parts.retain(|p| is_worth_scrubbing(p));
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    for p in parts {
        if out.contains(p) {
            out = out.replace(p, "***");
        }
    }
    out
}

/// Pieces too short or too common to be secrets (`/`, `api`, `v1`) are left
/// alone, or every `/` in a message would turn into `***`.
fn is_worth_scrubbing(p: &str) -> bool {
    let p = p.trim_matches(['/', '?', '#', '&', '=']);
    p.len() >= 6 || (p.len() >= 4 && p.chars().any(|c| c.is_ascii_digit()))
}

/// Wrap a connected TCP stream in TLS for `host` (a name or an IP address,
/// IPv6 with or without brackets), as `tls:` of a stream says: the system's
/// roots are trusted, plus the PEM CA(s) in `ca_file`; `insecure: true` turns
/// certificate and host name verification off (warned about once per host).
/// Errors are plain sentences naming the host: "TLS certificate of HOST did
/// not verify: ..." for a certificate that is not trusted or does not match
/// the host.
///
/// The socket's read timeout is meant to be a short slice: the handshake is
/// resumed after each slice until `limit`'s deadline passes (an error ending
/// in "timed out") or its stop flag is set (an error saying so; the caller
/// sees the flag). A silent server then cannot hold up shutdown. Without
/// `limit`, the first read timeout ends the handshake ("timed out").
#[cfg(feature = "tls")]
pub fn tls_connect_until(
    stream: std::net::TcpStream,
    host: &str,
    tls: &crate::config::TlsCfg,
    limit: Option<(std::time::Instant, &crate::event::Stop)>,
) -> Result<native_tls::TlsStream<std::net::TcpStream>, String> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut b = native_tls::TlsConnector::builder();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(&ca.0)
            .map_err(|e| format!("TLS to {host}: cannot read tls.ca_file {:?}: {e}", ca.0))?;
        // A PEM file may hold several certificates (a chain or a bundle).
        let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
            format!(
                "TLS to {host}: tls.ca_file {:?} is not a PEM certificate: {e}",
                ca.0
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "TLS to {host}: tls.ca_file {:?} holds no PEM certificate",
                ca.0
            ));
        }
        for c in certs {
            b.add_root_certificate(c);
        }
    }
    if tls.insecure {
        warn_insecure_once(host);
        b.danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    let connector = b
        .build()
        .map_err(|e| format!("TLS to {host}: cannot set up TLS: {e}"))?;
    let mut res = connector.connect(host, stream);
    loop {
        match res {
            Ok(s) => return Ok(s),
            Err(native_tls::HandshakeError::Failure(e)) => {
                return Err(tls_error_message(host, &e.to_string()))
            }
            Err(native_tls::HandshakeError::WouldBlock(mid)) => match limit {
                Some((_, stop)) if stop.is_stopped() => {
                    return Err(format!("TLS handshake with {host}: stopped"))
                }
                Some((deadline, _)) if std::time::Instant::now() < deadline => {
                    res = mid.handshake()
                }
                _ => return Err(format!("TLS handshake with {host} timed out")),
            },
        }
    }
}

/// Say plainly what went wrong in a TLS handshake: a certificate that did not
/// verify is named as such (it is a configuration problem, not a network one).
#[cfg(feature = "tls")]
fn tls_error_message(host: &str, err: &str) -> String {
    let e = err.to_ascii_lowercase();
    let cert = [
        "certificate verify failed",
        "verify",
        "certificate",
        "trust",
        "hostname mismatch",
        "self signed",
        "self-signed",
    ];
    if cert.iter().any(|w| e.contains(w)) {
        format!("TLS certificate of {host} did not verify: {err} (trust its CA with tls.ca_file, or set tls.insecure: true)")
    } else {
        format!("TLS handshake with {host} failed: {err}")
    }
}

/// `tls.insecure: true`: warn once per host, not on every reconnect.
#[cfg(feature = "tls")]
fn warn_insecure_once(host: &str) {
    static WARNED: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let mut set = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if set.insert(host.to_string()) {
        log::warn!("TLS to {host}: tls.insecure is set, the server's certificate is NOT verified");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_path_query_and_userinfo() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url("http://user:pw@example.com:8080/x?token=abc"),
            "http://example.com:8080/***"
        );
        assert_eq!(
            redact_url("http://example.com?token=abc"),
            "http://example.com/***"
        );
        assert_eq!(redact_url("http://example.com"), "http://example.com");
        assert_eq!(redact_url("not a url"), "***");
        // A password with an unencoded `?`: nothing of it shows.
        assert_eq!(
            redact_url("http://admin:s3cr?etPass@127.0.0.1:18099/logs"),
            "http://127.0.0.1:18099/***"
        );
    }

    #[test]
    fn scrub_removes_url_and_its_pieces() {
        let url = "http://bob:hunter22@127.0.0.1:9/hooks/s3cr3tT0ken?key=abcdef123";
        let msg = format!("bad uri: {url}; also /hooks/s3cr3tT0ken and key=abcdef123 and hunter22");
        let s = scrub(&msg, url, &[]);
        assert!(s.contains("http://127.0.0.1:9/***"), "{s}");
        for secret in ["s3cr3tT0ken", "abcdef123", "hunter22", "bob:"] {
            assert!(!s.contains(secret), "{secret} left in {s}");
        }
    }

    #[test]
    fn scrub_removes_header_values_and_keeps_ordinary_words() {
        let s = scrub(
            "io: Connection refused; header Bearer xyzzy-123456 rejected",
            "http://h/api/v1",
            &["Bearer xyzzy-123456"],
        );
        assert_eq!(s, "io: Connection refused; header *** rejected");
        // short, common path segments do not eat the message
        let s = scrub("timeout: global, sending to /api", "http://h/api", &[]);
        assert_eq!(s, "timeout: global, sending to /api");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_errors_name_the_host_and_the_cause() {
        let e = tls_error_message("k8s.local", "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed");
        assert!(
            e.starts_with("TLS certificate of k8s.local did not verify: "),
            "{e}"
        );
        let e = tls_error_message("k8s.local", "unexpected EOF");
        assert_eq!(e, "TLS handshake with k8s.local failed: unexpected EOF");
    }

    #[test]
    fn tls_check() {
        assert!(tls_unavailable("http://x/y").is_none());
        if cfg!(feature = "tls") {
            assert!(tls_unavailable("https://x/y").is_none());
        } else {
            let e = tls_unavailable("HTTPS://x/secret").unwrap();
            assert!(e.contains("tls") && !e.contains("secret"), "{e}");
        }
    }
}
