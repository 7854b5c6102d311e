//! Where a slice's activity waits between being read and being released: in memory up to a
//! limit, then in an unnamed temporary file, so a slice of any size (and many slices waiting
//! for an older one) costs bounded memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One slice's activity objects, one JSON object per line, in the order read.
#[derive(Debug)]
pub(crate) struct Spool {
    memory: Vec<u8>,
    file: Option<BufWriter<File>>,
    limit: usize,
    dir: PathBuf,
    lines: u64,
}

/// Names spool files apart within this process.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// An empty spool that keeps up to `limit` bytes in memory, then spills into a file in
    /// `dir`.
    pub(crate) fn new(limit: usize, dir: &Path) -> Spool {
        Spool {
            memory: Vec::new(),
            file: None,
            limit,
            dir: dir.to_owned(),
            lines: 0,
        }
    }

    /// Appends one activity's JSON object as a line. An object written over several lines
    /// (JSON allows whitespace between tokens; strings cannot hold a raw newline) is
    /// re-written compactly.
    ///
    /// # Errors
    /// I/O errors of the spill file; invalid JSON when `object` spans lines and is not JSON.
    pub(crate) fn push(&mut self, object: &str) -> io::Result<()> {
        let compact;
        let line = if object.contains(['\n', '\r']) {
            let value: serde_json::Value = serde_json::from_str(object)?;
            compact = value.to_string();
            compact.as_str()
        } else {
            object
        };
        self.lines += 1;
        if self.file.is_none() && self.memory.len() + line.len() + 1 > self.limit {
            self.spill()?;
        }
        match &mut self.file {
            Some(file) => {
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")
            }
            None => {
                self.memory.extend_from_slice(line.as_bytes());
                self.memory.push(b'\n');
                Ok(())
            }
        }
    }

    /// Moves what is in memory into a new file that has no name: on Unix it is removed as
    /// soon as it is open, so nothing is left behind, not even after `kill -9` (where a
    /// platform refuses to remove an open file, the file stays in `dir`).
    fn spill(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!(
            ".tidemark-track-{}-{}.spool",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let _ = std::fs::remove_file(&path);
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&self.memory)?;
        self.memory = Vec::new();
        self.file = Some(file);
        Ok(())
    }

    /// Activities pushed.
    pub(crate) fn len(&self) -> u64 {
        self.lines
    }

    /// Whether the spool left memory.
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// The lines pushed, from the first.
    ///
    /// # Errors
    /// I/O errors of the spill file.
    pub(crate) fn into_reader(self) -> io::Result<Box<dyn BufRead + Send>> {
        match self.file {
            None => Ok(Box::new(io::Cursor::new(self.memory))),
            Some(file) => {
                let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(spool: Spool) -> Vec<String> {
        spool
            .into_reader()
            .expect("reader")
            .lines()
            .collect::<io::Result<_>>()
            .expect("lines")
    }

    #[test]
    fn test_a_spool_gives_back_its_lines_in_order_in_memory_and_spilled() {
        let dir = tempfile::tempdir().expect("dir");
        for limit in [1 << 20, 64] {
            let mut spool = Spool::new(limit, dir.path());
            let objects: Vec<String> = (0..100).map(|i| format!("{{\"id\":\"a{i}\"}}")).collect();
            for object in &objects {
                spool.push(object).expect("push");
            }
            assert_eq!(spool.len(), 100);
            assert_eq!(spool.spilled(), limit == 64);
            assert_eq!(read_back(spool), objects);
        }
        // Spilled files have no name: the directory stays empty.
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn test_an_object_written_over_several_lines_becomes_one_line() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::new(1024, dir.path());
        spool
            .push("{\n  \"id\": \"a\",\r\n  \"text\": \"x\\ny\"\n}")
            .expect("push");
        assert_eq!(read_back(spool), [r#"{"id":"a","text":"x\ny"}"#]);
        let mut spool = Spool::new(1024, dir.path());
        assert!(spool.push("{\n").is_err(), "not JSON");
    }
}
