//! A bounded on-disk queue of event lines, one per sink, for while the sink is down.
//!
//! Layout: `DIR/<20-digit segment number>.spool`, each a run of JSON lines ending in `\n`.
//! Lines are appended to the newest segment and read from the oldest, so they come out in the
//! order they went in. When the spool would exceed its bound, the oldest segment is deleted and
//! its lines are counted as dropped (`reason="spool_full"`): recent hits matter more to a
//! call-back team than old ones. Segments are at most an eighth of the bound (and 4 MiB), so a
//! drop loses a bounded slice, and the head segment can be held in memory while it drains.
//!
//! Crash safety is at least once: how far the head segment was delivered lives in memory only,
//! so after a restart its delivered lines are sent again (consumers deduplicate on `id`). A
//! line cut short by a crash (no `\n`) is ignored, and appends after a restart go to a fresh
//! segment so they never extend a cut line. The I/O is blocking `std::fs`: small appends off
//! the data path, in the sink's own task.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

const SUFFIX: &str = ".spool";

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    lines: u64,
}

/// One sink's spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_max: u64,
    segments: VecDeque<Segment>,
    /// Lines of the head segment already delivered.
    head_done: u64,
    /// The head segment's complete lines, read once when draining starts.
    head_cache: Option<(u64, Vec<Bytes>)>,
    /// True once a segment was created by this process: appends may extend the newest one.
    tail_ours: bool,
    total: u64,
    dropped: Counter,
    gauge: Gauge,
}

