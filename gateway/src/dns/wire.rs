//! RFC 1035 §4.1 wire primitives shared by the query parser, the synthesizer and the response
//! helpers: big-endian reads, name walking (with and without compression pointers), resource
//! record headers and a section walker. Every read is bounds-checked and returns `None` on a
//! short or malformed buffer; nothing here panics or allocates.

/// RFC 1035 §4.1.1: the fixed header is 12 octets.
pub const HEADER_LEN: usize = 12;
/// RFC 1035 §2.3.4: a name is at most 255 octets in wire form.
pub const MAX_NAME_WIRE: usize = 255;
/// RFC 1035 §2.3.4: a label is at most 63 octets.
pub const MAX_LABEL: usize = 63;

// RFC 1035 §3.2.2 / IANA "Resource Record (RR) TYPEs".
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
/// RFC 6891 §6.1.1: the EDNS(0) pseudo-RR.
pub const TYPE_OPT: u16 = 41;
/// RFC 1035 §3.2.3 QTYPE `*` (RFC 8482 calls it ANY).
pub const TYPE_ANY: u16 = 255;

/// RFC 1035 §3.2.4 class IN.
pub const CLASS_IN: u16 = 1;
/// RFC 1035 §3.2.5 QCLASS `*`.
pub const CLASS_ANY: u16 = 255;

// RFC 1035 §4.1.1 RCODE values, RFC 6891 §9 BADVERS (extended, 12 bits).
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;
pub const RCODE_BADVERS: u8 = 16;

// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD), as bits of the 16-bit flags word.
pub const FLAG_QR: u16 = 0x8000;
pub const FLAG_TC: u16 = 0x0200;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_RA: u16 = 0x0080;
pub const FLAG_CD: u16 = 0x0010;
/// RFC 3225 §3: DNSSEC OK, the top bit of the OPT TTL's low 16 bits.
pub const EDNS_DO: u32 = 0x0000_8000;

/// Header word at `off` (0 = ID, 2 = flags, 4 = QDCOUNT, 6 = ANCOUNT, 8 = NSCOUNT, 10 = ARCOUNT).
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Overwrite the 16-bit word at `off` if it is inside `b`.
pub fn set_u16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = off.checked_add(2).and_then(|end| b.get_mut(off..end)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// What a name's length octet says (RFC 1035 §4.1.4, RFC 6891 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// `00` prefix: a label of this many octets (0 = the root, end of name).
    Normal(usize),
    /// `11` prefix: a compression pointer; the low 6 bits and the next octet form the offset.
    Pointer,
    /// `01` (extended label, deprecated by RFC 6891 §5) or `10` (reserved).
    Unknown,
}

pub fn label_kind(len_octet: u8) -> LabelKind {
    match len_octet & 0xC0 {
        0x00 => LabelKind::Normal(usize::from(len_octet)),
        0xC0 => LabelKind::Pointer,
        _ => LabelKind::Unknown,
    }
}

/// Skip the name starting at `off` in place and return the offset just after it. A compression
/// pointer ends the name in place (RFC 1035 §4.1.4), so skipping never needs to follow one;
/// the pointer must still point backwards (to a prior occurrence) to be accepted. Labels of an
/// unknown type and names longer than 255 octets are refused.
pub fn skip_name(pkt: &[u8], mut off: usize) -> Option<usize> {
    let start = off;
    loop {
        let b = *pkt.get(off)?;
        match label_kind(b) {
            LabelKind::Normal(0) => return Some(off + 1),
            LabelKind::Normal(n) => {
                off = off.checked_add(1 + n)?;
                if off - start >= MAX_NAME_WIRE || off > pkt.len() {
                    return None;
                }
            }
            LabelKind::Pointer => {
                let target = usize::from(u16_at(pkt, off)? & 0x3FFF);
                return (target < off).then_some(off + 2);
            }
            LabelKind::Unknown => return None,
        }
    }
}

/// The labels of the name at `off`, following compression pointers. Termination is
/// guaranteed two ways: each pointer must point strictly before the pointer itself (RFC 1035
/// §4.1.4 "a prior occurrence"), and the assembled name may not exceed 255 octets or 128
/// pointer hops. A malformed name ends the iteration with `bad` set.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    pkt: &'a [u8],
    pos: usize,
    total: usize,
    hops: u8,
    pub done: bool,
    pub bad: bool,
}

