//! Built-in peers for a run: the SIP proxy's next hop (a UAS), the DNS plane's upstream and the
//! HTTP proxy's origin. Each is tiny and answers everything, so that whatever the gateway lets
//! through comes back as a recognisable "allowed" answer, and each reflects the gateway's tag
//! header back to the caller's side, where the oracle reads it.
//!
//! - UAS: 200 to INVITE (with a To-tag and a Contact, the INVITE's `X-Fraud-*`/tag headers
//!   copied into the 200), 200 to BYE, CANCEL and OPTIONS, nothing to ACK (RFC 3261 §17.2.1).
//! - DNS: [`crate::dns::answer_query`] over UDP and TCP.
//! - HTTP: 200 `origin ok` with `X-Sim-Origin: 1`, and `X-Sim-Saw-Tag: <value>` when the request
//!   carried the tag header.

use crate::sip::{Message, StartLine};
use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The UAS's answer to one request, `None` for ACK and for what it cannot read.
pub fn uas_answer(req: &[u8], local: SocketAddr, reflect: &[String]) -> Option<Vec<u8>> {
    let m = Message::parse(req).ok()?;
    let StartLine::Request { method, .. } = m.start else {
        return None;
    };
    if method == "ACK" {
        return None;
    }
    let mut out = String::with_capacity(512);
    out.push_str("SIP/2.0 200 OK\r\n");
    // RFC 3261 §8.2.6.2: Via (all, in order), From, Call-ID and CSeq copied; To gets our tag.
    for v in m.all("Via") {
        out.push_str("Via: ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    for name in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = m.header(name) {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    let to = m.header("To")?;
    out.push_str("To: ");
    out.push_str(to);
    if !to.contains(";tag=") {
        out.push_str(";tag=uas1");
    }
    out.push_str("\r\n");
    if method == "INVITE" {
        out.push_str(&format!("Contact: <sip:uas@{local}>\r\n"));
        for (name, v) in &m.headers {
            if reflect.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// Starts the UAS on `addr` (UDP); returns the bound address.
pub async fn start_uas(
    addr: SocketAddr,
    reflect: Vec<String>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let sock = UdpSocket::bind(addr).await?;
    let local = sock.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(a) = buf.get(..n).and_then(|b| uas_answer(b, local, &reflect)) {
                let _ = sock.send_to(&a, from).await;
            }
        }
    });
    Ok((local, task))
}

/// A UDP socket and a TCP listener on the same port. With port 0 the kernel picks the UDP port,
/// which another process may already hold for TCP (an ephemeral port of some connection): then
/// another UDP port is tried, up to 64 times. A port that was asked for is bound once.
async fn bind_udp_and_tcp(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let tries = if addr.port() == 0 { 64 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let sock = UdpSocket::bind(addr).await?;
        let local = sock.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((sock, tcp, local)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Starts the DNS upstream on `addr`, UDP and TCP on the same port.
pub async fn start_dns(addr: SocketAddr) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let (sock, tcp, local) = bind_udp_and_tcp(addr).await?;
    let task = tokio::spawn(async move {
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    // RFC 7766 §8: two-byte length, then the message; several per connection.
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Some(a) = crate::dns::answer_query(&q) else {
                            return;
                        };
                        let mut framed = Vec::with_capacity(a.len() + 2);
                        framed.extend_from_slice(&(a.len() as u16).to_be_bytes());
                        framed.extend_from_slice(&a);
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(a) = buf.get(..n).and_then(crate::dns::answer_query) {
                let _ = sock.send_to(&a, from).await;
            }
        }
    });
    Ok((local, task))
}

/// Starts the HTTP origin on `addr`; `tag_header` is reflected as `X-Sim-Saw-Tag`.
pub async fn start_http(
    addr: SocketAddr,
    tag_header: String,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let tag = Arc::new(tag_header);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tag = Arc::clone(&tag);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tag = Arc::clone(&tag);
                        async move {
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(b"origin ok\n")));
                            let h = resp.headers_mut();
                            h.insert("x-sim-origin", hyper::header::HeaderValue::from_static("1"));
                            h.insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("text/plain"),
                            );
                            if let Some(v) = req.headers().get(tag.as_str()) {
                                h.insert("x-sim-saw-tag", v.clone());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

/// The three stubs on their own runtime, for tests and tools that are not async: they run
/// until this is dropped.
#[derive(Debug)]
pub struct Stubs {
    pub uas: SocketAddr,
    pub dns: SocketAddr,
    pub http: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl Stubs {
    /// Binds all three on 127.0.0.1 port 0. `sip_reflect`: SIP headers the UAS copies into its
    /// 200; `http_tag`: the HTTP tag header the origin reflects.
    pub fn start_local(sip_reflect: Vec<String>, http_tag: String) -> io::Result<Stubs> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (uas, dns, http) = runtime.block_on(async {
            let (uas, _) = start_uas(any, sip_reflect).await?;
            let (dns, _) = start_dns(any).await?;
            let (http, _) = start_http(any, http_tag).await?;
            Ok::<_, io::Error>((uas, dns, http))
        })?;
        Ok(Stubs {
            uas,
            dns,
            http,
            runtime,
        })
    }

    /// The runtime the stubs run on (to spawn more beside them).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sip::Invite;

    /// UDP and TCP on one port: with port 0 a port free for both is found; a port asked for
    /// whose TCP side is taken is an error, not a silent move to another port.
    #[tokio::test]
    async fn dns_binds_udp_and_tcp_on_one_port() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (udp, tcp, local) = bind_udp_and_tcp(any).await.unwrap();
        assert_eq!(udp.local_addr().unwrap(), local);
        assert_eq!(tcp.local_addr().unwrap(), local);
        let taken = std::net::TcpListener::bind(any).unwrap();
        let port = taken.local_addr().unwrap();
        // The UDP side of that port is normally free; when it is not, there is nothing to test.
        if std::net::UdpSocket::bind(port).is_ok() {
            let e = bind_udp_and_tcp(port).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        }
    }

    #[test]
    fn the_uas_answers_invite_with_a_tag_and_reflects_tag_headers() {
        let inv = Invite {
            caller: "+8613800138000",
            callee: "+8613912345678",
            target: "127.0.0.1:5060",
            local: "127.0.0.1:40000",
            call_id: "c1@sim",
            from_tag: "f1",
            branch: "z9hG4bK1",
        };
        let mut bytes = inv.encode();
        // What a proxy adds: its Via on top and a tag header.
        let text = String::from_utf8(bytes.clone()).unwrap().replacen(
            "Via:",
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgw\r\nX-Fraud-Category: loans\r\nVia:",
            1,
        );
        bytes = text.into_bytes();
        let local: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let a = uas_answer(&bytes, local, &["X-Fraud-Category".into()]).unwrap();
        let m = Message::parse(&a).unwrap();
        assert_eq!(m.code(), Some(200));
        assert_eq!(m.all("Via").count(), 2);
        assert!(m.header("Via").unwrap().contains("z9hG4bKgw"));
        assert!(m.header("To").unwrap().ends_with(";tag=uas1"));
        assert_eq!(m.header("X-Fraud-Category"), Some("loans"));
        assert_eq!(m.header("Contact"), Some("<sip:uas@127.0.0.1:5070>"));
        let ack = inv.ack("<sip:x@y>;tag=uas1", None, "z9hG4bK2");
        assert!(uas_answer(&ack, local, &[]).is_none());
        let bye = inv.bye("<sip:x@y>;tag=uas1", None, "z9hG4bK3");
        let a2 = uas_answer(&bye, local, &[]).unwrap();
        let m2 = Message::parse(&a2).unwrap();
        assert_eq!(m2.cseq_method(), Some("BYE"));
        assert!(uas_answer(b"garbage", local, &[]).is_none());
    }
}
