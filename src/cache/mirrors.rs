//! The upstream mirrors: their URL templates, which of them are down, and
//! one download across them with its retries.
//!
//! `upstream` lists one or more archive templates, tried in order. The
//! `upstream checksum` and `upstream contents` templates are each either one
//! template, used whatever mirror served the archive, or one per mirror,
//! paired by position. A mirror that refuses, times out, answers 5xx or
//! sends too slowly is skipped for the rest of that download and remembered
//! as down for [`MIRROR_DOWN_FOR`]: later downloads try the mirrors that are
//! up first, and the ones that are down only when no other is left. A 404 is
//! final only when every mirror says it. A download whose body broke off
//! continues at the mirror that sent the part (its validator decides
//! whether the rest can be resumed), after a pause that doubles each round.
//!
//! Manifests (`upstream contents`) come from the mirror that sent the
//! archive, with the same number of attempts.
//!
//! This module must not unpack or publish: it hands the finished archive,
//! and which mirror sent it, to the job thread.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::fetch::{self, Attempt, FetchError, Fetched, Fetcher, Target};
use super::unpack::ArchiveKind;
use super::{CacheConfig, CacheError};

/// How long a mirror that failed is tried only after the others.
pub const MIRROR_DOWN_FOR: Duration = Duration::from_secs(5 * 60);

/// One mirror: its templates, with `{name}` for the build name.
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) archive: String,
    pub(super) checksum: Option<String>,
    pub(super) contents: Option<String>,
    pub(super) kind: ArchiveKind,
}

/// A mirror as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorState {
    /// The archive URL template.
    pub(crate) template: String,
    /// How much longer the mirror counts as down; `None` when it is up.
    pub down_for: Option<Duration>,
}

/// Where one download ends up.
pub(super) struct Served {
    pub(super) fetched: Fetched,
    /// Index of the mirror that sent the archive.
    pub(super) mirror: usize,
}

/// What one download needs besides the mirrors.
pub(super) struct Download<'a> {
    pub(super) name: &'a str,
    pub(super) part: &'a Path,
    pub(super) info: &'a Path,
    pub(super) max_bytes: u64,
    pub(super) attempts: u32,
    pub(super) backoff: Duration,
}

