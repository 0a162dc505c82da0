//! Downloads from the upstream with ureq: resumable, verified, patient.
//!
//! An archive is streamed into `.upserv/partial/NAME.part`, its digest
//! computed on the way. A `.info` file beside it keeps the URL and the
//! validator (ETag or Last-Modified) so that a later attempt, after a cut
//! connection or a crash, asks for the rest with `Range` and `If-Range`. An
//! upstream that answers the whole body (200) instead of the rest (206) is
//! read from zero. Each read may stall at most the fetch timeout, but a slow
//! download may take as long as it needs. Bodies are taken as sent: ureq's
//! transparent decompression is not compiled in (Cargo.toml).
//!
//! This module must not unpack, publish or delete anything outside its own
//! partial files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::digest::Digest;
use sha2::Sha256;
use ureq::http::{header, Response, StatusCode};
use ureq::Body;

/// Largest checksum file read (it holds one digest and a file name).
const MAX_CHECKSUM_FILE: u64 = 64 * 1024;
/// Largest manifest (`upstream contents`) read; OLPC's are a few MiB.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Largest `.info` file believed.
const MAX_INFO_FILE: u64 = 16 * 1024;
/// Read buffer for streaming a body to disk.
const CHUNK: usize = 64 * 1024;
/// Redirects followed before giving up.
const MAX_REDIRECTS: u32 = 5;

/// Why a download did not produce a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The upstream answered 404 (or 410).
    NotFound,
    /// The archive is larger than the whole cache (bytes announced).
    TooLarge(u64),
    /// Anything else, as a sentence naming what failed.
    Failed(String),
}

/// One attempt's failure: worth another try, or not.
enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

/// What one download is about.
pub struct Target<'a> {
    pub url: &'a str,
    pub checksum_url: Option<&'a str>,
    pub part: &'a Path,
    pub info: &'a Path,
    /// Refuse archives announced larger than this.
    pub max_bytes: u64,
}

/// A finished download, for the log line.
#[derive(Debug)]
pub struct Fetched {
    pub total: u64,
    pub transferred: u64,
    pub seconds: f64,
    /// `Some("md5")` / `Some("sha256")` when a checksum was verified.
    pub verified: Option<&'static str>,
}

/// The HTTP side of the cache.
pub struct Fetcher {
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
}

impl Fetcher {
    pub fn new(timeout: Duration, attempts: u32, backoff: Duration) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .user_agent(concat!("upserv/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            attempts: attempts.max(1),
            backoff,
        }
    }

