//! Query parsing (RFC 1035 §4.1, RFC 9619, RFC 6891) and the FORMERR / NOTIMP / BADVERS
//! answers to queries that cannot be served.

use std::ops::Range;

use super::wire::{
    self, label_kind, put_u16, put_u32, read_rr, u16_at, LabelKind, FLAG_CD, FLAG_QR, FLAG_RA,
    FLAG_RD, HEADER_LEN, MAX_NAME_WIRE, TYPE_OPT,
};
use super::DnsError;

/// The EDNS(0) parameters of a query's OPT record (RFC 6891 §6.1.2, §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size as sent (the CLASS field). Values below 512 are treated as
    /// 512 by [`Query::response_limit`] (RFC 6891 §6.2.3).
    pub udp_size: u16,
    /// RFC 3225 §3: DNSSEC OK; echoed in every synthesized response.
    pub do_bit: bool,
    /// EDNS version; always 0 in a parsed [`Query`] (anything else is [`DnsError::BadVersion`]).
    pub version: u8,
}

/// One parsed query. It borrows the packet; the name stays in wire form until
/// [`Query::name_into`] writes it out.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pkt: &'a [u8],
    /// Offset just after the question name's root octet.
    qname_end: usize,
    qtype: u16,
    qclass: u16,
    edns: Option<Edns>,
    /// The OPT record's RDATA (its options), empty without EDNS.
    opt_rdata: (usize, usize),
    hostname: bool,
}

impl<'a> Query<'a> {
    /// Message ID (RFC 1035 §4.1.1), echoed in every answer.
    pub fn id(&self) -> u16 {
        u16_at(self.pkt, 0).unwrap_or(0)
    }

    fn flags(&self) -> u16 {
        u16_at(self.pkt, 2).unwrap_or(0)
    }

    /// Recursion Desired (RFC 1035 §4.1.1), echoed.
    pub fn rd(&self) -> bool {
        self.flags() & FLAG_RD != 0
    }

    /// Checking Disabled (RFC 4035 §3.2.2), echoed and part of the cache key.
    pub fn cd(&self) -> bool {
        self.flags() & FLAG_CD != 0
    }

    pub fn qtype(&self) -> u16 {
        self.qtype
    }

    pub fn qclass(&self) -> u16 {
        self.qclass
    }

    /// The OPT record's parameters, `None` when the query had no OPT (then no answer may carry
    /// one, RFC 6891 §7).
    pub fn edns(&self) -> Option<Edns> {
        self.edns
    }

