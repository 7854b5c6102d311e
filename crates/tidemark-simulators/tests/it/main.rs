//! The simulators tested the way connectors use them: over real HTTP on a loopback port, with
//! an ordinary HTTP client.

mod helpers;
mod jive;
mod onna;
