//! `type: webhook`: the alert as a JSON object, POSTed (or PUT/PATCHed) to a
//! URL with the configured headers. A 2xx is success; connect errors,
//! timeouts, 5xx and 429 are worth a retry (429/503 with their `Retry-After`);
//! any other status is final. Errors name the URL only in its redacted form
//! and never show a header value.

use super::{Deliver, Failure, Payload};
use crate::config::WebhookCfg;
use crate::event::Alert;
use crate::net;
use std::io::ErrorKind;
use std::time::Duration;

/// How much of an error response's body is quoted in the reason.
const BODY_QUOTE: usize = 200;
/// How much of a response body is read (so the connection can be reused).
const BODY_LIMIT: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Put,
    Patch,
}

/// One webhook destination, ready to send.
pub(crate) struct Webhook {
    name: String,
    url: String,
    method: Method,
    headers: Vec<(String, String)>,
    /// Whether `headers` sets its own Content-Type.
    own_content_type: bool,
    connect: Duration,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Webhook {
    /// Check the parts the config loader does not (header syntax, TLS support).
    pub fn new(name: &str, cfg: &WebhookCfg) -> Result<Webhook, String> {
        let url = cfg.url.0.clone();
        if let Some(e) = net::tls_unavailable(&url) {
            return Err(format!("alerts.{name}.url: {e}"));
        }
        let method = match cfg.method.as_ref().map(|m| m.to_ascii_uppercase()) {
            None => Method::Post,
            Some(m) if m == "POST" => Method::Post,
            Some(m) if m == "PUT" => Method::Put,
            Some(m) if m == "PATCH" => Method::Patch,
            Some(m) => {
                return Err(format!(
                    "alerts.{name}.method: expected POST, PUT or PATCH, got {m:?}"
                ))
            }
        };
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            ureq::http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("alerts.{name}.headers: {k:?} is not a valid header name"))?;
            // The value is a secret: say what is wrong without showing it.
            ureq::http::HeaderValue::from_str(&v.0).map_err(|_| format!("alerts.{name}.headers.{k}: the value is not a valid header value (control characters or non-ASCII)"))?;
            headers.push((k.clone(), v.0.clone()));
        }
        let own_content_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let connect = cfg.connect_timeout.map_or(Duration::from_secs(5), |d| d.0);
        let timeout = cfg.timeout.map_or(Duration::from_secs(10), |d| d.0);
        let agent = net::agent(connect, timeout);
        Ok(Webhook {
            name: name.to_string(),
            url,
            method,
            headers,
            own_content_type,
            connect,
            timeout,
            agent,
        })
    }

    /// What to call it in a log line: `POST http://host/***`.
    pub fn describe(&self) -> String {
        let m = match self.method {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        };
        format!("{m} {}", net::redact_url(&self.url))
    }

    /// `text` with the URL's secrets and the header values hidden.
    fn scrub(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.headers.iter().map(|(_, v)| v.as_str()).collect();
        net::scrub(text, &self.url, &secrets)
    }
}

impl Deliver for Webhook {
    fn deliver(&mut self, alert: &Alert, budget: Option<Duration>) -> Result<(), Failure> {
        let body =
            serde_json::to_vec(&Payload::new(alert, &self.name, false)).map_err(|e| Failure {
                retryable: false,
                retry_after: None,
                reason: format!("cannot encode the alert: {e}"),
            })?;
        let mut req = match self.method {
            Method::Post => self.agent.post(&self.url),
            Method::Put => self.agent.put(&self.url),
            Method::Patch => self.agent.patch(&self.url),
        };
        if !self.own_content_type {
            req = req.header("Content-Type", "application/json");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        // Near the shutdown deadline, do not outlive it.
        let mut timeout = self.timeout;
        if let Some(b) = budget.filter(|b| *b < self.timeout) {
            timeout = b.max(Duration::from_millis(1));
            req = req.config().timeout_global(Some(timeout)).build();
        }
        match req.send(&body[..]) {
            Ok(mut resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                // Read (a bounded part of) the body: the connection can then be reused.
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .lossy_utf8(true)
                    .read_to_string()
                    .unwrap_or_default();
                if status.is_success() {
                    return Ok(());
                }
                let code = status.as_u16();
                let mut reason = format!("HTTP {code} {}", status.canonical_reason().unwrap_or(""));
                let quote = first_line(&text, BODY_QUOTE);
                if !quote.is_empty() {
                    reason.push_str(": ");
                    reason.push_str(&quote);
                }
                let retryable = code == 429 || status.is_server_error();
                Err(Failure {
                    retryable,
                    retry_after: if code == 429 || code == 503 {
                        retry_after
                    } else {
                        None
                    },
                    reason: self.scrub(reason.trim_end()),
                })
            }
            Err(e) => {
                let reason = match &e {
                    ureq::Error::Timeout(ureq::Timeout::Connect) => {
                        format!("could not connect within {:?}", self.connect.min(timeout))
                    }
                    ureq::Error::Timeout(_) => format!("no answer within {timeout:?}"),
                    _ => describe(&e),
                };
                Err(Failure {
                    retryable: is_retryable(&e),
                    retry_after: None,
                    reason: self.scrub(&reason),
                })
            }
        }
    }
}

/// `Retry-After: SECONDS` (the HTTP-date form is left to the backoff).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The first line of `s`, at most `max` bytes (on a char boundary).
fn first_line(s: &str, max: usize) -> String {
    let l = s.trim().lines().next().unwrap_or("").trim();
    let mut end = l.len().min(max);
    while !l.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = l[..end].to_string();
    if end < l.len() {
        out.push('…');
    }
    out
}

/// Transport errors, timeouts and broken responses may pass; a bad URL,
/// header or TLS setup will not.
fn is_retryable(e: &ureq::Error) -> bool {
    use ureq::Error as E;
    !matches!(
        e,
        E::StatusCode(_)
            | E::Http(_)
            | E::BadUri(_)
            | E::RedirectFailed
            | E::InvalidProxyUrl
            | E::TooManyRedirects
            | E::RequireHttpsOnly(_)
            | E::TlsRequired
            | E::BodyExceedsLimit(_)
    )
}

/// A short, plain description of a transport error (not yet scrubbed).
fn describe(e: &ureq::Error) -> String {
    use ureq::Error as E;
    match e {
        E::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => "connection refused".into(),
            ErrorKind::ConnectionReset => "connection reset by the server".into(),
            ErrorKind::UnexpectedEof => "the server closed the connection without answering".into(),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".into(),
            _ => io.to_string(),
        },
        E::Timeout(t) => format!("timed out ({t})"),
        E::HostNotFound => "host not found".into(),
        E::TlsRequired => {
            "https:// needs TLS, and this tinywatcher was built without the `tls` feature".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn first_line_is_bounded() {
        assert_eq!(first_line("\n oops \nmore", 100), "oops");
        assert_eq!(first_line("ééé", 3), "é…");
        assert_eq!(first_line("", 10), "");
    }
}