impl<'a> Labels<'a> {
    pub fn new(pkt: &'a [u8], off: usize) -> Labels<'a> {
        Labels {
            pkt,
            pos: off,
            total: 0,
            hops: 0,
            done: false,
            bad: false,
        }
    }

    fn fail(&mut self) -> Option<&'a [u8]> {
        self.bad = true;
        self.done = true;
        None
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.done {
                return None;
            }
            let Some(&b) = self.pkt.get(self.pos) else {
                return self.fail();
            };
            match label_kind(b) {
                LabelKind::Normal(0) => {
                    self.done = true;
                    return None;
                }
                LabelKind::Normal(n) => {
                    self.total += 1 + n;
                    let label = self.pkt.get(self.pos + 1..self.pos + 1 + n);
                    match label {
                        Some(l) if self.total < MAX_NAME_WIRE => {
                            self.pos += 1 + n;
                            return Some(l);
                        }
                        _ => return self.fail(),
                    }
                }
                LabelKind::Pointer => {
                    let Some(w) = u16_at(self.pkt, self.pos) else {
                        return self.fail();
                    };
                    let target = usize::from(w & 0x3FFF);
                    self.hops += 1;
                    if target >= self.pos || self.hops > 128 {
                        return self.fail();
                    }
                    self.pos = target;
                }
                LabelKind::Unknown => return self.fail(),
            }
        }
    }
}

/// Encode a dotted ASCII name (`www.example.com`, an optional trailing dot, empty or `.` for
/// the root) into uncompressed wire form in `out` and return it. `None` when a label is empty
/// or longer than 63 octets, or the name exceeds 255 octets (RFC 1035 §2.3.4). Bytes are
/// copied as they are: no `\DDD` escapes are interpreted.
pub fn name_to_wire<'o>(dotted: &[u8], out: &'o mut [u8; MAX_NAME_WIRE]) -> Option<&'o [u8]> {
    let name = match dotted {
        b"." => &[][..],
        [rest @ .., b'.'] => rest,
        _ => dotted,
    };
    let mut len = 0;
    if !name.is_empty() {
        for label in name.split(|&c| c == b'.') {
            if label.is_empty() || label.len() > MAX_LABEL {
                return None;
            }
            let end = len + 1 + label.len();
            // Room for the root octet after this label.
            if end >= MAX_NAME_WIRE {
                return None;
            }
            out[len] = label.len() as u8;
            out[len + 1..end].copy_from_slice(label);
            len = end;
        }
    }
    out[len] = 0;
    Some(&out[..=len])
}

/// One resource record's fixed fields (RFC 1035 §4.1.3), as offsets into the packet.
#[derive(Debug, Clone, Copy)]
pub struct Rr {
    pub owner: usize,
    pub rtype: u16,
    pub class: u16,
    /// Offset of the 32-bit TTL field.
    pub ttl_off: usize,
    pub ttl: u32,
    pub rdata: usize,
    pub rdata_end: usize,
}

/// Read the resource record at `off`; returns it and the offset after it.
pub fn read_rr(pkt: &[u8], off: usize) -> Option<(Rr, usize)> {
    let fixed = skip_name(pkt, off)?;
    let rtype = u16_at(pkt, fixed)?;
    let class = u16_at(pkt, fixed + 2)?;
    let ttl = u32_at(pkt, fixed + 4)?;
    let rdlen = usize::from(u16_at(pkt, fixed + 8)?);
    let rdata = fixed + 10;
    let rdata_end = rdata + rdlen;
    if rdata_end > pkt.len() {
        return None;
    }
    let rr = Rr {
        owner: off,
        rtype,
        class,
        ttl_off: fixed + 4,
        ttl,
        rdata,
        rdata_end,
    };
    Some((rr, rdata_end))
}

/// Which section a record came from (RFC 1035 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// Walk every question and record of a message, calling `f` on each record. Returns the offset
/// after the last record, or `None` if the message is malformed anywhere (the callback may have
/// seen some records by then). Trailing octets after the counted records are tolerated.
pub fn walk(pkt: &[u8], mut f: impl FnMut(Section, &Rr)) -> Option<usize> {
    if pkt.len() < HEADER_LEN {
        return None;
    }
    let mut off = HEADER_LEN;
    for _ in 0..u16_at(pkt, 4)? {
        off = skip_name(pkt, off)?.checked_add(4)?;
        if off > pkt.len() {
            return None;
        }
    }
    for (count_off, section) in [
        (6, Section::Answer),
        (8, Section::Authority),
        (10, Section::Additional),
    ] {
        for _ in 0..u16_at(pkt, count_off)? {
            let (rr, next) = read_rr(pkt, off)?;
            f(section, &rr);
            off = next;
        }
    }
    Some(off)
}
