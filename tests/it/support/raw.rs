//! A client speaking the daemon handshake by hand, for what the real
//! client cannot be made to do (stay silent, send garbage, come from
//! another loopback address).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Read timeout of hand-made clients.
const RAW_TIMEOUT: Duration = Duration::from_secs(20);

/// A client speaking the daemon protocol by hand.
pub struct Raw {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::wrap(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// Connects from another loopback address (Linux routes all of
    /// 127.0.0.0/8 to the loopback interface), to act as another host.
    pub fn connect_from(source: &str, port: u16) -> Raw {
        Raw::wrap(connect_from(source, port).expect("connect from another loopback address"))
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(RAW_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Raw { stream, reader }
    }

    /// One line from the server, with its newline; empty at end of stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reading a line");
        line
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending");
    }

    /// Everything until the server closes (or the read times out).
    pub fn rest(&mut self) -> String {
        let mut text = String::new();
        let _ = self.reader.read_to_string(&mut text);
        text
    }

    /// Greeting and module name sent; returns the server's lines up to
    /// and including `@RSYNCD: OK` or the first `@ERROR`/`@RSYNCD:` line.
    pub fn open_module(&mut self, module: &str) -> Vec<String> {
        self.open_module_at(module, 29)
    }

    /// As [`Raw::open_module`], asking for `protocol`.
    pub fn open_module_at(&mut self, module: &str, protocol: u32) -> Vec<String> {
        let greeting = self.line();
        // Both servers offer their own newest and settle on what this
        // client asks for.
        assert!(greeting.starts_with("@RSYNCD: "), "greeting {greeting:?}");
        self.ask_for_module(module, protocol)
    }

    /// A hand-made pull from upserv's `module`: the handshake (upserv
    /// greets with protocol 32 and accepts the module), the server
    /// arguments `args`, one a line and then an empty line, and the
    /// checksum seed read. The stream takes the client's filter rules next.
    pub fn start_pull(port: u16, module: &str, args: &[&str]) -> TcpStream {
        let mut raw = Raw::connect(port);
        let greeting = raw.line();
        assert!(greeting.starts_with("@RSYNCD: 32"), "greeting {greeting:?}");
        let lines = raw.ask_for_module(module, 29);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("@RSYNCD: OK\n"),
            "{lines:?}"
        );
        for arg in args {
            raw.send(arg.as_bytes());
            raw.send(b"\n");
        }
        raw.send(b"\n");
        let mut seed = [0u8; 4];
        raw.reader.read_exact(&mut seed).expect("seed");
        raw.stream
    }

    /// After the greeting: asks for `protocol` and `module`; returns the
    /// lines of [`Raw::open_module`].
    fn ask_for_module(&mut self, module: &str, protocol: u32) -> Vec<String> {
        self.send(format!("@RSYNCD: {protocol}.0\n{module}\n").as_bytes());
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.is_empty() || line.starts_with("@");
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// rsync's ITEM_TRANSFER: the client wants the file's data.
const ITEM_TRANSFER: u16 = 1 << 15;

/// What a hand-made client sends after the seed to ask for one file: no
/// filter rules, then file `index` with ITEM_TRANSFER, then `head`: the
/// sum head (block count, block length, remainder, strong sum length), or
/// less, or more, to provoke the server.
pub fn file_request(index: i32, head: &[i32]) -> Vec<u8> {
    let mut req = Vec::new();
    req.extend_from_slice(&0i32.to_le_bytes()); // no filter rules
    req.extend_from_slice(&index.to_le_bytes());
    req.extend_from_slice(&ITEM_TRANSFER.to_le_bytes());
    for v in head {
        req.extend_from_slice(&v.to_le_bytes());
    }
    req
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source`.
pub fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let src: std::net::Ipv4Addr = source.parse().expect("IPv4 source address");
    // SAFETY: a fresh socket, owned by the TcpStream built from it below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours; the stream closes it on drop.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(src, 0);
    let remote = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
    // SAFETY: valid sockaddr_in structures of the given length.
    unsafe {
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(stream)
}
