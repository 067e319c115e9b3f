//! Sending a recorded request again through the running proxy, as a client would, so
//! that the new exchange is recorded and analysed like any other: the UI's `R` sends a
//! flow's request as it was, `e` lets the user change it first (Kinvey's FIX class:
//! change the request, then re-send).

mod client;
mod text;

pub use client::Replayer;
pub use text::ReplayRequest;
