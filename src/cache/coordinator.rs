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

use super::handle::Evicted;
use super::job::{self, JobEvent, Prepared, Progress, Stage};
use super::shared::{Downloads, Occasion, Shared};
use super::store;
use super::CacheError;

pub(super) enum Request {
    Fetch {
        name: String,
        /// The inode of a tree to delete first: its table is unusable.
        replace: Option<u64>,
        reply: Sender<Event>,
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
    Progress(Progress),
    Installed,
    Failed(CacheError),
}

/// One download and its waiters.
struct Job {
    name: String,
    waiters: Vec<Sender<Event>>,
    last: Option<Progress>,
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
                replace,
                reply,
            } => {
                let store = &self.inner.store;
                // Only the very tree found unusable: another request may
                // have replaced it meanwhile.
                if replace.is_some()
                    && store.build_ino(&name) == replace
                    && !self.inner.remove(&name)
                {
                    let _ = reply.send(Event::Failed(CacheError::new(format!(
                        "build {name} cannot be served: its metadata table is unusable and the build is in use"
                    ))));
                    return;
                }
                self.fetch(name, reply)
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

    fn fetch(&mut self, name: String, reply: Sender<Event>) {
        if let Some(job) = self.running.as_mut().filter(|job| job.name == name) {
            if let Some(progress) = &job.last {
                let _ = reply.send(Event::Progress(progress.clone()));
            }
            job.waiters.push(reply);
            return;
        }
        if let Some(job) = self.queue.iter_mut().find(|job| job.name == name) {
            let _ = reply.send(Event::Progress(queued(&name)));
            job.waiters.push(reply);
            return;
        }
        if self.inner.store.is_build(&name) {
            let _ = reply.send(Event::Installed);
            return;
        }
        if self.running.is_some() {
            // Said at once, or the client would wait without a word for as
            // long as the other download takes.
            let _ = reply.send(Event::Progress(queued(&name)));
        }
        self.queue.push_back(Job {
            name,
            waiters: vec![reply],
            last: None,
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
        let spawned = thread::Builder::new()
            .name(format!("fetch-{name}"))
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| job::run(&inner, &name, &events)))
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

    fn job_event(&mut self, event: JobEvent) {
        match event {
            JobEvent::Progress(progress) => {
                if let Some(job) = self.running.as_mut() {
                    job.waiters
                        .retain(|w| w.send(Event::Progress(progress.clone())).is_ok());
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
