//! The file sink: one JSON object per line (JSON Lines), rotated by size.
//!
//! Rotation renames, newest first: `PATH.keep-1 → PATH.keep`, …, `PATH → PATH.1`, then starts an
//! empty `PATH` (the scheme logrotate and most shippers expect). Lines are never split, so a
//! file exceeds `max_bytes` only when it holds a single line longer than that.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::config::FileSinkConfig;

/// The file sink.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<fs::File>,
    size: u64,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    pub fn new(cfg: &FileSinkConfig) -> FileSink {
        FileSink {
            path: cfg.path.clone(),
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            file: None,
            size: 0,
        }
    }

    fn open(&mut self) -> io::Result<&mut fs::File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("event file not open"))
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends the lines, rotating between two lines when the next would cross `max_bytes`.
    /// An error means the batch cannot be trusted to be on disk (the caller spools it, which
    /// may duplicate part of it: at least once).
    pub fn write(&mut self, lines: &[Bytes]) -> io::Result<()> {
        let r = self.write_all(lines);
        if r.is_err() {
            // Reopen next time: the file may have been removed or the disk freed.
            self.file = None;
        }
        r
    }

    fn write_all(&mut self, lines: &[Bytes]) -> io::Result<()> {
        self.open()?;
        let mut buf = Vec::new();
        for l in lines {
            let fill = self.size + buf.len() as u64;
            if fill > 0 && fill + l.len() as u64 + 1 > self.max_bytes {
                self.flush_buf(&mut buf)?;
                self.rotate()?;
                self.open()?;
            }
            buf.extend_from_slice(l);
            buf.push(b'\n');
        }
        self.flush_buf(&mut buf)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let f = self.open()?;
        f.write_all(buf)?;
        f.flush()?;
        self.size += buf.len() as u64;
        buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let d = std::env::temp_dir().join(format!("dragnet-filesink-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let path = d.join("events.jsonl");
        let mut s = FileSink::new(&FileSinkConfig {
            enabled: true,
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        });
        // Each line 20 bytes with its \n, written twice per batch.
        for i in 0..10 {
            let l = Bytes::from(format!("{{\"n\":\"{i:011}\"}}"));
            assert_eq!(l.len() + 1, 20);
            s.write(&[l.clone(), l]).unwrap();
        }
        let read = |p: &Path| fs::read_to_string(p).unwrap();
        // Lines 0 0 1 1 … 9 9; five (100 bytes) fill a file: [0 0 1 1 2] [2 3 3 4 4]
        // [5 5 6 6 7] [7 8 8 9 9]; the first is gone (keep = 2).
        assert_eq!(read(&path).lines().count(), 5);
        assert!(read(&path).contains("00000000009"));
        assert!(read(&rotated(&path, 1)).starts_with("{\"n\":\"00000000005\"}"));
        assert!(read(&rotated(&path, 2)).starts_with("{\"n\":\"00000000002\"}"));
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 100);
            for l in read(&p).lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
    }
}
