//! The opening of a daemon connection, up to the client's request
//! (rsync: clientserver.c start_daemon up to `rsync_module`): our greeting, the
//! client's greeting, optional `#early_input`, then a module name or a
//! module-list request.
//!
//! This is a state machine without I/O, fed one line (or one block of
//! early input) at a time, so that the daemon's gatekeeper can run many
//! openings at once on non-blocking sockets while `serve` mode drives the
//! same machine with blocking reads: both say exactly the same things.
//!
//! Must not know about modules, access rules or sockets.

use super::auth::Digest;

/// The protocol we offer, as rsync 3.4 and later do: 31 on the wire, the
/// number raised to tell patched servers apart. Each client is served at
/// the lower of its number and ours.
pub(crate) const PROTOCOL_VERSION: u32 = 32;
/// The oldest protocol we speak (its MD4 is the standard one).
pub(crate) const MIN_PROTOCOL_VERSION: u32 = 27;
/// Longest handshake line we accept.
pub(crate) const MAX_LINE_LEN: usize = 4096;
/// The most `#early_input` bytes a client may send (rsync sends at most
/// about a page; they are read and dropped).
pub(crate) const MAX_EARLY_INPUT: usize = 4096;

/// The longest `@ERROR` line a client reads, without its newline: rsync
/// reads the daemon's lines into a buffer of 4096 + 1024 bytes, keeping one
/// for the NUL and one for the newline, and gives up on a longer line with
/// "didn't get server startup line", hiding the reason.
pub(crate) const MAX_ERROR_LINE_LEN: usize = 5118;

/// The `@ERROR: why` line for a client, newline included, cut to what a
/// client reads (on a character boundary, ending in `...`). The log keeps
/// the whole reason.
pub(crate) fn error_line(why: &str) -> String {
    const CUT: &str = "...";
    let mut line = format!("@ERROR: {why}");
    if line.len() > MAX_ERROR_LINE_LEN {
        let mut end = MAX_ERROR_LINE_LEN - CUT.len();
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(CUT);
    }
    line.push('\n');
    line
}

/// Our greeting line: the protocol, then the auth digests we know.
pub(crate) fn greeting() -> String {
    format!("@RSYNCD: {PROTOCOL_VERSION}.0 {}\n", Digest::offered_list())
}

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// The module list (an empty line or `#list`).
    List,
    Module(String),
}

/// A finished opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The protocol both sides speak from now on.
    pub(crate) protocol: u32,
    /// The auth digest list of the client's greeting, if it sent one.
    pub(crate) client_digests: Option<String>,
    pub(crate) ask: Ask,
}

/// What the machine wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Line,
    /// This many bytes of early input, to be read and dropped.
    Bytes(usize),
}

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    Done(Request),
    /// The text of the `@ERROR:` line to send before closing.
    Refuse(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Command,
    EarlyInput(usize),
    Module,
    Finished,
}

#[derive(Clone, Debug)]
pub(crate) struct Opening {
    state: State,
    protocol: u32,
    client_digests: Option<String>,
}

