//! A JSON-lines file, rotated by size: a batch counts as acknowledged once written and
//! `fsync`ed (and, after a rotation or the file's creation, its directory too).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::export::item::Item;

pub(crate) struct Jsonl {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// The open file and its size.
    file: Option<(File, u64)>,
    /// `PATH.lock`, locked (`flock`) for as long as this writer lives: two writers on
    /// one file (a back-fill beside the running exporter, two sinks naming one path)
    /// would cut each other's lines and rotate under each other.
    lock: Option<File>,
}

impl Jsonl {
    pub(crate) fn new(path: PathBuf, max_bytes: u64, keep: u32) -> Self {
        Jsonl {
            path,
            max_bytes,
            keep,
            file: None,
            lock: None,
        }
    }

    /// Takes `PATH.lock`, once.
    fn lock(&mut self) -> io::Result<()> {
        if self.lock.is_none() {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(PathBuf::from(&name))?;
            lock.try_lock().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{}: another writer (a running exporter or a back-fill) holds it",
                        PathBuf::from(&name).display()
                    ),
                )
            })?;
            self.lock = Some(lock);
        }
        Ok(())
    }

    /// Appends `items`, one line each, rotating when a line would take the file past
    /// `max_bytes`; returns once everything is on disk.
    pub(crate) fn write(&mut self, items: &[Item]) -> io::Result<()> {
        let result = self.write_all(items);
        if result.is_err() {
            // Reopened (and its torn tail cut) on the next attempt.
            self.file = None;
        }
        result
    }

    fn write_all(&mut self, items: &[Item]) -> io::Result<()> {
        for item in items {
            let len = item.line.len() as u64 + 1;
            let (_, size) = self.open()?;
            if *size > 0 && *size + len > self.max_bytes {
                self.rotate()?;
            }
            let (file, size) = self.open()?;
            let mut line = Vec::with_capacity(len as usize);
            line.extend_from_slice(item.line.as_bytes());
            line.push(b'\n');
            file.write_all(&line)?;
            *size += len;
        }
        if let Some((file, _)) = &mut self.file {
            file.sync_data()?;
        }
        Ok(())
    }

    /// The open file, opening it if needed. A last line without its newline is the
    /// torn write of a batch that was never acknowledged (a crash mid-write): it is cut
    /// off, so every line in the file is whole.
    fn open(&mut self) -> io::Result<&mut (File, u64)> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.lock()?;
            let created = !self.path.exists();
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)?;
            let whole = whole_lines(&mut file)?;
            if whole < file.metadata()?.len() {
                file.set_len(whole)?;
                file.sync_data()?;
            }
            if created {
                sync_dir(&self.path)?;
            }
            self.file = Some((file, whole));
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// `path.(keep-1)` -> `path.keep`, ..., `path` -> `path.1`, then a new `path`.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some((file, _)) = self.file.take() {
            file.sync_data()?;
        }
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        sync_dir(&self.path)
    }
}

/// `path.n`.
pub(crate) fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The length of the file up to and including its last newline.
fn whole_lines(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::item::{Item, ItemKind};

    fn item(seq: u64, pad: usize) -> Item {
        Item {
            kind: ItemKind::Block,
            seq,
            time_ms: 0,
            line: format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(pad)),
        }
    }

    fn seqs(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_second_writer_on_one_file_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut first = Jsonl::new(path.clone(), 1 << 20, 2);
        first.write(&[item(1, 10)]).unwrap();
        let mut second = Jsonl::new(path.clone(), 1 << 20, 2);
        let e = second.write(&[item(2, 10)]).unwrap_err();
        assert!(e.to_string().contains("another writer"), "{e}");
        first.write(&[item(2, 10)]).unwrap();
        drop(first);
        second.write(&[item(3, 10)]).unwrap();
        assert_eq!(seqs(&path), [1, 2, 3]);
    }

    #[test]
    fn jsonl_rotates_by_size_keeps_n_files_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/audit.jsonl");
        let mut sink = Jsonl::new(path.clone(), 4096, 2);
        // ~1 KiB lines: four fit in a file.
        for batch in (1..=20u64).collect::<Vec<_>>().chunks(3) {
            let items: Vec<Item> = batch.iter().map(|&s| item(s, 1000)).collect();
            sink.write(&items).unwrap();
        }
        let (cur, one, two) = (
            seqs(&path),
            seqs(&numbered(&path, 1)),
            seqs(&numbered(&path, 2)),
        );
        assert!(!numbered(&path, 3).exists(), "only `keep` rotated files");
        assert_eq!(cur, [17, 18, 19, 20]);
        assert_eq!(one, [13, 14, 15, 16]);
        assert_eq!(two, [9, 10, 11, 12]);
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert!(
                std::fs::metadata(&p).unwrap().len() <= 4096,
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"seq\":1}\n{\"seq\":2,\"pa").unwrap();
        let mut sink = Jsonl::new(path.clone(), 1 << 20, 3);
        sink.write(&[item(2, 1)]).unwrap();
        assert_eq!(seqs(&path), [1, 2]);
    }
}
