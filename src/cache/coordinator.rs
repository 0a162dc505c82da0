//! The coordinator: the one thread that starts downloads, publishes builds
//! and evicts them, reached through a crossbeam channel.
//!
//! It runs one download at a time, on a job thread of its own, so it stays
//! free to add waiters, answer for other builds and run `gc` meanwhile; every
//! waiter of a build shares its single download. When the job has a tree
//! ready, the coordinator publishes it by renaming, then evicts with the new
//! build exempt. Across processes the install lock held by the job (see
//! `store`) keeps the same one-at-a-time rule.
//!
//! This module must not parse archives, speak HTTP or know about rsync.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use super::job::{self, JobEvent};
use super::shared::{Downloads, Occasion, Shared};
use super::stats::{DownloadView, Lookup, RateBase};
use super::store;
use super::types::{Evicted, Prepared, Progress, Stage};
use super::CacheError;

pub(super) enum Request {
    Fetch {
        name: String,
        /// Download even when cached, and replace the cached tree once the
        /// new one is complete (`upserv refetch`).
        refetch: bool,
        /// The inode of a tree to delete first: its table is unusable.
        unusable: Option<u64>,
        reply: Sender<Event>,
    },
    /// Remove one idle, unpinned build now.
    Evict {
        name: String,
        reply: Sender<Result<Evicted, CacheError>>,
    },
    Gc {
        dry_run: bool,
        reply: Sender<Result<Vec<Evicted>, CacheError>>,
    },
    /// A connection stopped serving a build; `done`, when given, hears
    /// when any eviction that follows is over.
    Released { done: Option<Sender<()>> },
}

/// What a waiting acquire hears from the coordinator.
pub(super) enum Event {
    /// The first event of a fetch that did not find the build installed:
    /// whether it started the download or joined one.
    Lookup(Lookup),
    Progress(Progress),
    Installed,
    Failed(CacheError),
}

/// One download and its waiters.
struct Job {
    name: String,
    /// See [`Request::Fetch`].
    refetch: bool,
    waiters: Vec<Sender<Event>>,
    last: Option<Progress>,
    /// Where the download stood when this process first heard of its bytes.
    rate_base: Option<RateBase>,
}

impl Job {
    fn view(&self) -> DownloadView {
        let (stage, done, total) = match &self.last {
            Some(p) => (p.stage.name(), p.done, p.total),
            None => (Stage::Queued.name(), 0, None),
        };
        DownloadView {
            name: self.name.clone(),
            stage,
            done,
            total,
            rate: match (&self.rate_base, stage == Stage::Downloading.name()) {
                (Some(base), true) => base.rate(done),
                _ => 0.0,
            },
            waiters: self.waiters.len(),
        }
    }
}

pub(super) struct Coordinator {
    inner: Arc<Shared>,
    requests: Receiver<Request>,
    events: Receiver<JobEvent>,
    events_tx: Sender<JobEvent>,
    running: Option<Job>,
    queue: VecDeque<Job>,
}

impl Coordinator {
    pub(super) fn new(inner: Arc<Shared>, requests: Receiver<Request>) -> Coordinator {
        let (events_tx, events) = unbounded();
        Coordinator {
            inner,
            requests,
            events,
            events_tx,
            running: None,
            queue: VecDeque::new(),
        }
    }

