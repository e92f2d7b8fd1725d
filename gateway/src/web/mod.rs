//! The web plane: sans-IO readers of the names a client asks for — the TLS ClientHello's SNI
//! ([`tls`]) and, for QUIC, the SNI inside the client's encrypted Initial packets ([`quic`]) —
//! and the tokio shells that act on them: the transparent TLS port ([`sni`]), the QUIC relay
//! ([`quic_relay`]) and the HTTP/1.1 proxy ([`http`]: forward and transparent, CONNECT tunnels,
//! warning pages).

pub mod http;
pub mod quic;
pub mod quic_relay;
pub mod sni;
mod splice;
pub mod tls;