impl Spool {
    /// Opens (creating) `dir`, taking over segments a previous run left.
    pub fn open(dir: &Path, max_bytes: u64, dropped: Counter, gauge: Gauge) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let data = fs::read(entry.path())?;
            let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
            segments.push(Segment {
                id,
                bytes: data.len() as u64,
                lines,
            });
        }
        segments.sort_by_key(|s| s.id);
        let total = segments.iter().map(|s| s.bytes).sum();
        let s = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_max: (max_bytes / 8).clamp(1, 4 << 20),
            segments: segments.into(),
            head_done: 0,
            head_cache: None,
            tail_ours: false,
            total,
            dropped,
            gauge,
        };
        s.publish();
        Ok(s)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }

    fn publish(&self) {
        self.gauge
            .set(i64::try_from(self.total).unwrap_or(i64::MAX));
    }

    /// True if no line waits.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().map(|s| s.lines).sum::<u64>() <= self.head_done
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Appends lines (without their `\n`), then drops the oldest segments beyond the bound.
    pub fn append(&mut self, lines: &[Bytes]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let need_new = !self.tail_ours
            || self
                .segments
                .back()
                .is_none_or(|s| s.bytes >= self.segment_max);
        if need_new {
            let id = self.segments.back().map_or(1, |s| s.id + 1);
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                lines: 0,
            });
            self.tail_ours = true;
        }
        let Some(tail) = self.segments.back_mut() else {
            return Ok(());
        };
        let id = tail.id;
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l);
            buf.push(b'\n');
        }
        let path = self.dir.join(format!("{id:020}{SUFFIX}"));
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&buf)?;
        f.flush()?;
        tail.bytes += buf.len() as u64;
        tail.lines += lines.len() as u64;
        self.total += buf.len() as u64;
        if let Some((cid, cache)) = &mut self.head_cache {
            if *cid == id {
                cache.extend(lines.iter().cloned());
            }
        }
        while self.total > self.max_bytes && self.segments.len() > 1 {
            self.drop_head()?;
        }
        self.publish();
        Ok(())
    }

    fn drop_head(&mut self) -> io::Result<()> {
        if let Some(s) = self.segments.pop_front() {
            self.dropped.inc_by(s.lines.saturating_sub(self.head_done));
            self.total = self.total.saturating_sub(s.bytes);
            self.head_done = 0;
            if self.head_cache.as_ref().is_some_and(|(id, _)| *id == s.id) {
                self.head_cache = None;
            }
            match fs::remove_file(self.path(s.id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Up to `n` of the oldest lines, without removing them (see [`Spool::consume`]).
    pub fn peek(&mut self, n: usize) -> io::Result<Vec<Bytes>> {
        loop {
            let Some(head) = self.segments.front() else {
                return Ok(Vec::new());
            };
            if self.head_done >= head.lines {
                // Fully delivered (or empty): gone, unless it is the segment appends go to.
                if self.segments.len() == 1 {
                    return Ok(Vec::new());
                }
                self.head_done = 0;
                self.drop_delivered_head()?;
                continue;
            }
            let id = head.id;
            if self.head_cache.as_ref().is_none_or(|(cid, _)| *cid != id) {
                let data = Bytes::from(fs::read(self.path(id))?);
                let mut lines = Vec::new();
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', &data) {
                    lines.push(data.slice(start..end));
                    start = end + 1;
                }
                self.head_cache = Some((id, lines));
            }
            let skip = usize::try_from(self.head_done).unwrap_or(usize::MAX);
            let out: Vec<Bytes> = self
                .head_cache
                .as_ref()
                .map(|(_, l)| l.iter().skip(skip).take(n).cloned().collect())
                .unwrap_or_default();
            if out.is_empty() {
                // The file holds fewer complete lines than counted (cut by a crash): skip it.
                if let Some(h) = self.segments.front_mut() {
                    h.lines = self.head_done;
                }
                if self.segments.len() == 1 {
                    return Ok(Vec::new());
                }
                continue;
            }
            return Ok(out);
        }
    }

    /// Marks the `n` oldest lines delivered; a fully delivered segment is deleted.
    pub fn consume(&mut self, n: usize) -> io::Result<()> {
        self.head_done += n as u64;
        let done = self
            .segments
            .front()
            .is_some_and(|h| self.head_done >= h.lines);
        if done {
            self.head_done = 0;
            self.drop_delivered_head()?;
        }
        self.publish();
        Ok(())
    }

    fn drop_delivered_head(&mut self) -> io::Result<()> {
        if let Some(s) = self.segments.pop_front() {
            self.total = self.total.saturating_sub(s.bytes);
            self.head_cache = None;
            if self.segments.is_empty() {
                // The next append starts a new segment.
                self.tail_ours = false;
            }
            match fs::remove_file(self.path(s.id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dragnet-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn lines(r: std::ops::Range<u32>) -> Vec<Bytes> {
        r.map(|i| Bytes::from(format!("{{\"n\":{i:05}}}")))
            .collect()
    }

    fn drain(s: &mut Spool) -> Vec<Bytes> {
        let mut out = Vec::new();
        loop {
            let b = s.peek(7).unwrap();
            if b.is_empty() {
                return out;
            }
            s.consume(b.len()).unwrap();
            out.extend(b);
        }
    }

    #[test]
    fn keeps_order_across_segments_and_reopen() {
        let d = dir("order");
        let mut s = Spool::open(&d, 1 << 20, Counter::default(), Gauge::default()).unwrap();
        assert!(s.is_empty());
        s.append(&lines(0..10)).unwrap();
        let first = s.peek(3).unwrap();
        s.consume(3).unwrap();
        assert_eq!(first, lines(0..3));
        s.append(&lines(10..20)).unwrap();
        drop(s);
        // Reopen: the delivered-offset is lost (at least once), the rest follows in order.
        let mut s = Spool::open(&d, 1 << 20, Counter::default(), Gauge::default()).unwrap();
        s.append(&lines(20..25)).unwrap();
        assert_eq!(drain(&mut s), lines(0..25));
        assert!(s.is_empty());
        s.append(&lines(25..26)).unwrap();
        assert_eq!(drain(&mut s), lines(25..26));
    }

    #[test]
    fn full_drops_the_oldest_and_counts() {
        let d = dir("full");
        let dropped = Counter::default();
        let gauge = Gauge::default();
        // 8 segments of 1 KiB; each line is 12 bytes.
        let mut s = Spool::open(&d, 8 << 10, dropped.clone(), gauge.clone()).unwrap();
        for i in 0..200 {
            s.append(&lines(i * 10..i * 10 + 10)).unwrap();
        }
        assert!(s.bytes() <= 8 << 10);
        assert!(dropped.get() > 0);
        assert_eq!(gauge.get() as u64, s.bytes());
        let rest = drain(&mut s);
        // What is left is the newest, in order, and nothing is both dropped and kept.
        assert_eq!(rest.len() as u64 + dropped.get(), 2000);
        assert_eq!(rest.last().unwrap(), &lines(1999..2000)[0]);
        assert!(rest.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(gauge.get(), 0);
    }
}
