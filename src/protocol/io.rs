//! One client connection's byte stream: non-blocking, full duplex, bounded.
//!
//! The rsync client keeps sending block checksums for later files while we
//! send data for earlier ones. A sender that only writes would deadlock once
//! both socket buffers fill, so, like rsync: io.c, every wait here polls both
//! directions: while output is pending we also read whatever input arrives into
//! a fixed-size buffer. Memory per connection is therefore bounded by
//! [`IN_CAP`] + [`OUT_CAP`], whatever the client does. A write is tried
//! before any poll: a socket that takes the bytes needs no wait, and only a
//! write that blocks (or a read that must wait) polls both directions.
//!
//! Output is raw during the handshake and multiplexed afterwards: data goes in
//! `MSG_DATA` frames, log lines in their own message frames (rsync: io.c
//! `MPLEX_BASE`). Input from a protocol-29 client is never multiplexed; from
//! protocol 30 on the client frames its side too, and reads see only the
//! data frames' bytes (the other messages it may send a sender are
//! handled here: rsync: io.c read_a_msg).
//!
//! Time is bounded too: an optional absolute deadline (the handshake) and an
//! idle timeout (no byte moved in either direction). Writes are paced by the
//! client's `--bwlimit` when it asks for one ([`super::bwlimit`]).

use super::bwlimit::Throttle;
use super::wire::{WireRead, WireWrite};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Input buffered ahead of the sender's needs while it writes (rsync uses 32 KiB).
pub(crate) const IN_CAP: usize = 64 * 1024;
/// The largest data frame: rsync's IO_BUFFER_SIZE, which the oldest
/// clients' input buffers are sized for.
pub(crate) const MAX_FRAME: usize = 32 * 1024;
/// Output gathered before it is written: several frames per system call.
pub(crate) const OUT_CAP: usize = 4 * MAX_FRAME;
/// Added to a message tag in the frame header (rsync's MPLEX_BASE).
const MPLEX_BASE: u32 = 7;
/// Protocol-29 clients read log messages into a 1 KiB line buffer.
pub(crate) const MAX_MSG_LEN: usize = 1000;
/// The longest message other than data we accept from a client (rsync
/// reads them into a buffer of this size).
pub(crate) const MAX_IN_MSG_LEN: usize = 4096 + 1024;
/// How often [`Conn::reset_after_delivery`] looks whether the peer has
/// acknowledged everything.
const ACK_POLL: Duration = Duration::from_millis(5);

/// Message tags a protocol-29 client understands (rsync.h `enum msgcode`,
/// with the protocol-30 error/warning codes mapped down as rsync: log.c does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MsgTag {
    Error = 1,
    Info = 2,
    /// The sender's I/O-error bits (protocol 30 without the safe file list).
    IoError = 22,
    /// The daemon's timeout, which the client adopts if shorter (31+).
    IoTimeout = 33,
    /// An error exit, echoed to a client that announces one (31+).
    ErrorExit = 86,
    /// A requested file that will not come (30+), so that the client's
    /// generator stops waiting for it.
    NoSend = 102,
}

/// Tags of the messages a client's generator may send us.
const IN_DATA: u32 = 0;
const IN_ERROR_XFER: u32 = 1;
const IN_WARNING: u32 = 4;
const IN_IO_ERROR: u32 = 22;
const IN_NOOP: u32 = 42;
const IN_ERROR_EXIT: u32 = 86;
const IN_SUCCESS: u32 = 100;
const IN_NO_SEND: u32 = 102;

pub struct Conn {
    rfd: File,
    wfd: File,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    in_eof: bool,
    out: Vec<u8>,
    out_pos: usize,
    /// The last write did not take all it was offered.
    write_blocked: bool,
    /// Offset in `out` of the header of the data frame being filled.
    open_frame: Option<usize>,
    multiplexed: bool,
    /// Whether the client frames its side (protocol 30 and later) ...
    multiplexed_in: bool,
    /// ... and whether it expects its error exit echoed (31 and later).
    echo_error_exit: bool,
    /// Data bytes left in the client's current data frame.
    frame_left: usize,
    deadline: Option<Instant>,
    idle_timeout: Option<Duration>,
    keepalive_every: Option<Duration>,
    last_io: Instant,
    last_write: Instant,
    bytes_read: u64,
    bytes_written: u64,
    /// Also counts the bytes written, for observers in other threads.
    shared_written: Option<Arc<AtomicU64>>,
    throttle: Option<Throttle>,
}