    /// The OPT record's options (RFC 6891 §6.1.2 `{code, length, data}` triples, already checked
    /// to be well formed), e.g. for ECS or COOKIE; empty without EDNS.
    pub fn edns_options(&self) -> &'a [u8] {
        self.pkt
            .get(self.opt_rdata.0..self.opt_rdata.1)
            .unwrap_or(&[])
    }

    /// Byte range of the question (name, QTYPE, QCLASS) in the packet: always starts at 12.
    pub fn question_range(&self) -> Range<usize> {
        HEADER_LEN..self.qname_end + 4
    }

    /// The question as received, case preserved (RFC 4343 §4.1): what answers echo.
    pub fn question(&self) -> &'a [u8] {
        self.pkt.get(self.question_range()).unwrap_or(&[])
    }

    /// The question name in wire form (uncompressed, ending with the root octet).
    pub fn qname_wire(&self) -> &'a [u8] {
        self.pkt.get(HEADER_LEN..self.qname_end).unwrap_or(&[0])
    }

    /// The whole packet this query borrows.
    pub fn packet(&self) -> &'a [u8] {
        self.pkt
    }

    /// True when every label holds only letters, digits, `-` and `_` (LDH plus the underscore
    /// of SRV/DKIM-style names, RFC 8552): a name the engine's normal form can express exactly.
    /// False names still come out of [`Query::name_into`] as they are.
    pub fn name_is_hostname(&self) -> bool {
        self.hostname
    }

    /// Write the name as lowercase dotted ASCII without trailing dot (the root is empty) into
    /// `out` and return it — the form `Engine::check_domain` takes. At most 253 octets.
    ///
    /// RFC 4343: only `A`-`Z` are folded. Every other octet comes out **as is**, unescaped: a
    /// non-ASCII octet, a space or a `.` inside a label stay what they are, and
    /// [`Query::name_is_hostname`] is false. An in-label `.` makes the name look like more
    /// labels than it has; that can only make a suffix rule match more names, never fewer, so
    /// it cannot be used to slip past a rule (the engine may refuse such names outright).
    pub fn name_into<'o>(&self, out: &'o mut [u8; 256]) -> &'o [u8] {
        let mut n = 0;
        for label in wire::Labels::new(self.pkt, HEADER_LEN) {
            if n > 0 {
                out[n] = b'.';
                n += 1;
            }
            // The name was checked at parse time to fit in 255 wire octets (≤ 253 dotted).
            let Some(dst) = out.get_mut(n..n + label.len()) else {
                break;
            };
            for (d, s) in dst.iter_mut().zip(label) {
                *d = s.to_ascii_lowercase();
            }
            n += label.len();
        }
        &out[..n]
    }

    /// The largest response the client accepts: 512 octets without EDNS (RFC 1035 §4.2.1),
    /// else the smaller of its advertised size and `ours`, never below 512 (RFC 6891 §6.2.3,
    /// §6.2.5); 65535 on a stream transport (TCP, DoT, DoQ: RFC 7766 §8, RFC 9250 §4.2).
    pub fn response_limit(&self, ours: u16, stream: bool) -> usize {
        if stream {
            return usize::from(u16::MAX);
        }
        match self.edns {
            None => 512,
            Some(e) => usize::from(e.udp_size.min(ours).max(512)),
        }
    }
}

fn is_hostname_octet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Parse the question name at offset 12: labels only (see [`parse_query`] on pointers).
/// Returns the offset after the root octet and whether the name is LDH/underscore only.
fn question_name(pkt: &[u8]) -> Result<(usize, bool), DnsError> {
    let mut off = HEADER_LEN;
    let mut hostname = true;
    loop {
        let Some(&b) = pkt.get(off) else {
            return Err(DnsError::Truncated {
                part: "question name",
            });
        };
        match label_kind(b) {
            LabelKind::Normal(0) => return Ok((off + 1, hostname)),
            LabelKind::Normal(n) => {
                let label = pkt.get(off + 1..off + 1 + n).ok_or(DnsError::Truncated {
                    part: "question name",
                })?;
                hostname &= label.iter().all(|&c| is_hostname_octet(c));
                off += 1 + n;
                // RFC 1035 §2.3.4: 255 octets including the root octet still to come.
                if off - HEADER_LEN >= MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong);
                }
            }
            LabelKind::Pointer => return Err(DnsError::CompressedQuestion),
            LabelKind::Unknown => return Err(DnsError::BadLabel { octet: b }),
        }
    }
}

/// The question: returns (offset after the root octet, qtype, qclass, hostname).
fn question(pkt: &[u8]) -> Result<(usize, u16, u16, bool), DnsError> {
    let (end, hostname) = question_name(pkt)?;
    match (u16_at(pkt, end), u16_at(pkt, end + 2)) {
        (Some(t), Some(c)) => Ok((end, t, c, hostname)),
        _ => Err(DnsError::Truncated {
            part: "question type and class",
        }),
    }
}

/// What the additional section said about EDNS.
struct Opt {
    edns: Edns,
    rdata: (usize, usize),
}

