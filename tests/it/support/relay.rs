//! A TCP relay that holds a pull in flight until the test releases it.

use super::wait::WAIT_LIMIT;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A one-connection TCP relay to a daemon that forwards the first bytes
/// the daemon sends, then holds the rest until released: a pull that is
/// certainly in flight for as long as a test needs, without timing.
pub struct GatedRelay {
    port: u16,
    paused: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

impl GatedRelay {
    /// Relays one connection to `127.0.0.1:target`, pausing once
    /// `pause_after` bytes have gone from the daemon to the client.
    pub fn start(target: u16, pause_after: usize) -> GatedRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let port = listener.local_addr().expect("relay address").port();
        let (paused_tx, paused) = crossbeam_channel::bounded(1);
        let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(daemon) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (mut c_in, mut d_out) = (
                client.try_clone().expect("clone"),
                daemon.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut d_out);
                let _ = d_out.shutdown(std::net::Shutdown::Write);
            });
            relay_gated(daemon, client, pause_after, &paused_tx, &release_rx);
        });
        GatedRelay {
            port,
            paused,
            release,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until the relay holds the daemon's data back.
    pub fn await_paused(&self) {
        self.paused
            .recv_timeout(WAIT_LIMIT)
            .expect("the relay never paused: the pull did not start");
    }

    /// Lets the rest of the daemon's data through.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

fn relay_gated(
    mut from: TcpStream,
    mut to: TcpStream,
    pause_after: usize,
    paused: &crossbeam_channel::Sender<()>,
    release: &crossbeam_channel::Receiver<()>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0;
    let mut gate_open = false;
    loop {
        if !gate_open && sent >= pause_after {
            let _ = paused.send(());
            if release.recv().is_err() {
                return;
            }
            gate_open = true;
        }
        let room = if gate_open {
            buf.len()
        } else {
            buf.len().min(pause_after - sent)
        };
        match from.read(&mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n;
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
