//! The web plane: sans-IO readers of the names a client asks for — the TLS ClientHello's SNI
//! ([`tls`]) and, for QUIC, the SNI inside the client's encrypted Initial packets.

pub mod quic;
pub mod tls;