/// Skip the answer and authority records (a QUERY may carry some: an IXFR query has the
/// client's SOA in the authority section, RFC 1995 §3) and find the OPT record in the additional
/// section (RFC 6891 §6.1.1: anywhere there, at most once).
fn additional(pkt: &[u8], mut off: usize) -> Result<Option<Opt>, DnsError> {
    let counts = [
        (u16_at(pkt, 6).unwrap_or(0), "answer section"),
        (u16_at(pkt, 8).unwrap_or(0), "authority section"),
    ];
    for (n, part) in counts {
        for _ in 0..n {
            off = read_rr(pkt, off).ok_or(DnsError::Truncated { part })?.1;
        }
    }
    let mut found: Option<Opt> = None;
    for _ in 0..u16_at(pkt, 10).unwrap_or(0) {
        let (rr, next) = read_rr(pkt, off).ok_or(DnsError::Truncated {
            part: "additional section",
        })?;
        if rr.rtype == TYPE_OPT {
            if found.is_some() {
                return Err(DnsError::MultipleOpt);
            }
            // RFC 6891 §6.1.2: the owner MUST be the root.
            if pkt.get(rr.owner) != Some(&0) {
                return Err(DnsError::BadOpt {
                    reason: "owner name is not the root",
                });
            }
            let mut o = rr.rdata;
            while o < rr.rdata_end {
                let len = u16_at(pkt, o + 2).map(usize::from);
                match len {
                    Some(len) if o + 4 + len <= rr.rdata_end => o += 4 + len,
                    _ => {
                        return Err(DnsError::BadOpt {
                            reason: "an option overruns the record",
                        })
                    }
                }
            }
            found = Some(Opt {
                edns: Edns {
                    udp_size: rr.class,
                    do_bit: rr.ttl & wire::EDNS_DO != 0,
                    version: (rr.ttl >> 16) as u8,
                },
                rdata: (rr.rdata, rr.rdata_end),
            });
        }
        off = next;
    }
    Ok(found)
}

/// Parse one query: the RFC 1035 §4.1.1 header, exactly one question (RFC 9619 §3 for
/// OPCODE QUERY), the answer and authority records skipped, and the EDNS(0) OPT record of the
/// additional section (RFC 6891 §6.1).
///
/// Checked, in this order (the first failure is the error):
/// 1. at least 12 octets ([`DnsError::TooShort`], unanswerable);
/// 2. QR = 0 ([`DnsError::NotAQuery`], never answered: answering responses makes loops and
///    reflection);
/// 3. OPCODE = QUERY, else [`DnsError::NotImplemented`] → NOTIMP (RFC 1035 §4.1.1);
/// 4. QDCOUNT = 1, else FORMERR (RFC 9619 §3; a QDCOUNT 0 cookie-only query of RFC 7873 §5.4
///    is refused too);
/// 5. the question name: labels of 1-63 octets, 255 octets in all (RFC 1035 §2.3.4). A
///    compression pointer is refused ([`DnsError::CompressedQuestion`]): the question is the
///    first name in the message, so a pointer could only aim at the header or forward, which
///    RFC 1035 §4.1.4 ("a prior occurrence") excludes and no real encoder emits. Extended and
///    reserved label types (`01`, `10`) are refused (RFC 6891 §5);
/// 6. QTYPE and QCLASS present;
/// 7. answer, authority and additional records well formed; at most one OPT, owned by the
///    root, with well-formed options (RFC 6891 §6.1.1, §6.1.2);
/// 8. EDNS version 0, else [`DnsError::BadVersion`] → BADVERS (RFC 6891 §6.1.3).
///
/// Octets after the last counted record are ignored. No allocation.
pub fn parse_query(pkt: &[u8]) -> Result<Query<'_>, DnsError> {
    if pkt.len() < HEADER_LEN {
        return Err(DnsError::TooShort { len: pkt.len() });
    }
    let flags = u16_at(pkt, 2).unwrap_or(0);
    if flags & FLAG_QR != 0 {
        return Err(DnsError::NotAQuery);
    }
    let opcode = ((flags >> 11) & 0x0F) as u8;
    if opcode != 0 {
        return Err(DnsError::NotImplemented { opcode });
    }
    let qdcount = u16_at(pkt, 4).unwrap_or(0);
    if qdcount != 1 {
        return Err(DnsError::QuestionCount { count: qdcount });
    }
    let (qname_end, qtype, qclass, hostname) = question(pkt)?;
    let opt = additional(pkt, qname_end + 4)?;
    if let Some(o) = &opt {
        if o.edns.version != 0 {
            return Err(DnsError::BadVersion {
                version: o.edns.version,
            });
        }
    }
    Ok(Query {
        pkt,
        qname_end,
        qtype,
        qclass,
        edns: opt.as_ref().map(|o| o.edns),
        opt_rdata: opt.map_or((0, 0), |o| o.rdata),
        hostname,
    })
}

