//! The system's user and group databases (passwd and group, through libc's
//! reentrant look-ups) and the process's own ids: what std does not offer.
//! Every other module asks here, so each look-up exists once, retries with
//! a larger buffer when a record does not fit, and keeps its unsafe code
//! in one place.

use std::ffi::{CStr, CString};

/// Groups looked up for one user at most.
pub(crate) const MAX_GROUPS: usize = 1024;
/// The largest buffer tried for one passwd or group record; a record
/// beyond it counts as missing.
pub(crate) const MAX_RECORD_BUF: usize = 1 << 16;
/// The first buffer tried: enough for nearly every record.
const FIRST_RECORD_BUF: usize = 1024;

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// One reentrant look-up (`getpwuid_r` and its kin): `call` fills the
/// record from the buffer it is given and returns the libc result code
/// and whether a record was found; `read` takes what is wanted from it. A
/// buffer too small (ERANGE) is grown up to [`MAX_RECORD_BUF`].
fn look_up<R: Copy, T>(
    call: impl Fn(&mut R, &mut [u8]) -> (libc::c_int, bool),
    read: impl Fn(&R) -> Option<T>,
) -> Option<T> {
    let mut buf = vec![0u8; FIRST_RECORD_BUF];
    loop {
        // SAFETY: passwd and group are plain C structs of integers and
        // pointers, for which all zeroes is a valid value.
        let mut record: R = unsafe { std::mem::zeroed() };
        let (rc, found) = call(&mut record, &mut buf);
        if rc == libc::ERANGE && buf.len() < MAX_RECORD_BUF {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return if rc == 0 && found {
            read(&record)
        } else {
            None
        };
    }
}

/// The bytes of a C string in a record, `None` for a null pointer.
///
/// SAFETY (for callers): `ptr` is null or points at a NUL-terminated
/// string that lives while the record's buffer does.
fn c_bytes(ptr: *const libc::c_char) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and NUL-terminated inside the buffer (see above).
    Some(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
}

/// The name of user `uid`, if the passwd database has one.
pub(crate) fn user_name(uid: u32) -> Option<Vec<u8>> {
    look_up(
        |pw: &mut libc::passwd, buf| {
            let mut result = std::ptr::null_mut();
            // SAFETY: getpwuid_r writes only into `pw` and into `buf`
            // within the length given.
            let rc = unsafe {
                libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), &mut result)
            };
            (rc, !result.is_null())
        },
        |pw| c_bytes(pw.pw_name),
    )
}

/// The name of group `gid`, if the group database has one.
pub(crate) fn group_name(gid: u32) -> Option<Vec<u8>> {
    look_up(
        |gr: &mut libc::group, buf| {
            let mut result = std::ptr::null_mut();
            // SAFETY: getgrgid_r writes only into `gr` and into `buf`
            // within the length given.
            let rc = unsafe {
                libc::getgrgid_r(gid, gr, buf.as_mut_ptr().cast(), buf.len(), &mut result)
            };
            (rc, !result.is_null())
        },
        |gr| c_bytes(gr.gr_name),
    )
}

/// The primary group of user `name`, if the passwd database knows it.
pub(crate) fn primary_gid(name: &CStr) -> Option<u32> {
    look_up(
        |pw: &mut libc::passwd, buf| {
            let mut result = std::ptr::null_mut();
            // SAFETY: getpwnam_r reads the NUL-terminated `name` and writes
            // only into `pw` and into `buf` within the length given.
            let rc = unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    pw,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            };
            (rc, !result.is_null())
        },
        |pw| Some(pw.pw_gid),
    )
}

/// The ids of all groups of user `name` (with `primary` among them); just
/// `primary` when the user has more than [`MAX_GROUPS`].
pub(crate) fn group_ids(name: &CStr, primary: u32) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut count = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: getgrouplist reads the NUL-terminated `name` and writes at
        // most `count` ids into `groups`, which holds that many.
        let rc =
            unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count.min(groups.len()));
            return groups;
        }
        if count <= groups.len() || count > MAX_GROUPS {
            return vec![primary];
        }
        groups.resize(count, 0);
    }
}

/// The names of the groups of user `name` (primary and others), empty when
/// there is no such user.
pub(crate) fn groups_of(name: &[u8]) -> Vec<Vec<u8>> {
    let Ok(name) = CString::new(name) else {
        return Vec::new();
    };
    let Some(primary) = primary_gid(&name) else {
        return Vec::new();
    };
    group_ids(&name, primary)
        .into_iter()
        .filter_map(group_name)
        .collect()
}

/// Becomes user `uid` of group `gid` alone: the group list, then the
/// group, then the user (only root may change groups). Names the call that
/// failed.
pub(crate) fn become_user(uid: u32, gid: u32) -> Result<(), (&'static str, std::io::Error)> {
    let last = |what| (what, std::io::Error::last_os_error());
    // SAFETY: setgroups reads one gid from a local.
    if unsafe { libc::setgroups(1, &gid) } != 0 {
        return Err(last("setgroups"));
    }
    // SAFETY: setgid and setuid take plain ids.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(last("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(last("setuid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_by_id_and_name() {
        assert_eq!(user_name(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(group_name(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(primary_gid(c"root"), Some(0));
        assert!(groups_of(b"root").contains(&b"root".to_vec()));
        assert!(groups_of(b"no-such-user-here").is_empty());
    }
}
