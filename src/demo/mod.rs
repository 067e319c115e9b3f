//! The demo: an embedded Kinvey backend simulator and a scripted app that drives
//! realistic traffic through the proxy. The simulator is also the tests' fixture.

pub mod script;
pub mod simulator;
