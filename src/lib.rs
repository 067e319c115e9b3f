//! kinspect — an intercepting HTTP(S) debugging proxy for the terminal that understands
//! Kinvey's error bodies.
//!
//! Data flow: [`proxy`] accepts clients, terminates TLS with leaves minted by [`ca`],
//! forwards to origins and tees bodies into [`flow::Flow`]s, which it publishes on the
//! [`events`] stream; the [`capture`] recorder stores each one and hands it to the viewers.

pub mod ca;
pub mod capture;
pub mod cli;
pub mod curl;
pub mod decode;
pub mod demo;
pub mod events;
pub mod filter;
pub mod flow;
pub mod har;
pub mod headless;
pub mod kinvey;
pub mod proxy;
pub mod redact;
pub mod replay;
pub mod setup;
pub mod tls;
pub mod tui;
pub mod websocket;
