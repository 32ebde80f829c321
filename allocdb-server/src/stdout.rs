//! Lines for stdout that outlive their reader: [`outln!`](crate::outln) instead of `println!`.
//!
//! Rust starts every program with SIGPIPE ignored, so a write to a pipe whose reader has exited
//! (`allocdb status | head -1`) fails with `BrokenPipe`, and `println!` turns that failure into
//! a panic. A reader that stops reading has chosen not to see the rest; that is not the
//! command's failure. So a line nobody reads is dropped quietly, the command finishes what it
//! was doing (the demo still stops its replicas) and exits with its *own* status: for
//! `allocdb client` that status says whether a write committed, which is worth more to a
//! script than the shell's SIGPIPE convention (death by signal, status 141). SIGPIPE's default
//! is not restored either: the same process writes to sockets, and `start` must never die of
//! a peer that hung up.
//!
//! Any other write error (a full disk behind a redirect) is reported on stderr, once per line,
//! and the command goes on likewise.

use std::fmt;
use std::io::{self, Write};

/// Prints a formatted line to stdout like `println!`, but never panics: see [`crate::stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write_line(format_args!($($arg)*))
    };
}

/// Writes `line` and a newline to stdout and flushes; a closed reader drops the line.
pub fn write_line(line: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = write_line_to(&mut stdout, line) {
        // stderr may be closed too; there is nowhere left to say so.
        let _ = writeln!(io::stderr(), "error: cannot write to stdout: {error}");
    }
}

/// Writes `text` to stdout as it is (no newline added), with [`write_line`]'s rules.
pub fn write_bytes(text: &[u8]) {
    let mut stdout = io::stdout().lock();
    let result = stdout.write_all(text).and_then(|()| stdout.flush());
    if let Err(error) = quiet_broken_pipe(result) {
        let _ = writeln!(io::stderr(), "error: cannot write to stdout: {error}");
    }
}

/// Writes one line to `writer`; `Ok` also when the reader has gone away.
///
/// # Errors
/// Any write or flush error but `BrokenPipe`.
pub fn write_line_to(writer: &mut impl Write, line: fmt::Arguments<'_>) -> io::Result<()> {
    // Flushed per line so a broken pipe shows up here, not in stdout's drop at exit.
    quiet_broken_pipe(writeln!(writer, "{line}").and_then(|()| writer.flush()))
}

fn quiet_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::write_line_to;

    /// A writer that fails every write with one error kind.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_not_an_error_and_other_failures_are() {
        let mut buffer = Vec::new();
        write_line_to(&mut buffer, format_args!("{}", 1)).expect("a vector accepts");
        assert_eq!(buffer, b"1\n");
        let cases = [
            (io::ErrorKind::BrokenPipe, true),
            (io::ErrorKind::StorageFull, false),
            (io::ErrorKind::PermissionDenied, false),
        ];
        for (kind, quiet) in cases {
            let result = write_line_to(&mut Failing(kind), format_args!("line"));
            assert_eq!(result.is_ok(), quiet, "{kind:?}");
        }
    }
}