impl Default for Opening {
    fn default() -> Self {
        Opening::new()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The protocol number and the digest list of `@RSYNCD: 31.0 sha512 ...`.
fn parse_greeting(line: &[u8]) -> Option<(u32, Option<String>)> {
    let rest = line.strip_prefix(b"@RSYNCD: ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let protocol = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let digests = rest
        .iter()
        .position(|&b| b == b' ')
        .map(|at| text(&rest[at + 1..]));
    Some((protocol, digests))
}

impl Opening {
    pub(crate) fn new() -> Opening {
        Opening {
            state: State::Greeting,
            protocol: PROTOCOL_VERSION,
            client_digests: None,
        }
    }

    pub(crate) fn need(&self) -> Need {
        match self.state {
            State::EarlyInput(n) => Need::Bytes(n),
            _ => Need::Line,
        }
    }

    /// Feeds one line, without its `\n` (and without a trailing `\r`).
    pub(crate) fn on_line(&mut self, line: &[u8]) -> Step {
        match self.state {
            State::Greeting => self.on_greeting(line),
            State::Command => self.on_command(line),
            State::Module => self.on_request(line),
            State::EarlyInput(_) | State::Finished => {
                self.state = State::Finished;
                Step::Refuse("protocol startup error".into())
            }
        }
    }

    /// Reports that the early input was read (and dropped).
    pub(crate) fn on_early_input(&mut self) -> Step {
        match self.state {
            State::EarlyInput(_) => {
                self.state = State::Module;
                Step::Continue
            }
            _ => Step::Refuse("protocol startup error".into()),
        }
    }

    fn refuse(&mut self, why: String) -> Step {
        self.state = State::Finished;
        Step::Refuse(why)
    }

    fn on_greeting(&mut self, line: &[u8]) -> Step {
        let Some((client_protocol, digests)) = parse_greeting(line) else {
            return self.refuse("protocol startup error".into());
        };
        if client_protocol < MIN_PROTOCOL_VERSION {
            return self.refuse(format!(
                "protocol version mismatch: this server needs protocol {MIN_PROTOCOL_VERSION} or newer (rsync 2.6.0), the client offered {client_protocol}"
            ));
        }
        self.protocol = client_protocol.min(PROTOCOL_VERSION);
        self.client_digests = digests;
        self.state = State::Command;
        Step::Continue
    }

    fn on_command(&mut self, line: &[u8]) -> Step {
        let Some(len) = line.strip_prefix(b"#early_input=") else {
            return self.on_request(line);
        };
        match text(len).trim().parse::<usize>() {
            Ok(n) if n > 0 && n <= MAX_EARLY_INPUT => {
                self.state = State::EarlyInput(n);
                Step::Continue
            }
            _ => self.refuse("invalid early_input length".into()),
        }
    }

    fn on_request(&mut self, line: &[u8]) -> Step {
        let ask = if line.is_empty() || line == b"#list" {
            Ask::List
        } else if line.first() == Some(&b'#') {
            return self.refuse(format!("Unknown command '{}'", text(line)));
        } else {
            Ask::Module(text(line))
        };
        self.state = State::Finished;
        Step::Done(Request {
            protocol: self.protocol,
            client_digests: self.client_digests.take(),
            ask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&[u8]]) -> Step {
        let mut o = Opening::new();
        let mut last = Step::Continue;
        for line in lines {
            last = match o.need() {
                Need::Line => o.on_line(line),
                Need::Bytes(n) => {
                    assert_eq!(n, line.len());
                    o.on_early_input()
                }
            };
        }
        last
    }

    #[test]
    fn error_lines_fit_what_a_client_reads() {
        assert_eq!(error_line("no"), "@ERROR: no\n");
        // Three-byte characters, so that the cut falls inside one.
        let long = "\u{fffd}".repeat(3000);
        let line = error_line(&long);
        assert!(line.len() <= MAX_ERROR_LINE_LEN + 1, "{}", line.len());
        assert!(line.len() > MAX_ERROR_LINE_LEN - 6);
        assert!(line.starts_with("@ERROR: \u{fffd}") && line.ends_with("...\n"));
        let exact = "x".repeat(MAX_ERROR_LINE_LEN - "@ERROR: ".len());
        assert_eq!(error_line(&exact), format!("@ERROR: {exact}\n"));
    }

    #[test]
    fn greeting_names_protocol_32_and_the_digests() {
        assert_eq!(greeting(), "@RSYNCD: 32.0 sha512 sha256 md5 md4\n");
    }

    #[test]
    fn a_module_request_with_the_client_digests() {
        let got = run(&[b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4", b"mod"]);
        assert_eq!(
            got,
            Step::Done(Request {
                protocol: 32,
                client_digests: Some("sha512 sha256 sha1 md5 md4".into()),
                ask: Ask::Module("mod".into()),
            })
        );
    }

    #[test]
    fn old_clients_send_no_digest_list() {
        let got = run(&[b"@RSYNCD: 28", b""]);
        assert_eq!(
            got,
            Step::Done(Request {
                protocol: 28,
                client_digests: None,
                ask: Ask::List,
            })
        );
    }

    #[test]
    fn early_input_is_skipped() {
        let got = run(&[b"@RSYNCD: 31.0 md5", b"#early_input=3", b"abc", b"#list"]);
        assert!(matches!(got, Step::Done(Request { ask: Ask::List, .. })));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            run(&[b"GET / HTTP/1.0"]),
            Step::Refuse("protocol startup error".into())
        );
        assert!(matches!(run(&[b"@RSYNCD: 26.0"]), Step::Refuse(m) if m.contains("mismatch")));
        assert_eq!(
            run(&[b"@RSYNCD: 29.0", b"#early_input=99999"]),
            Step::Refuse("invalid early_input length".into())
        );
        assert_eq!(
            run(&[b"@RSYNCD: 29.0", b"#early_input=0"]),
            Step::Refuse("invalid early_input length".into())
        );
        assert_eq!(
            run(&[b"@RSYNCD: 29.0", b"#frob"]),
            Step::Refuse("Unknown command '#frob'".into())
        );
    }
}
