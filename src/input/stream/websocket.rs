//! WebSocket streams (ws://, wss://). Placeholder: the WebSocket input is
//! being written separately; this stub keeps the dispatch in `stream::mod`
//! compiling with the agreed signature.

use super::{Conn, StreamError};
use crate::config::StreamSpec;

/// Connect once, read messages until the connection ends, say why it ended.
pub fn run(spec: &StreamSpec, conn: &mut Conn) -> Result<(), StreamError> {
    let _ = conn;
    Err(StreamError::Refused(format!("stream {}: websocket streams are not supported yet", spec.name)))
}
