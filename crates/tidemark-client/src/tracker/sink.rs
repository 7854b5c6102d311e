//! [`Sink`]: where the tracker delivers activity, and the sinks this crate provides.
//!
//! # Exactly once across a crash
//! The tracker saves its position only after [`Sink::finish_slice`] returned, together with
//! the *mark* that call returned (for a file: its length). After a crash it hands that mark
//! back to [`Sink::resume`], which discards whatever was accepted after it: the activity of
//! the slice that was being released when the process died, which the tracker then reads and
//! releases again. A sink that keeps no mark ([`NdjsonWriter`] on a pipe, [`ActivitySink`])
//! cannot discard; after a crash it may see that one slice's activity a second time.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tidemark_model::Activity;

use super::Slice;

/// Where the tracker delivers activity: in time order, one released slice at a time. The
/// tracker calls it from a blocking thread, so it may do blocking I/O.
pub trait Sink {
    /// Called once, before anything else, with the mark saved with the tracker's position
    /// (`None` on a fresh start). Discards what was accepted after `saved`, and returns the
    /// mark of the sink's end as it now is (saved as the starting mark on a fresh start).
    ///
    /// # Errors
    /// When the sink cannot go back to `saved` (its data was changed by someone else).
    fn resume(&mut self, saved: Option<u64>) -> io::Result<Option<u64>>;

    /// One activity of the slice being released: its JSON object as the server sent it, on
    /// one line, without the newline.
    ///
    /// # Errors
    /// Stops the tracker; its position stays before this slice.
    fn accept(&mut self, activity: &str) -> io::Result<()>;

    /// Every activity of `slice` has been accepted: make them durable. Returns the mark to save
    /// with the position after `slice`.
    ///
    /// # Errors
    /// Stops the tracker; its position stays before this slice.
    fn finish_slice(&mut self, slice: &Slice) -> io::Result<Option<u64>>;
}

/// NDJSON appended to a file: one activity per line. Its mark is the file's length, so after
/// a crash the file is cut back to the end of the last released slice (a half-written line
/// included) and nothing is repeated.
#[derive(Debug)]
pub struct NdjsonFile {
    file: BufWriter<File>,
    path: PathBuf,
    len: u64,
    sync: bool,
}

impl NdjsonFile {
    /// Opens (or creates) `path` for appending. With `sync`, every released slice is flushed
    /// to the disk before the position moves past it (survives power loss, not only a crash
    /// of the process).
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(path: &Path, sync: bool) -> io::Result<NdjsonFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(NdjsonFile {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_owned(),
            len,
            sync,
        })
    }

    /// Bytes in the file, what is still buffered included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is in the file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sink for NdjsonFile {
    fn resume(&mut self, saved: Option<u64>) -> io::Result<Option<u64>> {
        self.file.flush()?;
        let Some(saved) = saved else {
            return Ok(Some(self.len));
        };
        let actual = self.file.get_ref().metadata()?.len();
        if actual < saved {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} has {actual} bytes, fewer than the {saved} the tracker's state records: \
                     it was changed outside the tracker (use a new state file to start over)",
                    self.path.display()
                ),
            ));
        }
        if actual > saved {
            tracing::info!(
                path = %self.path.display(),
                discarded_bytes = actual - saved,
                "cutting back an interrupted slice"
            );
            self.file.get_ref().set_len(saved)?;
            self.file.get_ref().sync_data()?;
        }
        self.len = saved;
        Ok(Some(saved))
    }

    fn accept(&mut self, activity: &str) -> io::Result<()> {
        self.file.write_all(activity.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.len += activity.len() as u64 + 1;
        Ok(())
    }

    fn finish_slice(&mut self, _slice: &Slice) -> io::Result<Option<u64>> {
        self.file.flush()?;
        if self.sync {
            self.file.get_ref().sync_data()?;
        }
        Ok(Some(self.len))
    }
}

/// NDJSON written to any writer (stdout, a pipe, a buffer). It keeps no mark: see the module
/// doc for what that means after a crash.
#[derive(Debug)]
pub struct NdjsonWriter<W: Write> {
    writer: W,
}

impl<W: Write> NdjsonWriter<W> {
    /// Writes to `writer`.
    pub fn new(writer: W) -> Self {
        NdjsonWriter { writer }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> Sink for NdjsonWriter<W> {
    fn resume(&mut self, _saved: Option<u64>) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn accept(&mut self, activity: &str) -> io::Result<()> {
        self.writer.write_all(activity.as_bytes())?;
        self.writer.write_all(b"\n")
    }

    fn finish_slice(&mut self, _slice: &Slice) -> io::Result<Option<u64>> {
        self.writer.flush()?;
        Ok(None)
    }
}

/// Typed delivery: each activity, decoded, goes to a function. It keeps no mark: see the
/// module doc for what that means after a crash.
pub struct ActivitySink<F> {
    deliver: F,
}

impl<F: FnMut(Activity) -> io::Result<()>> ActivitySink<F> {
    /// Calls `deliver` with each activity, in time order.
    pub fn new(deliver: F) -> Self {
        ActivitySink { deliver }
    }

    /// The function back.
    pub fn into_inner(self) -> F {
        self.deliver
    }
}

impl<F: FnMut(Activity) -> io::Result<()>> Sink for ActivitySink<F> {
    fn resume(&mut self, _saved: Option<u64>) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn accept(&mut self, activity: &str) -> io::Result<()> {
        let decoded: Activity = serde_json::from_str(activity)?;
        (self.deliver)(decoded)
    }

    fn finish_slice(&mut self, _slice: &Slice) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice() -> Slice {
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap_or_default();
        Slice {
            index: 0,
            from: at,
            until: at,
        }
    }

    #[test]
    fn test_a_file_sink_cuts_an_interrupted_slice_back_to_the_saved_mark() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.ndjson");
        let mut sink = NdjsonFile::open(&path, true).expect("open");
        assert_eq!(sink.resume(None).expect("fresh"), Some(0));
        sink.accept(r#"{"id":"a"}"#).expect("accept");
        let mark = sink.finish_slice(&slice()).expect("finish");
        assert_eq!(mark, Some(11));
        // The next slice is half written when the process dies.
        sink.accept(r#"{"id":"b"}"#).expect("accept");
        sink.finish_slice(&slice()).expect("finish");
        drop(sink);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(br#"{"id":"#))
            .expect("partial line");

        let mut sink = NdjsonFile::open(&path, true).expect("reopen");
        assert_eq!(sink.resume(mark).expect("resume"), Some(11));
        sink.accept(r#"{"id":"b"}"#).expect("accept");
        sink.finish_slice(&slice()).expect("finish");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
        // A file shorter than the state says was changed by someone else: refused.
        let mut sink = NdjsonFile::open(&path, false).expect("reopen");
        let error = sink.resume(Some(1000)).expect_err("shorter");
        assert!(error.to_string().contains("fewer than the 1000"), "{error}");
    }

    #[test]
    fn test_an_activity_sink_decodes_and_refuses_what_is_not_an_activity() {
        let mut seen = Vec::new();
        let json = serde_json::to_string(&Activity::new(
            "a1",
            1,
            tidemark_model::EventCategory::Storage,
            tidemark_model::EventType::Add,
            tidemark_model::EventSubtype::Unknown,
        ))
        .expect("json");
        {
            let mut sink = ActivitySink::new(|activity: Activity| {
                seen.push(activity.id);
                Ok(())
            });
            sink.accept(&json).expect("an activity");
            assert!(sink.accept(r#"{"id":"x"}"#).is_err());
        }
        assert_eq!(seen, ["a1"]);
    }
}
