//! Newline-delimited framing with a maximum line length.

use tokio::io::{AsyncRead, AsyncReadExt};

/// One unit read from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Line(&'a [u8]),
    /// A line longer than the maximum; its bytes were discarded up to and
    /// including its newline (or are being discarded until it arrives).
    TooLong,
}

/// Reads lines from `R`, keeping at most `max_line` bytes of one line.
///
/// A line of exactly `max_line` bytes before the newline is accepted. A
/// longer one yields one [`Frame::TooLong`], and the reader drops bytes up to
/// the next newline, so the connection stays usable.
pub struct LineReader<R> {
    inner: R,
    /// Read buffer, every byte initialized. Bytes from `filled` on are free
    /// space, kept initialized so that a read does not zero it again.
    buf: Vec<u8>,
    /// End of the bytes read into `buf`.
    filled: usize,
    /// Start of unread data in `buf`.
    start: usize,
    /// How far past `start` the newline search has already looked.
    scanned: usize,
    max_line: usize,
    discarding: bool,
    /// Bytes read from `inner` so far.
    bytes_read: u64,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            // Allocated on the first read.
            buf: Vec::new(),
            filled: 0,
            start: 0,
            scanned: 0,
            max_line,
            discarding: false,
            bytes_read: 0,
        }
    }

    /// Returns how many bytes were read from the stream so far, complete
    /// lines or not.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Returns whether a complete line is already buffered, so that a caller
    /// can tell if [`LineReader::next_frame`] would return without reading.
    pub fn has_buffered_line(&self) -> bool {
        self.buf[self.start..self.filled].contains(&b'\n')
    }

    /// Reads the next frame, or `None` at end of stream. A partial last line
    /// without a newline at end of stream is dropped.
    ///
    /// # Errors
    ///
    /// Returns the I/O error of the underlying reader.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame<'_>>> {
        loop {
            let unread = &self.buf[self.start..self.filled];
            if let Some(offset) = unread[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.start + self.scanned + offset;
                let line_start = self.start;
                self.start = end + 1;
                self.scanned = 0;
                if std::mem::take(&mut self.discarding) {
                    return Ok(Some(Frame::TooLong));
                }
                let mut line = &self.buf[line_start..end];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.len() > self.max_line {
                    return Ok(Some(Frame::TooLong));
                }
                return Ok(Some(Frame::Line(line)));
            }
            self.scanned = unread.len();
            // Allow one extra byte for a trailing `\r` before the newline.
            if self.scanned > self.max_line + 1 {
                self.discarding = true;
                self.start = self.filled;
                self.scanned = 0;
            }
            self.compact();
            if self.buf.len() - self.filled < 1024 {
                // Doubling keeps the copying of a long line linear.
                let grown = (self.buf.len() * 2).max(4096);
                self.buf.resize(grown, 0);
            }
            let read = self.read_more().await?;
            if read == 0 {
                return Ok(None);
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        let read = self.inner.read(&mut self.buf[self.filled..]).await?;
        self.filled += read;
        self.bytes_read += read as u64;
        Ok(read)
    }

    /// Moves unread bytes to the front of the buffer once the consumed part
    /// is large, so the buffer does not grow without bound.
    fn compact(&mut self) {
        if self.start == self.filled {
            self.filled = 0;
            self.start = 0;
        } else if self.start > 0 && self.start >= self.filled / 2 {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.buf.len() > 4 * (self.max_line + 4096) && self.filled < 4096 {
            self.buf.truncate(self.max_line + 4096);
            self.buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Result<String, ()>> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(frame) = reader.next_frame().await.unwrap() {
            out.push(match frame {
                Frame::Line(line) => Ok(String::from_utf8(line.to_vec()).unwrap()),
                Frame::TooLong => Err(()),
            });
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_carriage_return() {
        let got = frames(b"a\r\nbc\n\nd", 10).await;
        assert_eq!(got, vec![Ok("a".into()), Ok("bc".into()), Ok("".into())]);
    }

    #[tokio::test]
    async fn line_of_exactly_max_is_accepted() {
        let mut input = vec![b'x'; 8];
        input.extend_from_slice(b"\r\nok\n");
        let got = frames(&input, 8).await;
        assert_eq!(got, vec![Ok("x".repeat(8)), Ok("ok".into())]);
    }

    /// Returns at most three bytes per read, so lines span many reads.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let count = self.0.len().min(3).min(buf.remaining());
            buf.put_slice(&self.0[..count]);
            self.0 = &self.0[count..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_across_many_small_reads() {
        let long = "z".repeat(10_000);
        let input = format!("first\n{long}\nlast\n");
        let mut reader = LineReader::new(Trickle(input.as_bytes()), 20_000);
        let mut got = Vec::new();
        while let Some(frame) = reader.next_frame().await.unwrap() {
            match frame {
                Frame::Line(line) => got.push(String::from_utf8(line.to_vec()).unwrap()),
                Frame::TooLong => panic!("no line is over the maximum"),
            }
        }
        assert_eq!(got, vec!["first".to_owned(), long, "last".to_owned()]);
    }

    #[tokio::test]
    async fn overlong_line_yields_one_error_then_recovers() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\nnext\n");
        let got = frames(&input, 100).await;
        assert_eq!(got, vec![Err(()), Ok("next".into())]);
        let mut input = vec![b'y'; 9];
        input.extend_from_slice(b"\nnext\n");
        let got = frames(&input, 8).await;
        assert_eq!(got, vec![Err(()), Ok("next".into())]);
    }
}
