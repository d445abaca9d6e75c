//! Networking shared by every HTTP destination and stream: the one ureq Agent,
//! TLS, timeouts, and the redaction of secrets in anything logged.

/// A URL with its secrets hidden: userinfo, path beyond the host and the query
/// are replaced by `***` (chat webhooks carry their token in the path).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "***".into(),
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut host = &rest[..host_end];
    if let Some(at) = host.rfind('@') {
        host = &host[at + 1..];
    }
    if host_end < rest.len() {
        format!("{scheme}://{host}/***")
    } else {
        format!("{scheme}://{host}")
    }
}
