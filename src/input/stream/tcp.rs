//! TCP streams: `host:port`, `tcp://host:port`, or `tls://host:port` (TLS,
//! with `tls.ca_file`/`tls.insecure`). The bytes are split into lines as they
//! arrive (a partial line is held until its newline; the last one counts when
//! the peer closes). TCP keepalive is on; `idle_timeout` without a byte
//! reconnects.

use super::{pump, tcp_connect, Conn, StreamError};
use crate::config::StreamSpec;

/// Connect once and read lines until the connection ends.
pub fn run(spec: &StreamSpec, conn: &mut Conn) -> Result<(), StreamError> {
    let (tls, host, port) = parse(&spec.url).map_err(StreamError::Refused)?;
    let s = tcp_connect(&host, port, spec.connect_timeout, &conn.stop)?;
    let sink = &mut |c: &mut Conn, b: &[u8]| c.feed(b);
    if tls {
        #[cfg(feature = "tls")]
        {
            // Bounded by connect_timeout, and stopped within a read slice on shutdown.
            let mut t = super::tls_handshake(s, &host, spec, conn)?;
            conn.connected(&format!("tls://{host}:{port}"));
            return pump(&mut t, conn, spec.idle_timeout, sink);
        }
        #[cfg(not(feature = "tls"))]
        return Err(StreamError::Refused(
            "tls:// needs TLS, and this tinywatcher was built without the `tls` feature".into(),
        ));
    }
    let mut s = s;
    conn.connected(&format!("{host}:{port}"));
    pump(&mut s, conn, spec.idle_timeout, sink)
}

/// `host:port`, `tcp://host:port`, `tls://host:port` (a trailing `/` allowed;
/// IPv6 as `[::1]:514`) -> (tls, host, port).
pub fn parse(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = match url.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("tcp") => (false, r),
        Some((s, r)) if s.eq_ignore_ascii_case("tls") => (true, r),
        Some((s, _)) => {
            return Err(format!(
                "{s}:// is not a tcp stream (expected host:port, tcp:// or tls://)"
            ))
        }
        None => (false, url),
    };
    let hostport = rest.trim_end_matches('/');
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{hostport:?} has no port (expected host:port)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{hostport:?}: {port:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!("{hostport:?} has no host"));
    }
    Ok((tls, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse("127.0.0.1:514").unwrap(),
            (false, "127.0.0.1".into(), 514)
        );
        assert_eq!(
            parse("tcp://logs:5000/").unwrap(),
            (false, "logs".into(), 5000)
        );
        assert_eq!(
            parse("TLS://[::1]:6514").unwrap(),
            (true, "[::1]".into(), 6514)
        );
        assert!(parse("logs").is_err());
        assert!(parse("logs:http").is_err());
        assert!(parse("http://x:1").is_err());
    }
}
