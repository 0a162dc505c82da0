//! SIGTERM, SIGINT and SIGHUP turned into bytes on a pipe, so the accept
//! loop can wait for connections and signals with one poll(2). SIGUSR1
//! (and SIGHUP too) asks the logger to reopen the log file, as nginx does
//! for logrotate; that needs no loop, so it is not on the pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Stop,
    Reload,
}

/// This thread's `errno`.
fn errno() -> *mut libc::c_int {
    // SAFETY: __errno_location has no preconditions and is
    // async-signal-safe; it returns this thread's errno.
    unsafe { libc::__errno_location() }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // The interrupted code may be about to read errno: a failed write here
    // (a full pipe) must not change what it sees.
    // SAFETY: errno() points at this thread's errno.
    let saved = unsafe { *errno() };
    if sig == libc::SIGUSR1 || sig == libc::SIGHUP {
        crate::logging::request_reopen();
    }
    if sig == libc::SIGUSR1 {
        return;
    }
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
    // SAFETY: as above.
    unsafe { *errno() = saved };
}

/// The read end of the signal pipe.
pub struct Signals {
    read: std::fs::File,
    _write: OwnedFd,
}

impl Signals {
    /// Installs the handlers. Call once per process.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            // SAFETY: installing a handler that only calls write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Signals {
            read: read.into(),
            _write: write,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals that arrived since the last call.
    pub(crate) fn drain(&self) -> Vec<Signal> {
        let mut buf = [0u8; 16];
        let n = match io::Read::read(&mut &self.read, &mut buf) {
            Ok(n) if n > 0 => n,
            _ => return Vec::new(),
        };
        buf[..n]
            .iter()
            .map(|&s| {
                if i32::from(s) == libc::SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_leaves_errno_as_it_found_it() {
        // Read-only: the handler's write fails with EBADF.
        let file = std::fs::File::open("/dev/null").unwrap();
        WAKE_FD.store(file.as_raw_fd(), Ordering::Relaxed);
        // SAFETY: errno() points at this thread's errno.
        unsafe { *errno() = libc::EINTR };
        on_signal(libc::SIGHUP);
        // SAFETY: as above.
        let after = unsafe { *errno() };
        WAKE_FD.store(-1, Ordering::Relaxed);
        assert_eq!(after, libc::EINTR);
    }
}