    /// Serves requests until every [`Cache`] handle is gone and no job runs.
    pub(super) fn run(mut self) {
        loop {
            select! {
                recv(self.requests) -> request => match request {
                    Ok(request) => self.handle(request),
                    Err(_) => break,
                },
                recv(self.events) -> event => {
                    if let Ok(event) = event {
                        self.job_event(event);
                    }
                }
            }
        }
        while self.running.is_some() {
            match self.events.recv() {
                Ok(event) => self.job_event(event),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Fetch {
                name,
                refetch,
                unusable,
                reply,
            } => {
                let store = &self.inner.store;
                // Only the very tree found unusable: another request may
                // have replaced it meanwhile.
                if unusable.is_some()
                    && store.build_ino(&name) == unusable
                    && !self.inner.remove(&name)
                {
                    let _ = reply.send(Event::Failed(CacheError::new(format!(
                        "build {name} cannot be served: its metadata table is unusable and the build is in use"
                    ))));
                    return;
                }
                self.fetch(name, refetch, reply);
                self.publish_downloads();
            }
            Request::Evict { name, reply } => {
                let _ = reply.send(self.inner.evict_one(&name));
            }
            Request::Gc { dry_run, reply } => {
                let (downloads, _lock) = self.inner.active_downloads();
                // A dropped reply only means the asker went away.
                let _ = reply.send(self.inner.evict(Occasion::Gc { dry_run }, &downloads));
            }
            Request::Released { done } => {
                // After a burst every build was busy at its install; the
                // budget is restored as they are released. Cheap otherwise:
                // one flag (and in serve mode one stat).
                if self.inner.over_budget_while_busy() {
                    let (downloads, _lock) = self.inner.active_downloads();
                    if let Err(e) = self.inner.evict(Occasion::Release, &downloads) {
                        log::error!("eviction after a release: {e}");
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    fn fetch(&mut self, name: String, refetch: bool, reply: Sender<Event>) {
        if let Some(job) = self.running.as_mut().filter(|job| job.name == name) {
            let _ = reply.send(Event::Lookup(Lookup::Wait));
            if let Some(progress) = &job.last {
                let _ = reply.send(Event::Progress(progress.clone()));
            }
            job.waiters.push(reply);
            return;
        }
        if let Some(job) = self.queue.iter_mut().find(|job| job.name == name) {
            let _ = reply.send(Event::Lookup(Lookup::Wait));
            let _ = reply.send(Event::Progress(queued(&name)));
            job.waiters.push(reply);
            return;
        }
        if !refetch && self.inner.store.is_build(&name) {
            let _ = reply.send(Event::Installed);
            return;
        }
        let _ = reply.send(Event::Lookup(Lookup::Miss));
        if self.running.is_some() {
            // Said at once, or the client would wait without a word for as
            // long as the other download takes.
            let _ = reply.send(Event::Progress(queued(&name)));
        }
        self.queue.push_back(Job {
            name,
            refetch,
            waiters: vec![reply],
            last: None,
            rate_base: None,
        });
        self.start_next();
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let events = self.events_tx.clone();
        let name = job.name.clone();
        let refetch = job.refetch;
        let spawned = thread::Builder::new()
            .name(format!("fetch-{name}"))
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    job::run(&inner, &name, refetch, &events)
                }))
                .unwrap_or_else(|_| {
                    Err(CacheError::new(format!(
                        "fetching {name} failed: internal error"
                    )))
                });
                let _ = events.send(JobEvent::Finished(outcome));
            });
        match spawned {
            Ok(_) => self.running = Some(job),
            Err(e) => {
                let error = CacheError::new(format!("cannot start a download: {e}"));
                for waiter in job.waiters {
                    let _ = waiter.send(Event::Failed(error.clone()));
                }
            }
        }
    }

    /// Tells the cache's stats which downloads run and wait, and how far.
    fn publish_downloads(&self) {
        let views = self.running.iter().chain(&self.queue).map(Job::view);
        self.inner.stats.set_downloads(views.collect());
    }

    fn job_event(&mut self, event: JobEvent) {
        self.job_event_inner(event);
        self.publish_downloads();
    }

    fn job_event_inner(&mut self, event: JobEvent) {
        match event {
            JobEvent::Progress(progress) => {
                if let Some(job) = self.running.as_mut() {
                    job.waiters
                        .retain(|w| w.send(Event::Progress(progress.clone())).is_ok());
                    if progress.stage == Stage::Downloading && job.rate_base.is_none() {
                        job.rate_base = Some(RateBase {
                            at: std::time::Instant::now(),
                            done: progress.done,
                        });
                    }
                    job.last = Some(progress);
                }
            }
            JobEvent::Finished(outcome) => {
                let Some(job) = self.running.take() else {
                    return;
                };
                let result = match outcome {
                    Ok(Some(prepared)) => self.install(prepared),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                for waiter in job.waiters {
                    let _ = waiter.send(match &result {
                        Ok(()) => Event::Installed,
                        Err(e) => Event::Failed(e.clone()),
                    });
                }
                self.start_next();
            }
        }
    }

    /// Publishes, then evicts with the new build exempt; the install lock in
    /// `prepared` is held until both are done.
    fn install(&self, prepared: Prepared) -> Result<(), CacheError> {
        let published = self.inner.publish(&prepared);
        if let Err(e) = store::remove_tree(&prepared.scratch) {
            log::warn!("{e}");
        }
        published?;
        // The job's install lock is still held: no download runs anywhere.
        if let Err(e) = self
            .inner
            .evict(Occasion::Install(&prepared.name), &Downloads::Idle)
        {
            log::error!("eviction after installing {}: {e}", prepared.name);
        }
        Ok(())
    }
}

/// What a build waiting behind another download tells its clients.
fn queued(name: &str) -> Progress {
    Progress {
        name: name.to_string(),
        stage: Stage::Queued,
        done: 0,
        total: None,
    }
}
