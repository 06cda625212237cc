//! Writing the report to stderr in a way that cannot hang or fail the process: a closed or broken
//! stderr loses the text, a full pipe nobody reads loses what does not fit in the time given, and
//! neither panics (as `eprint!` does) nor blocks the exit.

use std::time::{Duration, Instant};

/// At most this much is written per `write(2)`: on a pipe that `poll(2)` reports writable, a
/// write of up to `PIPE_BUF` bytes does not block.
const CHUNK: usize = 4096;

/// How a write of the report went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every byte.
    All,
    /// Stderr is closed or its reader is gone: nothing more can be written.
    Broken,
    /// Stderr stayed full for longer than the time given.
    OutOfTime,
}

/// Writes `text` to stderr (file descriptor 2) within `limit`, directly: not through `std`'s
/// stderr handle, whose lock a thread blocked on a full pipe would hold.
pub(crate) fn write_stderr(text: &str, limit: Duration) -> Written {
    let _writing = WRITING.lock().unwrap_or_else(|poison| poison.into_inner());
    write_fd(libc::STDERR_FILENO, text.as_bytes(), limit)
}

/// Held while this crate writes to stderr, so a progress line never lands inside a report.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Like [`write_stderr`], but gives up at once (`None`) if a report is being written: for lines
/// that may be skipped, such as the progress of a long shutdown.
pub(crate) fn write_stderr_unless_busy(text: &str, limit: Duration) -> Option<Written> {
    let _writing = WRITING.try_lock().ok()?;
    Some(write_fd(libc::STDERR_FILENO, text.as_bytes(), limit))
}

fn write_fd(fd: libc::c_int, mut bytes: &[u8], limit: Duration) -> Written {
    let deadline = super::after_std(Instant::now(), limit);
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Written::OutOfTime;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // Rounded up, so that giving up never comes before the limit.
        let millis =
            libc::c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid `pollfd`, and the count says one.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready < 0 {
            if interrupted() {
                continue;
            }
            return Written::Broken;
        }
        if ready == 0 {
            return Written::OutOfTime;
        }
        if poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Written::Broken;
        }
        let chunk = &bytes[..bytes.len().min(CHUNK)];
        // SAFETY: the pointer and length describe `chunk`, which outlives the call.
        let written = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        match usize::try_from(written) {
            Ok(0) => return Written::Broken,
            Ok(count) => bytes = &bytes[count..],
            Err(_) if interrupted() || would_block() => continue,
            Err(_) => return Written::Broken,
        }
    }
    Written::All
}

fn interrupted() -> bool {
    std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
}

fn would_block() -> bool {
    std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe(2) just opened both, and nothing else owns them.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn a_pipe_whose_reader_is_gone_is_broken_not_a_panic() {
        let (reader, writer) = pipe();
        drop(reader);
        let written = write_fd(writer.as_raw_fd(), b"report", Duration::from_secs(1));
        assert_eq!(written, Written::Broken);
    }

    #[test]
    fn a_full_pipe_nobody_reads_gives_up_in_time() {
        let (_reader, writer) = pipe();
        let text = vec![b'x'; 1 << 20];
        let started = Instant::now();
        let written = write_fd(writer.as_raw_fd(), &text, Duration::from_millis(200));
        assert_eq!(written, Written::OutOfTime);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn everything_arrives_when_someone_reads() {
        let (reader, writer) = pipe();
        let text: Vec<u8> = (0..200_000u32).map(|n| b'a' + (n % 26) as u8).collect();
        let expected = text.clone();
        let reading = std::thread::spawn(move || {
            let mut file = std::fs::File::from(reader);
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut got).unwrap();
            got
        });
        assert_eq!(
            write_fd(writer.as_raw_fd(), &text, Duration::from_secs(10)),
            Written::All
        );
        drop(writer);
        assert_eq!(reading.join().unwrap(), expected);
    }
}
