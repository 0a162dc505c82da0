//! A command's results on stdout. Output nobody reads any more ends the
//! command quietly: when stdout is a pipe whose reader has gone
//! (`upserv list | head -1`), the process exits with status 0 at that
//! write, as a script that got what it wanted expects, instead of
//! panicking the way `println!` does. Any other write failure (a full
//! disk) is an error: one line on stderr and status 1.

use std::io::{self, Write};

/// Exit status when stdout cannot be written for another reason than a
/// closed pipe.
const EXIT_WRITE_FAILED: i32 = 1;

/// Writes `args` to stdout, ending the process as described above when
/// that fails.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            let _ = writeln!(io::stderr(), "upserv: cannot write to standard output: {e}");
            std::process::exit(EXIT_WRITE_FAILED);
        }
    }
}

/// `println!` for command output: see [`write`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