/// A read or write on a non-blocking descriptor that did nothing this time.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl Conn {
    /// Wraps the two directions of a connection (they may share one socket).
    pub fn new(rfd: OwnedFd, wfd: OwnedFd) -> io::Result<Conn> {
        set_nonblocking(rfd.as_raw_fd())?;
        set_nonblocking(wfd.as_raw_fd())?;
        let now = Instant::now();
        Ok(Conn {
            rfd: File::from(rfd),
            wfd: File::from(wfd),
            inbuf: vec![0u8; IN_CAP].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            in_eof: false,
            out: Vec::with_capacity(OUT_CAP + 64),
            out_pos: 0,
            write_blocked: false,
            open_frame: None,
            multiplexed: false,
            multiplexed_in: false,
            echo_error_exit: false,
            frame_left: 0,
            deadline: None,
            idle_timeout: None,
            keepalive_every: None,
            last_io: now,
            last_write: now,
            bytes_read: 0,
            bytes_written: 0,
            shared_written: None,
            throttle: None,
        })
    }

    /// An absolute time after which any wait fails (used for the handshake).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Fail when no byte moves in either direction for this long. Also sets the
    /// keep-alive interval to half of it, as rsync's `allowed_lull` does.
    pub(crate) fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.idle_timeout = timeout;
        self.keepalive_every = timeout.map(|t| t / 2);
    }

    /// Paces every later write to `rate` bytes per second on average
    /// (`None`: as fast as the socket takes them).
    pub(crate) fn set_bwlimit(&mut self, rate: Option<u64>) {
        self.throttle = rate.and_then(Throttle::new);
    }

    /// Counts the idle time from now: for waits that are not the peer's
    /// doing, such as a build download.
    pub(crate) fn restart_idle_clock(&mut self) {
        self.last_io = Instant::now();
    }

    /// Starts the byte counts afresh: rsync's statistics leave out the
    /// daemon handshake.
    pub(crate) fn reset_counters(&mut self) {
        self.bytes_read = 0;
        self.bytes_written = 0;
    }

    /// Adds every write's byte count to `counter` as well (one atomic add
    /// per write to the socket, never reset), so that another thread can
    /// watch a transfer without a lock.
    pub(crate) fn count_written_into(&mut self, counter: Arc<AtomicU64>) {
        self.shared_written = Some(counter);
    }

    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Bytes handed to the kernel so far (flush first for an exact count).
    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Reads one handshake line (without its `\n`, and without a trailing
    /// `\r`). Lines longer than `max` are an error, so a client cannot make us
    /// buffer without bound.
    pub(crate) fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let b = self.read_u8()?;
            if b == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if line.len() >= max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line longer than {max} bytes"),
                ));
            }
            line.push(b);
        }
    }

    /// Like `read_line`, but a line may also end with NUL (protected args).
    pub(crate) fn read_arg(&mut self, max: usize, nul_terminated: bool) -> io::Result<Vec<u8>> {
        if !nul_terminated {
            return self.read_line(max);
        }
        let mut arg = Vec::new();
        loop {
            match self.read_u8()? {
                0 => return Ok(arg),
                _ if arg.len() >= max => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("argument longer than {max} bytes"),
                    ))
                }
                b => arg.push(b),
            }
        }
    }

    /// From now on output is framed (io_start_multiplex_out).
    pub(crate) fn start_multiplex(&mut self) {
        self.multiplexed = true;
    }

    /// From now on the client's bytes arrive framed (protocol 30 and
    /// later; rsync: io.c io_start_multiplex_in). `echo_error_exit`: answer
    /// a client's error exit with an empty one, as senders do from 31 on.
    pub(crate) fn start_multiplex_in(&mut self, echo_error_exit: bool) {
        self.multiplexed_in = true;
        self.echo_error_exit = echo_error_exit;
    }

    /// Reads the client's bytes unframed again, until the next
    /// [`Conn::start_multiplex_in`]: below protocol 31 a client sends its
    /// `--files-from` names outside the frames.
    pub(crate) fn stop_multiplex_in(&mut self) {
        self.multiplexed_in = false;
    }

    /// A message with a binary payload (an int, or nothing).
    pub(crate) fn send_msg_bytes(&mut self, tag: MsgTag, payload: &[u8]) -> io::Result<()> {
        self.close_frame();
        self.reserve_out(payload.len() + 4)?;
        let header = ((MPLEX_BASE + tag as u32) << 24) | payload.len() as u32;
        self.out.extend_from_slice(&header.to_le_bytes());
        self.out.extend_from_slice(payload);
        Ok(())
    }

    /// Reads frame headers until a data frame with bytes in it, handling
    /// the other messages on the way.
    fn next_data_frame(&mut self) -> io::Result<()> {
        loop {
            let mut header = [0u8; 4];
            self.raw_read(&mut header)?;
            let header = u32::from_le_bytes(header);
            let tag = (header >> 24).wrapping_sub(MPLEX_BASE);
            let len = (header & 0x00ff_ffff) as usize;
            if tag == IN_DATA {
                if len > 0 {
                    self.frame_left = len;
                    return Ok(());
                }
                continue;
            }
            self.on_message(tag, len)?;
        }
    }

    /// A message other than data from the client.
    fn on_message(&mut self, tag: u32, len: usize) -> io::Result<()> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        if len > MAX_IN_MSG_LEN {
            return Err(bad(format!("multiplexing overflow {tag}:{len}")));
        }
        let mut payload = [0u8; MAX_IN_MSG_LEN];
        self.raw_read(&mut payload[..len])?;
        let int_sized = len == 4;
        match tag {
            IN_NOOP if len == 0 => Ok(()),
            IN_IO_ERROR | IN_SUCCESS | IN_NO_SEND if int_sized => Ok(()),
            IN_ERROR_XFER..=IN_WARNING => {
                let text = String::from_utf8_lossy(&payload[..len]);
                log::debug!("client says: {}", text.trim_end());
                Ok(())
            }
            IN_ERROR_EXIT if len == 0 || int_sized => {
                // A sender answers an error exit that carries a code; an
                // empty one is itself the answer.
                if self.echo_error_exit && int_sized {
                    self.send_msg_bytes(MsgTag::ErrorExit, &[])?;
                    self.flush()?;
                }
                let code = if int_sized {
                    i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])
                } else {
                    0
                };
                Err(io::Error::other(format!(
                    "the client ended with an error (code {code})"
                )))
            }
            _ => Err(bad(format!("invalid multi-message {tag}:{len}"))),
        }
    }

    /// Reads exactly `buf.len()` bytes of the raw stream.
    fn raw_read(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            if self.buffered_input() == 0 {
                self.pump(1)?;
            }
            let n = self.buffered_input().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.inbuf[self.in_start..self.in_start + n]);
            self.in_start += n;
            done += n;
            self.bytes_read += n as u64;
        }
        Ok(())
    }

    /// Sends a log message to the client (an error, a warning, or info). Long
    /// text is split so an old client's line buffer is never overrun.
    pub(crate) fn send_msg(&mut self, tag: MsgTag, text: &[u8]) -> io::Result<()> {
        if !self.multiplexed {
            return self.write_raw(text);
        }
        for chunk in text.chunks(MAX_MSG_LEN) {
            self.close_frame();
            self.reserve_out(chunk.len() + 4)?;
            let header = ((MPLEX_BASE + tag as u32) << 24) | chunk.len() as u32;
            self.out.extend_from_slice(&header.to_le_bytes());
            self.out.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// An empty data frame, which rsync clients treat as a keep-alive, when
    /// nothing has been written for half the idle timeout.
    pub(crate) fn maybe_keepalive(&mut self) -> io::Result<()> {
        let Some(every) = self.keepalive_every else {
            return Ok(());
        };
        if !self.multiplexed || self.last_write.elapsed() < every {
            return Ok(());
        }
        if self.out.len() == self.out_pos {
            self.close_frame();
            self.out
                .extend_from_slice(&((MPLEX_BASE << 24).to_le_bytes()));
        }
        self.flush()
    }

    /// Writes everything buffered.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.close_frame();
        self.pump(0)
    }

    /// Flushes, waits up to `limit` for the peer to acknowledge every byte,
    /// then makes the close a reset (SO_LINGER 0). rsyncd ends a refused
    /// pull by exiting with the client's next request unread, which resets
    /// the connection, so the client reports a socket error (exit 10) after
    /// the message; a plain close would read as a protocol error (exit 12).
    /// Not a socket (pipes in tests): only the flush.
    pub(crate) fn reset_after_delivery(&mut self, limit: Duration) -> io::Result<()> {
        self.flush()?;
        let fd = self.wfd.as_raw_fd();
        let started = Instant::now();
        loop {
            let mut unacked: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int through a valid pointer.
            if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) } < 0 {
                return Ok(());
            }
            if unacked == 0 || started.elapsed() >= limit {
                break;
            }
            std::thread::sleep(ACK_POLL);
        }
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt with a valid linger struct and its size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        Ok(())
    }

    /// Writes bytes outside any frame: the handshake before multiplexing.
    fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(OUT_CAP) {
            self.reserve_out(chunk.len())?;
            self.out.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Makes room for `n` more bytes in the output buffer, writing if needed.
    fn reserve_out(&mut self, n: usize) -> io::Result<()> {
        if self.out.len() + n > OUT_CAP + 64 {
            self.close_frame();
            self.pump(0)?;
        }
        Ok(())
    }

    fn close_frame(&mut self) {
        if let Some(at) = self.open_frame.take() {
            let len = (self.out.len() - at - 4) as u32;
            if len == 0 {
                self.out.truncate(at);
            } else {
                let header = (MPLEX_BASE << 24) | len;
                self.out[at..at + 4].copy_from_slice(&header.to_le_bytes());
            }
        }
    }

    /// Whether the client has sent bytes not read yet: buffered here, or
    /// waiting in the socket (a poll that does not wait).
    pub(crate) fn input_waiting(&self) -> bool {
        if self.buffered_input() > 0 {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.rfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0
    }

    fn buffered_input(&self) -> usize {
        self.in_end - self.in_start
    }

    fn time_left(&self) -> io::Result<Option<Duration>> {
        let now = Instant::now();
        let mut left: Option<Duration> = None;
        if let Some(d) = self.deadline {
            if now >= d {
                return Err(timed_out("handshake took too long"));
            }
            left = Some(d - now);
        }
        if let Some(idle) = self.idle_timeout {
            let since = now.duration_since(self.last_io);
            if since >= idle {
                return Err(timed_out(&format!("no I/O for {} seconds", idle.as_secs())));
            }
            let rest = idle - since;
            left = Some(left.map_or(rest, |l| l.min(rest)));
        }
        Ok(left)
    }

    /// Moves bytes until at least `need_input` bytes are buffered for reading
    /// and, when `need_input` is 0, until all output is written. Reads
    /// opportunistically while writing and writes while waiting to read.
    fn pump(&mut self, need_input: usize) -> io::Result<()> {
        // Bytes of a frame still being filled must not leave before its
        // header is known.
        self.close_frame();
        loop {
            let out_pending = self.out.len() > self.out_pos;
            if need_input == 0 && !out_pending {
                self.out.clear();
                self.out_pos = 0;
                return Ok(());
            }
            if need_input > 0 && self.buffered_input() >= need_input {
                return Ok(());
            }
            if need_input > 0 && self.in_eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by client",
                ));
            }
            if self.in_start > 0 && (self.in_end == self.inbuf.len() || need_input > 0) {
                self.inbuf.copy_within(self.in_start..self.in_end, 0);
                self.in_end -= self.in_start;
                self.in_start = 0;
            }
            // Poll first only when the last write could not finish: the
            // socket is likely still full.
            if out_pending && !self.write_blocked && self.write_some()? {
                continue;
            }
            let want_read = !self.in_eof && self.in_end < self.inbuf.len();
            let mut fds = [
                libc::pollfd {
                    fd: self.rfd.as_raw_fd(),
                    events: if want_read { libc::POLLIN } else { 0 },
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wfd.as_raw_fd(),
                    events: if out_pending { libc::POLLOUT } else { 0 },
                    revents: 0,
                },
            ];
            if !want_read && !out_pending {
                // Input buffer full and nothing to write: the caller asked
                // for more input than we can hold.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "input buffer overflow",
                ));
            }
            let timeout_ms = match self.time_left()? {
                None => -1,
                Some(d) => d.as_millis().clamp(1, i32::MAX as u128) as i32,
            };
            // SAFETY: fds is a valid array of two pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                self.time_left()?;
                continue;
            }
            let broken = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
            if want_read && fds[0].revents & (libc::POLLIN | broken) != 0 {
                self.read_some()?;
            }
            if out_pending && fds[1].revents & (libc::POLLOUT | broken) != 0 {
                self.write_some()?;
            }
        }
    }

    /// Whether the client has gone (closed its side, or the connection
    /// broke), looked at without waiting. Input that has arrived is kept
    /// for later reads.
    pub(crate) fn peer_gone(&mut self) -> bool {
        if self.in_eof {
            return true;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.rfd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wfd.as_raw_fd(),
                events: 0,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd structs.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 0) } <= 0 {
            return false;
        }
        let broken = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        if fds[1].revents & broken != 0 || fds[0].revents & (broken | libc::POLLRDHUP) != 0 {
            return true;
        }
        if fds[0].revents & libc::POLLIN != 0 && self.in_end < self.inbuf.len() {
            return self.read_some().is_err() || self.in_eof;
        }
        false
    }

    fn read_some(&mut self) -> io::Result<()> {
        let room = &mut self.inbuf[self.in_end..];
        let n = match (&self.rfd).read(room) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.in_eof = true;
        } else {
            self.in_end += n;
            self.last_io = Instant::now();
        }
        Ok(())
    }

    /// Writes what the socket takes now; returns whether it took all that
    /// was offered (so that it may well take more without a wait).
    fn write_some(&mut self) -> io::Result<bool> {
        let mut pending = &self.out[self.out_pos..];
        if let Some(throttle) = &self.throttle {
            pending = &pending[..pending.len().min(throttle.max_write())];
        }
        let offered = pending.len();
        let n = match (&self.wfd).write(pending) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => {
                self.write_blocked = true;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.write_blocked = n < offered;
        self.out_pos += n;
        self.bytes_written += n as u64;
        if let Some(throttle) = &mut self.throttle {
            throttle.wrote(n);
        }
        if let Some(counter) = &self.shared_written {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        let now = Instant::now();
        self.last_io = now;
        self.last_write = now;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(!self.write_blocked)
    }
}

impl WireRead for Conn {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if !self.multiplexed_in {
            return self.raw_read(buf);
        }
        let mut done = 0;
        while done < buf.len() {
            if self.frame_left == 0 {
                self.next_data_frame()?;
            }
            let n = self.frame_left.min(buf.len() - done);
            self.raw_read(&mut buf[done..done + n])?;
            self.frame_left -= n;
            done += n;
        }
        Ok(())
    }
}

