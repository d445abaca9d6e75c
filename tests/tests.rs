//! One integration-test binary: each module runs the real `tinywatcher` binary
//! against real files and loopback servers.

mod fake;
mod util;

mod cli;
mod logrotate;
mod oneshot;
mod rules;
mod file_follow;
mod listen;
mod shutdown;
mod state;
mod streams;
mod webhook;
mod websocket;
#[cfg(feature = "tls")]
mod tls;