pub(super) struct Mirrors {
    list: Vec<Mirror>,
    /// Per mirror: until when it counts as down.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Mirrors {
    /// The mirrors of the configuration; `None` without an upstream.
    pub(super) fn from_config(cfg: &CacheConfig) -> Result<Option<Mirrors>, CacheError> {
        let Some(upstream) = &cfg.upstream else {
            return Ok(None);
        };
        let archives: Vec<&str> = upstream.split_whitespace().collect();
        if archives.is_empty() {
            return Ok(None);
        }
        let checksums = paired(
            "upstream checksum",
            cfg.upstream_checksum.as_deref(),
            &archives,
        )?;
        let contents = paired(
            "upstream contents",
            cfg.upstream_contents.as_deref(),
            &archives,
        )?;
        let list = archives
            .iter()
            .zip(checksums)
            .zip(contents)
            .map(|((&archive, checksum), contents)| {
                let kind = ArchiveKind::from_url(&fetch::expand(archive, "x")).ok_or_else(|| {
                    CacheError::new(format!(
                        "upstream {archive} does not end in .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz or .tar.lzma"
                    ))
                })?;
                Ok(Mirror {
                    archive: archive.to_string(),
                    checksum,
                    contents,
                    kind,
                })
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        Ok(Some(Mirrors {
            down_until: Mutex::new(vec![None; list.len()]),
            list,
        }))
    }

    pub(super) fn get(&self, index: usize) -> &Mirror {
        &self.list[index]
    }

    /// The mirror whose archive of build `name` is at `url`.
    pub(super) fn sent(&self, name: &str, url: &str) -> Option<&Mirror> {
        self.list
            .iter()
            .find(|m| fetch::expand(&m.archive, name) == url)
    }

    /// Each mirror and whether it counts as down now.
    pub(super) fn states(&self) -> Vec<MirrorState> {
        let now = Instant::now();
        let down = self.down_until.lock();
        self.list
            .iter()
            .zip(down.iter())
            .map(|(mirror, until)| MirrorState {
                template: mirror.archive.clone(),
                down_for: until.and_then(|t| t.checked_duration_since(now)),
            })
            .collect()
    }

    /// Downloads build `job.name` into `job.part`, mirror by mirror.
    pub(super) fn download(
        &self,
        fetcher: &Fetcher,
        job: &Download,
        transferred: &mut u64,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Served, FetchError> {
        let urls: Vec<String> = self
            .list
            .iter()
            .map(|m| fetch::expand(&m.archive, job.name))
            .collect();
        let mut not_found = vec![false; self.list.len()];
        let mut last = String::new();
        let mut pause = job.backoff;
        let attempts = job.attempts.max(1);
        for round in 1..=attempts {
            // The mirror that sent the partial file goes first, to resume it.
            let holder =
                fetch::partial_url(job.info).and_then(|u| urls.iter().position(|v| *v == u));
            for index in self.order(holder) {
                if not_found[index] {
                    continue;
                }
                let checksum = self.list[index]
                    .checksum
                    .as_deref()
                    .map(|t| fetch::expand(t, job.name));
                let target = Target {
                    url: &urls[index],
                    checksum_url: checksum.as_deref(),
                    part: job.part,
                    info: job.info,
                    max_bytes: job.max_bytes,
                };
                match fetcher.download(&target, transferred, progress) {
                    Ok(fetched) => {
                        self.down_until.lock()[index] = None;
                        return Ok(Served {
                            fetched,
                            mirror: index,
                        });
                    }
                    Err(Attempt::Fatal(FetchError::NotFound)) => not_found[index] = true,
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Down(why)) => {
                        log::warn!(
                            "attempt {round} of {attempts}: {why}; mirror {} counts as down for {} s",
                            self.list[index].archive,
                            MIRROR_DOWN_FOR.as_secs()
                        );
                        self.down_until.lock()[index] = Some(Instant::now() + MIRROR_DOWN_FOR);
                        last = why;
                    }
                    Err(Attempt::Cut(why)) => {
                        log::warn!("attempt {round} of {attempts}: {why}");
                        last = why;
                        // Resumed at the same mirror in the next round.
                        break;
                    }
                }
            }
            if not_found.iter().all(|&missing| missing) {
                return Err(FetchError::NotFound);
            }
            if round < attempts {
                thread::sleep(pause);
                pause = pause.saturating_mul(2);
            }
        }
        Err(FetchError::Failed(format!(
            "{last} (gave up on {} after {attempts} attempts)",
            urls.join(", ")
        )))
    }

    /// The order to try the mirrors in: `first` if it is up, then the others
    /// that are up, then the ones that are down, each in configured order.
    fn order(&self, first: Option<usize>) -> Vec<usize> {
        let now = Instant::now();
        let down = self.down_until.lock();
        let is_down = |i: usize| down[i].is_some_and(|until| until > now);
        let mut order: Vec<usize> = first.filter(|&i| !is_down(i)).into_iter().collect();
        order.extend((0..self.list.len()).filter(|&i| !is_down(i) && Some(i) != first));
        order.extend((0..self.list.len()).filter(|&i| is_down(i)));
        order
    }
}

/// A small body (a manifest) from `url`, tried `attempts` times with
/// pauses that double.
pub(super) fn get_with_retries(
    fetcher: &Fetcher,
    url: &str,
    limit: u64,
    attempts: u32,
    backoff: Duration,
) -> Result<Vec<u8>, FetchError> {
    let attempts = attempts.max(1);
    let mut pause = backoff;
    let mut number = 1;
    loop {
        match fetcher.get_small(url, limit) {
            Ok(body) => return Ok(body),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Down(why) | Attempt::Cut(why)) => {
                if number == attempts {
                    return Err(FetchError::Failed(format!(
                        "{why} (gave up on {url} after {attempts} attempts)"
                    )));
                }
                log::warn!("attempt {number} of {attempts}: {why}");
            }
        }
        thread::sleep(pause);
        pause = pause.saturating_mul(2);
        number += 1;
    }
}

/// The templates of `param` for each of the `archives` mirrors: none, one
/// for all, or one per mirror.
fn paired(
    param: &str,
    templates: Option<&str>,
    archives: &[&str],
) -> Result<Vec<Option<String>>, CacheError> {
    check_paired(param, templates, archives.len()).map_err(CacheError::new)?;
    let list: Vec<&str> = templates.map_or(Vec::new(), |t| t.split_whitespace().collect());
    Ok(match list.as_slice() {
        [] => vec![None; archives.len()],
        [one] => vec![Some(one.to_string()); archives.len()],
        each => each.iter().map(|t| Some(t.to_string())).collect(),
    })
}

/// Checks that `param` (`upstream checksum` or `upstream contents`) gives
/// no template, one for every mirror, or one per mirror in the same order.
pub fn check_paired(param: &str, templates: Option<&str>, mirrors: usize) -> Result<(), String> {
    let count = templates.map_or(0, |t| t.split_whitespace().count());
    // Without an upstream the templates are not used.
    if count <= 1 || count == mirrors || mirrors == 0 {
        return Ok(());
    }
    Err(format!(
        "`{param}` lists {count} templates but `upstream` lists {mirrors} mirrors: give one for all, or one per mirror in the same order"
    ))
}
