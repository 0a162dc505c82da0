//! The lists of an incremental pull on their way out: after the first
//! list, the next directories' lists are sent while the client works, far
//! enough ahead that it never waits, no further (rsync: sender.c send_files
//! calls flist.c send_extra_file_list before each request it reads).
//!
//! Each list goes out as `NDX_FLIST_OFFSET - dir_ndx` and the entries; the
//! last is followed by `NDX_FLIST_EOF`. The lists sent stay in the
//! [`Window`] until the client says it is done with them.

use super::shared::PullShare;
use super::{Builder, DirWalk, Encoder, FileList, Window};
use crate::protocol::filter::Filters;
use crate::protocol::io::{Conn, MsgTag};
use crate::protocol::ndx::NdxCodec;
use crate::protocol::options::Options;
use crate::source::Source;
use std::io;
use std::sync::Arc;

/// A list's number on the wire is this minus its directory's number.
const NDX_FLIST_OFFSET: i32 = -101;
/// No more lists follow.
const NDX_FLIST_EOF: i32 = -2;
/// How many entries the sender keeps ahead of the list the client is
/// working in, before it reads the client's next request (rsync's
/// MIN_FILECNT_LOOKAHEAD). This, with the lists the client has not
/// finished, is what bounds the entries held.
pub(crate) const LOOKAHEAD_ENTRIES: usize = 1000;

/// How far ahead the sender goes while the client has nothing to say
/// (rsync's MAX_FILECNT_LOOKAHEAD: io.c sends lists while it waits).
pub(crate) const IDLE_LOOKAHEAD_ENTRIES: usize = 10_000;

/// What building each list needs.
pub(crate) struct ListSource<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) protocol: u32,
    pub(crate) source: &'a Source,
    pub(crate) module: &'a str,
    pub(crate) filters: Filters,
    /// For builds: the lists shared between connections.
    pub(crate) share: Option<&'a PullShare>,
}

/// The lists in flight and, with incremental recursion, those to come.
pub(crate) struct Feed<'a> {
    pub(crate) window: Window,
    more: Option<More<'a>>,
}

/// What sending the lists still to come takes.
struct More<'a> {
    from: ListSource<'a>,
    walk: DirWalk,
    encoder: Encoder<'a>,
    /// Every I/O error met so far: a list that met one ends with them all
    /// (rsync keeps one io_error for the pull).
    io_error: i32,
    eof: bool,
}

impl<'a> Feed<'a> {
    /// The whole list, sent and sorted: indices from 0, nothing to come.
    pub(crate) fn whole(list: Arc<FileList>) -> Feed<'a> {
        let mut window = Window::new(0);
        window.push(list, false);
        Feed { window, more: None }
    }

    /// Takes over after the first list of an incremental pull, sorted, has
    /// been sent with `encoder`; `walk` was started from it. Sends what
    /// must follow it at once: `NDX_FLIST_EOF` when no directory has a
    /// list to come, or more lists while the first holds the only entry
    /// (the client needs one more to tell a one-file pull; rsync: flist.c
    /// send_file_list).
    pub(crate) fn incremental(
        from: ListSource<'a>,
        walk: DirWalk,
        encoder: Encoder<'a>,
        first: Arc<FileList>,
        conn: &mut Conn,
        ndx_out: &mut NdxCodec,
    ) -> io::Result<Feed<'a>> {
        let mut window = Window::new(1);
        let io_error = first.io_error;
        let one_entry = first.len() == 1;
        let has_dir = DirWalk::first_has_parent(&first);
        window.push(first, has_dir);
        let mut feed = Feed {
            window,
            more: Some(More {
                from,
                walk,
                encoder,
                io_error,
                eof: false,
            }),
        };
        if let Some(more) = &mut feed.more {
            if more.walk.is_finished() {
                more.send_next(&mut feed.window, conn, ndx_out)?;
            }
            while one_entry && !more.eof && feed.window.ahead() == 0 {
                more.send_next(&mut feed.window, conn, ndx_out)?;
            }
        }
        Ok(feed)
    }

    /// Sends lists until [`LOOKAHEAD_ENTRIES`] entries lie ahead of the
    /// client's current list, and on up to [`IDLE_LOOKAHEAD_ENTRIES`]
    /// while the client has sent nothing, or until none are left. Lists
    /// that arrive early let the client's generator run ahead of its
    /// receiver as far as with rsyncd.
    pub(crate) fn fill(&mut self, conn: &mut Conn, ndx_out: &mut NdxCodec) -> io::Result<()> {
        if let Some(more) = &mut self.more {
            while !more.eof {
                let ahead = self.window.ahead();
                let idle = ahead < IDLE_LOOKAHEAD_ENTRIES && !conn.input_waiting();
                if ahead >= LOOKAHEAD_ENTRIES && !idle {
                    break;
                }
                more.send_next(&mut self.window, conn, ndx_out)?;
            }
        }
        Ok(())
    }

    /// The client's `NDX_DONE`. With incremental recursion the client says
    /// it for each list, oldest first: the list is dropped, and `true`
    /// means others remain, so this one did not end a phase (rsync:
    /// sender.c send_files).
    pub(crate) fn list_done(&mut self) -> bool {
        self.more.is_some() && !self.window.is_empty() && self.window.done()
    }
}

impl More<'_> {
    fn send_next(
        &mut self,
        window: &mut Window,
        conn: &mut Conn,
        ndx_out: &mut NdxCodec,
    ) -> io::Result<()> {
        let from = &mut self.from;
        let builder = Builder::new(
            from.opts,
            from.protocol,
            from.source,
            &mut from.filters,
            conn,
            from.module,
        )
        .incremental()
        .sharing(from.share);
        let Some(sub) = self.walk.next_list(builder)? else {
            ndx_out.write(conn, NDX_FLIST_EOF)?;
            self.eof = true;
            return Ok(());
        };
        ndx_out.write(conn, NDX_FLIST_OFFSET - sub.dir_ndx as i32)?;
        // A list that met an error ends with every error so far.
        let io_error = if sub.list.io_error != 0 {
            self.io_error |= sub.list.io_error;
            self.io_error
        } else {
            0
        };
        self.encoder.start_list(window.next_start());
        let io_error = self.encoder.send_list(conn, &sub.list, None, io_error)?;
        if io_error != 0 {
            conn.send_msg_bytes(MsgTag::IoError, &io_error.to_le_bytes())?;
        }
        window.push(sub.list, true);
        Ok(())
    }
}