    /// Downloads `target.url` into `target.part`, resuming what is there.
    /// `progress(done, total)` is called as bytes arrive.
    pub fn download(
        &self,
        target: &Target,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Fetched, FetchError> {
        let expected = match target.checksum_url {
            Some(url) => Some(self.expected_digest(url)?),
            None => None,
        };
        let started = Instant::now();
        let mut transferred = 0;
        self.with_retries(target.url, |fetcher| {
            fetcher.try_download(target, expected.as_ref(), &mut transferred, progress)
        })
        .map(|(total, verified)| Fetched {
            total,
            transferred,
            seconds: started.elapsed().as_secs_f64(),
            verified,
        })
    }

    /// A small whole body (checksum files, manifests), at most `limit` bytes.
    pub fn get_small(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        self.with_retries(url, |fetcher| {
            let response = fetcher.send(url, None)?;
            match response.status().as_u16() {
                200 => {}
                404 | 410 => return Err(Attempt::Fatal(FetchError::NotFound)),
                code => return Err(status_failure(code, url)),
            }
            let mut body = Vec::new();
            response
                .into_body()
                .into_reader()
                .take(limit + 1)
                .read_to_end(&mut body)
                .map_err(|e| Attempt::Retry(format!("reading {url} failed: {e}")))?;
            if body.len() as u64 > limit {
                return Err(Attempt::Fatal(FetchError::Failed(format!(
                    "{url} is larger than {limit} bytes"
                ))));
            }
            Ok(body)
        })
    }

    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut(&Fetcher) -> Result<T, Attempt>,
    ) -> Result<T, FetchError> {
        let mut pause = self.backoff;
        let mut last = String::new();
        for number in 1..=self.attempts {
            match attempt(self) {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(why)) => {
                    log::warn!("attempt {number} of {}: {why}", self.attempts);
                    last = why;
                }
            }
            if number < self.attempts {
                thread::sleep(pause);
                pause = pause.saturating_mul(2);
            }
        }
        Err(FetchError::Failed(format!(
            "{last} (gave up on {url} after {} attempts)",
            self.attempts
        )))
    }

    fn send(
        &self,
        url: &str,
        resume: Option<(u64, Option<&str>)>,
    ) -> Result<Response<Body>, Attempt> {
        let mut request = self
            .agent
            .get(url)
            .header(header::ACCEPT_ENCODING, "identity");
        if let Some((offset, validator)) = resume {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
            if let Some(validator) = validator {
                request = request.header(header::IF_RANGE, validator);
            }
        }
        request
            .call()
            .map_err(|e| Attempt::Retry(format!("upstream request for {url} failed: {e}")))
    }

    fn expected_digest(&self, url: &str) -> Result<Expected, FetchError> {
        let algorithm = Algorithm::from_url(url).ok_or_else(|| {
            FetchError::Failed(format!(
                "upstream checksum {url} ends neither in .md5 nor in .sha256"
            ))
        })?;
        let body = match self.get_small(url, MAX_CHECKSUM_FILE) {
            Err(FetchError::NotFound) => {
                return Err(FetchError::Failed(format!(
                    "checksum file {url} not found upstream"
                )))
            }
            other => other?,
        };
        let text = String::from_utf8_lossy(&body);
        let word = text.split_whitespace().next().unwrap_or_default();
        let digest = parse_hex(word)
            .filter(|d| d.len() == algorithm.digest_len())
            .ok_or_else(|| {
                FetchError::Failed(format!(
                    "checksum file {url} holds no {} digest",
                    algorithm.name()
                ))
            })?;
        Ok(Expected { algorithm, digest })
    }

    fn try_download(
        &self,
        target: &Target,
        expected: Option<&Expected>,
        transferred: &mut u64,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<(u64, Option<&'static str>), Attempt> {
        let local = |e: io::Error| {
            Attempt::Fatal(FetchError::Failed(format!(
                "{}: {e}",
                target.part.display()
            )))
        };
        // What an earlier attempt left, if it was for the same URL.
        let previous = PartialInfo::read(target.info).filter(|info| info.url == target.url);
        let have = match &previous {
            Some(_) => fs::metadata(target.part).map_or(0, |m| m.len()),
            None => 0,
        };
        let resume = previous
            .as_ref()
            .filter(|_| have > 0)
            .map(|info| (have, info.validator.as_deref()));
        let response = self.send(target.url, resume)?;
        let status = response.status();
        let (offset, total) = where_to_start(target, &response, previous.as_ref(), have)?;
        if let Some(total) = total.filter(|&t| t > target.max_bytes) {
            discard(target.part, target.info);
            return Err(Attempt::Fatal(FetchError::TooLarge(total)));
        }
        if offset == 0 {
            PartialInfo::from_response(target.url, &response, total)
                .write(target.info)
                .map_err(local)?;
        }
        let mut hasher = expected.map(|e| e.algorithm.hasher());
        let mut file = open_partial(target.part, offset, hasher.as_mut()).map_err(local)?;
        let mut done = offset;
        progress(done, total);
        if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            let mut body = response.into_body().into_reader();
            stream_body(
                &mut body,
                &mut file,
                hasher.as_mut(),
                &mut done,
                transferred,
                |d| progress(d, total),
            )
            .map_err(|e| match e {
                StreamError::Read(e) => {
                    Attempt::Retry(format!("download of {} broke off: {e}", target.url))
                }
                StreamError::Write(e) => local(e),
            })?;
        }
        file.sync_all().map_err(local)?;
        if let Some(total) = total.filter(|&t| t != done) {
            return Err(Attempt::Retry(format!(
                "download of {} ended after {done} of {total} bytes",
                target.url
            )));
        }
        match (expected, hasher) {
            (Some(expected), Some(hasher)) => check_digest(target, expected, hasher, offset)
                .map(|algorithm| (done, Some(algorithm))),
            _ => Ok((done, None)),
        }
    }
}