/// OPT payload size advertised in error responses, which have no [`super::SynthOpts`]: the
/// DNS Flag Day 2020 default, small enough to avoid IP fragmentation.
pub const ERROR_UDP_SIZE: u16 = 1232;

/// Write into `out` (replacing its contents) the answer to a query that `parse_query` refused
/// with `err`: FORMERR, NOTIMP or BADVERS as [`DnsError::rcode`] says. Returns false, with
/// `out` empty, when nothing may be sent: fewer than 12 octets, or QR = 1 (a response is never
/// answered), or an error with no rcode.
///
/// The answer echoes ID, OPCODE, RD and CD (RFC 1035 §4.1.1: ID and OPCODE are copied into the
/// response), sets QR and RA, echoes the question when QDCOUNT was 1 and it parsed (else
/// QDCOUNT = 0), and carries no records except an OPT (version 0, [`ERROR_UDP_SIZE`]) when the
/// error concerned EDNS (RFC 6891 §7: a FORMERR about the OPT record includes one; BADVERS needs
/// one for its upper rcode bits) or when a NOTIMP query carried a valid one (RFC 6891 §6.1.1).
/// Always under 512 octets.
pub fn error_response(pkt: &[u8], err: DnsError, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(rcode) = err.rcode() else {
        return false;
    };
    let Some(flags) = u16_at(pkt, 2) else {
        return false;
    };
    if pkt.len() < HEADER_LEN || flags & FLAG_QR != 0 {
        return false;
    }
    // QR, OPCODE as received, RD and CD echoed, RA set, AA/TC/AD clear, low 4 rcode bits.
    let opcode_bits = flags & 0x7800;
    let out_flags =
        FLAG_QR | opcode_bits | (flags & (FLAG_RD | FLAG_CD)) | FLAG_RA | u16::from(rcode & 0x0F);
    out.extend_from_slice(&pkt[..2]);
    put_u16(out, out_flags);
    let q = if u16_at(pkt, 4) == Some(1) {
        question(pkt).ok()
    } else {
        None
    };
    let edns_err = matches!(
        err,
        DnsError::MultipleOpt | DnsError::BadOpt { .. } | DnsError::BadVersion { .. }
    );
    let with_opt = edns_err
        || (matches!(err, DnsError::NotImplemented { .. })
            && q.is_some_and(|(end, ..)| matches!(additional(pkt, end + 4), Ok(Some(_)))));
    put_u16(out, u16::from(q.is_some()));
    put_u16(out, 0);
    put_u16(out, 0);
    put_u16(out, u16::from(with_opt));
    if let Some((end, ..)) = q {
        out.extend_from_slice(&pkt[HEADER_LEN..end + 4]);
    }
    if with_opt {
        // RFC 6891 §6.1.3: extended RCODE = upper 8 bits here, lower 4 in the header.
        put_opt(out, ERROR_UDP_SIZE, u32::from(rcode >> 4) << 24);
    }
    true
}

/// Append an OPT record: root owner, type 41, CLASS = payload size, TTL = extended rcode,
/// version, flags (RFC 6891 §6.1.2, §6.1.3), no options.
pub(super) fn put_opt(out: &mut Vec<u8>, udp_size: u16, ttl: u32) {
    out.push(0);
    put_u16(out, TYPE_OPT);
    put_u16(out, udp_size.max(512));
    put_u32(out, ttl);
    put_u16(out, 0);
}
