//! Output of the install and the dev server: read line by line into the log, whatever a line's
//! size, with the last lines kept for error reports.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Longest line written to the log; longer lines are cut with a note of how much was dropped.
/// Bounds memory too: the rest of a long line is skipped, never buffered (a minified bundle
/// printed on one line must not grow the agent).
pub(crate) const LOG_LINE_MAX: usize = 4096;

/// Longest line kept for an error report, which ends up in a PR comment.
pub(crate) const TAIL_LINE_MAX: usize = 500;

/// The last lines of a process's output (stdout and stderr interleaved as they came).
#[derive(Debug)]
pub(crate) struct Tail {
    lines: Mutex<VecDeque<String>>,
    capacity: usize,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Tail {
            lines: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        })
    }

    fn push(&self, line: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(cut(line, TAIL_LINE_MAX));
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with a note when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// Formats tail lines for an error message.
pub(crate) fn show_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        "(no output)".to_owned()
    } else {
        lines.join("\n")
    }
}

/// Reads one line into `line` (without its `\n`), keeping at most `max` bytes of it and
/// skipping the rest. Returns the full length of the line, or `None` at the end of the input.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    line.clear();
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((total > 0).then_some(total));
        }
        let (chunk, consumed, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (&available[..newline], newline + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += chunk.len();
        reader.consume(consumed);
        if complete {
            return Ok(Some(total));
        }
    }
}

/// Tasks copying a process's output into the log.
#[derive(Debug)]
pub(crate) struct Pumps(Vec<JoinHandle<()>>);

impl Pumps {
    /// Waits until the output has been read to its end, for at most `within` (a process that
    /// left a child holding the pipe must not hold up the caller).
    pub(crate) async fn drain(self, within: Duration) {
        let handles = self.0;
        let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(within, futures::future::join_all(handles))
            .await
            .is_err()
        {
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

/// Starts copying `stdout` and `stderr` into the log (target `app`) and into `tail`.
pub(crate) fn pump<O, E>(
    stdout: Option<O>,
    stderr: Option<E>,
    phase: &'static str,
    tail: &Arc<Tail>,
) -> Pumps
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    let mut handles = Vec::new();
    if let Some(stdout) = stdout {
        handles.push(spawn_pump(stdout, phase, "stdout", Arc::clone(tail)));
    }
    if let Some(stderr) = stderr {
        handles.push(spawn_pump(stderr, phase, "stderr", Arc::clone(tail)));
    }
    Pumps(handles)
}

fn spawn_pump<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    phase: &'static str,
    stream: &'static str,
    tail: Arc<Tail>,
) -> JoinHandle<()> {
    let task = async move {
        let mut reader = BufReader::new(reader);
        let mut buffer = Vec::new();
        loop {
            match read_line_bounded(&mut reader, &mut buffer, LOG_LINE_MAX).await {
                Ok(Some(total)) => {
                    let text = String::from_utf8_lossy(&buffer);
                    let text = text.strip_suffix('\r').unwrap_or(&text);
                    let dropped = total - buffer.len();
                    if dropped > 0 {
                        tracing::info!(target: "app", phase, stream, "{text}… ({dropped} bytes cut)");
                    } else {
                        tracing::info!(target: "app", phase, stream, "{text}");
                    }
                    tail.push(text);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(phase, stream, %error, "stopped reading the app's output");
                    break;
                }
            }
        }
    };
    tokio::spawn(task.in_current_span())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_without_being_buffered_whole() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nshort\r\nlast");
        let mut reader = BufReader::with_capacity(1024, input.as_slice());
        let mut line = Vec::new();
        let total = read_line_bounded(&mut reader, &mut line, 10).await.unwrap();
        assert_eq!((total, line.len()), (Some(100_000), 10));
        let total = read_line_bounded(&mut reader, &mut line, 10).await.unwrap();
        assert_eq!((total, line.as_slice()), (Some(6), b"short\r".as_slice()));
        let total = read_line_bounded(&mut reader, &mut line, 10).await.unwrap();
        assert_eq!((total, line.as_slice()), (Some(4), b"last".as_slice()));
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).await.unwrap(),
            None
        );
    }

    #[test]
    fn the_tail_keeps_the_last_lines_cut_on_a_character_boundary() {
        let tail = Tail::new(2);
        tail.push("one");
        tail.push("two");
        tail.push(&"é".repeat(TAIL_LINE_MAX));
        let lines = tail.lines();
        assert_eq!(lines[0], "two");
        assert!(lines[1].starts_with("éé"));
        assert!(lines[1].ends_with(&format!("({} bytes cut)", TAIL_LINE_MAX)));
    }
}