/// Compares the digest of the finished file with the upstream's; a mismatch
/// discards the file. After a resumed download a stale partial file may be
/// to blame, so that case is worth one more try from zero.
fn check_digest(
    target: &Target,
    expected: &Expected,
    hasher: Hasher,
    offset: u64,
) -> Result<&'static str, Attempt> {
    let actual = hasher.finish();
    if actual == expected.digest {
        return Ok(expected.algorithm.name());
    }
    discard(target.part, target.info);
    let why = format!(
        "{} of {} does not match the upstream checksum (expected {}, got {})",
        expected.algorithm.name(),
        target.url,
        to_hex(&expected.digest),
        to_hex(&actual)
    );
    Err(if offset > 0 {
        Attempt::Retry(why)
    } else {
        Attempt::Fatal(FetchError::Failed(why))
    })
}

/// Expands a URL template: every `{name}` becomes the build name.
pub fn expand(template: &str, name: &str) -> String {
    template.replace("{name}", name)
}

/// Forgets a partial download entirely.
pub fn discard(part: &Path, info: &Path) {
    for path in [part, info] {
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

fn status_failure(code: u16, url: &str) -> Attempt {
    let why = format!("upstream answered HTTP {code} for {url}");
    if code >= 500 || code == 408 || code == 429 || code == 416 {
        Attempt::Retry(why)
    } else {
        Attempt::Fatal(FetchError::Failed(why))
    }
}

/// From the response status: the offset to write from and the total length.
fn where_to_start(
    target: &Target,
    response: &Response<Body>,
    previous: Option<&PartialInfo>,
    have: u64,
) -> Result<(u64, Option<u64>), Attempt> {
    match response.status().as_u16() {
        206 if have > 0 => Ok((have, resumed_total(response, have, target.url)?)),
        200 => Ok((0, response.body().content_length())),
        // The partial file is already whole: an earlier attempt died after the last byte.
        416 if previous.is_some_and(|info| info.total == Some(have)) => Ok((have, Some(have))),
        404 | 410 => Err(Attempt::Fatal(FetchError::NotFound)),
        code => {
            if code == 416 {
                discard(target.part, target.info);
            }
            Err(status_failure(code, target.url))
        }
    }
}

/// Total length from a 206's `Content-Range: bytes START-END/TOTAL`, which
/// must start where our partial file ends.
fn resumed_total(response: &Response<Body>, have: u64, url: &str) -> Result<Option<u64>, Attempt> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = value.strip_prefix("bytes ").and_then(|rest| {
        let (range, total) = rest.split_once('/')?;
        let start = range.split_once('-')?.0.trim().parse::<u64>().ok()?;
        Some((start, total.trim().parse::<u64>().ok()))
    });
    match parsed {
        Some((start, total)) if start == have => Ok(total),
        _ => Err(Attempt::Retry(format!(
            "upstream sent range {value:?} for {url}, not the rest from byte {have}"
        ))),
    }
}

/// Opens the partial file for writing at `offset` (truncating after it),
/// feeding the bytes already there to the hasher.
fn open_partial(path: &Path, offset: u64, hasher: Option<&mut Hasher>) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.set_len(offset)?;
    if let Some(hasher) = hasher {
        let mut buffer = vec![0u8; CHUNK];
        let mut reader = (&file).take(offset);
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

enum StreamError {
    Read(io::Error),
    Write(io::Error),
}

fn stream_body(
    body: &mut impl Read,
    file: &mut File,
    mut hasher: Option<&mut Hasher>,
    done: &mut u64,
    transferred: &mut u64,
    mut progress: impl FnMut(u64),
) -> Result<(), StreamError> {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        file.write_all(&buffer[..n]).map_err(StreamError::Write)?;
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&buffer[..n]);
        }
        *done += n as u64;
        *transferred += n as u64;
        progress(*done);
    }
}

