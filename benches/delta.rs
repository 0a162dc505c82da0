//! `cargo bench --bench delta [-- --size 64M] [FILE BASIS]`: the delta
//! engine's matcher throughput, printed as a table; on generated data also
//! MD4 alone on each SIMD path this CPU runs ("md4 only" rows).
//!
//! Owns only argument handling and printing; the cases and timing live in
//! `upserv::bench`, which `upserv bench` runs too. It never asserts
//! on time.

use std::path::PathBuf;
use std::process::ExitCode;

/// The synthetic file size when none is given.
const DEFAULT_SIZE: u64 = 256 << 20;

fn main() -> ExitCode {
    let mut size = DEFAULT_SIZE;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo passes --bench to every bench target.
            "--bench" => {}
            "--size" => match args.next().as_deref().and_then(parse_size) {
                Some(n) => size = n,
                None => return usage("--size needs a size such as 256M"),
            },
            _ if arg.starts_with('-') => return usage(&format!("unknown option {arg}")),
            _ => files.push(arg.into()),
        }
    }
    let pair = match files.as_slice() {
        [] => None,
        [file, basis] => Some((file.as_path(), basis.as_path())),
        _ => return usage("give both FILE and BASIS, or neither"),
    };
    match upserv::bench::run(size, pair) {
        Ok(results) => {
            println!("{}", upserv::bench::BenchResult::HEADER);
            for r in results {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("delta bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `123`, `500K`, `256M`, `2G` (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&s[..s.len() - 1], 10),
        b'M' => (&s[..s.len() - 1], 20),
        b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "delta bench: {problem}\nusage: cargo bench --bench delta -- [--size 256M] [FILE BASIS]"
    );
    ExitCode::from(2)
}
