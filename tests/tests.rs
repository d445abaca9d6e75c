//! One integration-test binary: each module runs the real `tinywatcher` binary
//! against real files and loopback servers.

mod fake;
mod util;

mod cli;
mod file_follow;
mod listen;
mod logrotate;
mod oneshot;
mod rules;
mod shutdown;
mod state;
mod streams;
#[cfg(feature = "tls")]
mod tls;
mod webhook;
mod websocket;