impl WireWrite for Conn {
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.multiplexed {
            return self.write_raw(data);
        }
        while !data.is_empty() {
            if self.open_frame.is_none() {
                // Room for a whole frame, which later writes may fill
                // without the buffer growing.
                self.reserve_out(4 + MAX_FRAME)?;
                self.open_frame = Some(self.out.len());
                self.out.extend_from_slice(&[0; 4]);
            }
            let at = self.open_frame.unwrap_or(0);
            let room = (MAX_FRAME + 4).saturating_sub(self.out.len() - at);
            let n = room.min(data.len());
            self.out.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.out.len() - at >= MAX_FRAME + 4 {
                self.close_frame();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn shrink_buffers(s: &UnixStream) {
        let size: libc::c_int = 4096;
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a valid int option value.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }

    fn pair() -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        shrink_buffers(&a);
        shrink_buffers(&b);
        let r = a.try_clone().unwrap();
        (Conn::new(OwnedFd::from(r), OwnedFd::from(a)).unwrap(), b)
    }

    #[test]
    fn frames_data_and_messages() {
        let (mut conn, mut peer) = pair();
        conn.start_multiplex();
        conn.write_all(b"hello").unwrap();
        conn.send_msg(MsgTag::Error, b"oops\n").unwrap();
        conn.flush().unwrap();
        let mut got = [0u8; 18];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], &[5, 0, 0, 7]);
        assert_eq!(&got[4..9], b"hello");
        assert_eq!(&got[9..13], &[5, 0, 0, 8]);
        assert_eq!(&got[13..], b"oops\n");
    }

    #[test]
    fn data_frames_stay_within_the_oldest_clients_limit() {
        let (mut conn, peer) = pair();
        conn.start_multiplex();
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut sink = Vec::new();
            peer.read_to_end(&mut sink).unwrap();
            sink
        });
        // Writes of every size, gathered several frames at a time.
        let total: usize = (1..=40).map(|i| i * 997).sum();
        for i in 1..=40 {
            conn.write_all(&vec![i as u8; i * 997]).unwrap();
        }
        conn.flush().unwrap();
        drop(conn);
        let wire = reader.join().unwrap();
        let (mut at, mut data) = (0, 0);
        while at < wire.len() {
            let header = u32::from_le_bytes(wire[at..at + 4].try_into().unwrap());
            assert_eq!(header >> 24, MPLEX_BASE);
            let len = (header & 0x00ff_ffff) as usize;
            assert!(len > 0 && len <= MAX_FRAME, "frame of {len} bytes");
            (at, data) = (at + 4 + len, data + len);
        }
        assert_eq!(data, total);
    }

    #[test]
    fn reads_while_writing_so_neither_side_blocks_forever() {
        let (mut conn, peer) = pair();
        conn.start_multiplex();
        // With tiny socket buffers, the peer writes far more than they hold
        // before it reads anything: only our reading while writing avoids a
        // deadlock.
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            let blob = vec![7u8; 48 * 1024];
            peer.write_all(&blob).unwrap();
            let mut sink = Vec::new();
            peer.read_to_end(&mut sink).unwrap();
            sink.len()
        });
        let big = vec![1u8; 4 * 1024 * 1024];
        conn.write_all(&big).unwrap();
        conn.flush().unwrap();
        let mut got = vec![0u8; 48 * 1024];
        conn.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == 7));
        drop(conn);
        let received = writer.join().unwrap();
        assert!(received > big.len());
    }

    #[test]
    fn a_frame_being_filled_is_closed_before_waiting_for_input() {
        let (mut conn, mut peer) = pair();
        conn.start_multiplex();
        conn.write_all(b"abc").unwrap();
        peer.write_all(&[1]).unwrap();
        // Waiting for input writes what is pending; the frame header must
        // be complete by then.
        assert_eq!(conn.read_u8().unwrap(), 1);
        conn.write_all(b"de").unwrap();
        conn.flush().unwrap();
        let mut got = [0u8; 13];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got[..7], &[3, 0, 0, 7, b'a', b'b', b'c']);
        assert_eq!(&got[7..], &[2, 0, 0, 7, b'd', b'e']);
    }

    #[test]
    fn framed_input_yields_the_data_and_skips_messages() {
        let (mut conn, mut peer) = pair();
        conn.start_multiplex_in(true);
        let mut frames = Vec::new();
        frames.extend_from_slice(&[2, 0, 0, 7, b'a', b'b']);
        frames.extend_from_slice(&[0, 0, 0, 7 + 42]);
        frames.extend_from_slice(&[3, 0, 0, 7 + 2, b'h', b'i', b'\n']);
        frames.extend_from_slice(&[1, 0, 0, 7, b'c']);
        frames.extend_from_slice(&[4, 0, 0, 7 + 86, 23, 0, 0, 0]);
        peer.write_all(&frames).unwrap();
        let mut got = [0u8; 3];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc");
        let err = conn.read_u8().unwrap_err();
        assert!(err.to_string().contains("error (code 23)"), "{err}");
        let mut echo = [0u8; 4];
        peer.read_exact(&mut echo).unwrap();
        assert_eq!(echo, [0, 0, 0, 7 + 86]);
    }

    #[test]
    fn unknown_and_oversized_client_messages_are_refused() {
        let (mut conn, mut peer) = pair();
        conn.start_multiplex_in(false);
        peer.write_all(&[0, 0, 0, 7 + 9]).unwrap();
        assert!(conn.read_u8().is_err());
        let (mut conn, mut peer) = pair();
        conn.start_multiplex_in(false);
        peer.write_all(&[0, 0, 1, 7 + 2]).unwrap();
        let err = conn.read_u8().unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
    }

    #[test]
    fn idle_timeout_fires() {
        let (mut conn, _peer) = pair();
        conn.set_idle_timeout(Some(Duration::from_millis(50)));
        let err = conn.read_u8().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn overlong_line_is_refused() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&[b'a'; 100]).unwrap();
        peer.write_all(b"\n").unwrap();
        assert!(conn.read_line(10).is_err());
    }
}