/// What `.info` remembers of an interrupted download.
#[derive(Debug, PartialEq, Eq)]
struct PartialInfo {
    url: String,
    validator: Option<String>,
    total: Option<u64>,
}

impl PartialInfo {
    fn from_response(url: &str, response: &Response<Body>, total: Option<u64>) -> PartialInfo {
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // If-Range needs a strong validator: a weak ETag cannot be used.
        let etag = header_text(header::ETAG).filter(|e| !e.starts_with("W/"));
        PartialInfo {
            url: url.to_string(),
            validator: etag.or_else(|| header_text(header::LAST_MODIFIED)),
            total,
        }
    }

    fn read(path: &Path) -> Option<PartialInfo> {
        let mut text = String::new();
        File::open(path)
            .ok()?
            .take(MAX_INFO_FILE)
            .read_to_string(&mut text)
            .ok()?;
        let mut info = PartialInfo {
            url: String::new(),
            validator: None,
            total: None,
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "url" => info.url = value.to_string(),
                "validator" => info.validator = Some(value.to_string()),
                "length" => info.total = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        (!info.url.is_empty()).then_some(info)
    }

    fn write(&self, path: &Path) -> io::Result<()> {
        let mut text = format!("url {}\n", self.url);
        if let Some(validator) = &self.validator {
            text += &format!("validator {validator}\n");
        }
        if let Some(total) = self.total {
            text += &format!("length {total}\n");
        }
        let tmp: PathBuf = path.with_extension("info-new");
        fs::write(&tmp, text)?;
        fs::rename(tmp, path)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn from_url(url: &str) -> Option<Algorithm> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if path.ends_with(".md5") {
            Some(Algorithm::Md5)
        } else if path.ends_with(".sha256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }
}

struct Expected {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_inputs() {
        // RFC 1321 and FIPS 180-2 test vectors for "abc".
        let mut md5 = Algorithm::Md5.hasher();
        md5.update(b"abc");
        assert_eq!(to_hex(&md5.finish()), "900150983cd24fb0d6963f7d28e17f72");
        let mut sha = Algorithm::Sha256.hasher();
        sha.update(b"ab");
        sha.update(b"c");
        assert_eq!(
            to_hex(&sha.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_and_templates() {
        assert_eq!(parse_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(parse_hex("0g"), None);
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(
            expand("http://h/{name}/{name}.tar", "b1"),
            "http://h/b1/b1.tar"
        );
        assert_eq!(
            Algorithm::from_url("http://h/x.tar.xz.sha256"),
            Some(Algorithm::Sha256)
        );
        assert_eq!(Algorithm::from_url("http://h/x.tar.xz.sum"), None);
    }

    #[test]
    fn partial_info_round_trip() {
        let path = std::env::temp_dir().join(format!("upserv-info-{}", std::process::id()));
        let info = PartialInfo {
            url: "http://h/a.tar".into(),
            validator: Some("\"abc\"".into()),
            total: Some(42),
        };
        info.write(&path).unwrap();
        assert_eq!(PartialInfo::read(&path), Some(info));
        fs::write(&path, "url x\nlength nope\n").unwrap();
        assert_eq!(PartialInfo::read(&path), None);
        fs::remove_file(&path).unwrap();
    }
}
