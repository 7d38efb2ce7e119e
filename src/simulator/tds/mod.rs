//! The TDS 7.4 protocol layer of the simulator: packet framing, the login
//! handshake, request parsing and token encoding. Nothing here knows about
//! databases or statements; the session layer above turns requests into replies.

pub mod login;
pub mod packet;
pub mod request;
pub mod token;
pub mod types;
