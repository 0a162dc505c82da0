//! `auth users` and `secrets file`: rsyncd's challenge-response login
//! (rsync: authenticate.c auth_server, rsync: compat.c negotiate_daemon_auth).
//!
//! The digest: both sides announce the digests they know in their greeting
//! lines, and each picks the strongest one the other announced, so both
//! land on the same one. upserv announces [`OFFERED_DIGESTS`]; rsync 3.2 and
//! later then use sha512. A client whose greeting carries no list (before
//! rsync 3.2) uses MD4 over four zero bytes, the password and the challenge,
//! as protocol 29 always did.
//!
//! The rules: `auth users` entries are tried in order, each a user name
//! pattern or an `@group` pattern (the user's groups in the system's user
//! database), optionally followed by `:deny`, `:ro` or `:rw`; the first one
//! that matches decides. `:deny` refuses; anything else lets the password
//! decide (upserv is read-only for everyone, so `:ro` and `:rw` change
//! nothing). The password is the one of the user's line `user:secret` in the
//! secrets file, or of the matched group's line `@group:secret`. With
//! `strict modes` (the default) a secrets file that others may read or
//! write is refused, and so is one not owned by root when upserv runs as
//! root; a symlink owned by someone else is never followed.
//!
//! Must not read from or write to the connection: the session does that.

use crate::config::ModuleParams;
use crate::protocol::wildmatch::wildmatch;
use crate::sys::{euid, groups_of};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The largest secrets file read; a bigger one is refused.
pub(crate) const MAX_SECRETS_FILE_LEN: u64 = 1 << 20;
/// Random bytes in a challenge (22 characters once encoded).
const CHALLENGE_BYTES: usize = 16;

/// A challenge-response digest. The order is rsync's, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha512,
    Sha256,
    Md5,
    Md4,
    /// MD4 seeded with four zero bytes: protocols before 30 without a list.
    Md4Old,
}

/// What upserv announces in its greeting, strongest first.
pub(crate) const OFFERED_DIGESTS: [Digest; 4] =
    [Digest::Sha512, Digest::Sha256, Digest::Md5, Digest::Md4];

/// rsync's auth digests, strongest first, for the `auth digest` floor.
const RSYNC_STRENGTH_ORDER: [&str; 5] = ["sha512", "sha256", "sha1", "md5", "md4"];

impl Digest {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Digest::Sha512 => "sha512",
            Digest::Sha256 => "sha256",
            Digest::Md5 => "md5",
            Digest::Md4 | Digest::Md4Old => "md4",
        }
    }

    fn from_name(name: &str) -> Option<Digest> {
        OFFERED_DIGESTS.into_iter().find(|d| d.name() == name)
    }

    /// The digest list of the greeting line: `sha512 sha256 md5 md4`.
    pub(crate) fn offered_list() -> String {
        OFFERED_DIGESTS.map(Digest::name).join(" ")
    }

    /// The digest both sides pick given the list in the client's greeting
    /// (`None` when it sent none); `None` when nothing is in common.
    pub(crate) fn negotiate(client_list: Option<&str>) -> Option<Digest> {
        let Some(list) = client_list else {
            return Some(Digest::Md4Old);
        };
        let offered: Vec<Digest> = list
            .split_whitespace()
            .filter_map(Digest::from_name)
            .collect();
        OFFERED_DIGESTS.into_iter().find(|d| offered.contains(d))
    }

    /// Whether this digest is at least as strong as `floor` (a name from
    /// the `auth digest` parameter).
    pub(crate) fn meets(self, floor: &str) -> bool {
        let rank = |name: &str| RSYNC_STRENGTH_ORDER.iter().position(|n| *n == name);
        match (rank(self.name()), rank(floor)) {
            (Some(got), Some(need)) => got <= need,
            _ => false,
        }
    }

    /// The response a client sends for `password` and `challenge`.
    pub(crate) fn response(self, password: &[u8], challenge: &[u8]) -> String {
        let hash = match self {
            Digest::Sha512 => digest_of::<sha2::Sha512>(&[password, challenge]),
            Digest::Sha256 => digest_of::<sha2::Sha256>(&[password, challenge]),
            Digest::Md5 => digest_of::<md5::Md5>(&[password, challenge]),
            Digest::Md4 => digest_of::<md4::Md4>(&[password, challenge]),
            // Protocols before 30 without a digest list: four zero bytes first.
            Digest::Md4Old => digest_of::<md4::Md4>(&[&[0u8; 4], password, challenge]),
        };
        base64_unpadded(&hash)
    }
}

/// The digest of the concatenated `parts`.
fn digest_of<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// Standard base64 without `=` padding, as rsync writes digests.
pub(crate) fn base64_unpadded(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A fresh challenge: random bytes from the kernel, base64-encoded.
pub(crate) fn new_challenge() -> io::Result<String> {
    let mut buf = [0u8; CHALLENGE_BYTES];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: getrandom writes at most the given length into our buffer.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        got += n as usize;
    }
    Ok(base64_unpadded(&buf))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The password decides (no suffix, `:ro`, `:rw`, or an unknown one).
    Password,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    pattern: Vec<u8>,
    group: bool,
    verdict: Verdict,
}

impl Rule {
    /// `name`, `@group`, each with an optional `:deny`/`:ro`/`:rw`; like
    /// rsyncd, the suffix starts at the first colon and only its first
    /// letters count.
    fn parse(entry: &str) -> Rule {
        let (name, suffix) = match entry.split_once(':') {
            Some((name, suffix)) => (name, Some(suffix.to_ascii_lowercase())),
            None => (entry, None),
        };
        let verdict = match suffix {
            Some(s) if s.starts_with('d') => Verdict::Deny,
            _ => Verdict::Password,
        };
        match name.strip_prefix('@') {
            Some(group) => Rule {
                pattern: group.as_bytes().to_vec(),
                group: true,
                verdict,
            },
            None => Rule {
                pattern: name.as_bytes().to_vec(),
                group: false,
                verdict,
            },
        }
    }
}

/// A module's login rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthRules {
    rules: Vec<Rule>,
    secrets_file: Option<PathBuf>,
    strict_modes: bool,
    /// The weakest digest accepted (`auth digest`).
    floor: Option<String>,
}

/// Why a login failed, for the log; the client only learns that it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure(pub String);

impl AuthRules {
    /// The module's rules; `None` when `auth users` is empty (anyone may
    /// connect without a password).
    pub(crate) fn from_params(p: &ModuleParams) -> Option<AuthRules> {
        if p.auth_users.is_empty() {
            return None;
        }
        Some(AuthRules {
            rules: p.auth_users.iter().map(|e| Rule::parse(e)).collect(),
            secrets_file: p.secrets_file.clone(),
            strict_modes: p.strict_modes,
            floor: p.auth_digest.clone(),
        })
    }

    /// Refuses a negotiated digest weaker than `auth digest`.
    pub(crate) fn check_digest(&self, digest: Digest) -> Result<(), Failure> {
        match &self.floor {
            Some(floor) if !digest.meets(floor) => Err(Failure(format!(
                "negotiated auth digest {} is weaker than the required `auth digest = {floor}`",
                digest.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Checks the client's response line `user response` to `challenge`.
    /// Returns the user name, or the user (when known) and why not.
    pub(crate) fn verify(
        &self,
        digest: Digest,
        challenge: &str,
        line: &[u8],
    ) -> Result<String, (String, Failure)> {
        let Some(space) = line.iter().position(|&b| b == b' ') else {
            return Err((String::new(), Failure("invalid challenge response".into())));
        };
        let (user, response) = (&line[..space], &line[space + 1..]);
        let name = String::from_utf8_lossy(user).into_owned();
        self.verify_user(digest, challenge, user, response)
            .map(|()| name.clone())
            .map_err(|f| (name, f))
    }

    fn verify_user(
        &self,
        digest: Digest,
        challenge: &str,
        user: &[u8],
        response: &[u8],
    ) -> Result<(), Failure> {
        let mut groups: Option<Vec<Vec<u8>>> = None;
        for rule in &self.rules {
            let matched_group = if rule.group {
                let groups = groups.get_or_insert_with(|| groups_of(user));
                match groups.iter().find(|g| wildmatch(&rule.pattern, g)) {
                    Some(g) => Some(g.clone()),
                    None => continue,
                }
            } else if wildmatch(&rule.pattern, user) {
                None
            } else {
                continue;
            };
            if rule.verdict == Verdict::Deny {
                return Err(Failure("denied by rule".into()));
            }
            let secrets = self.read_secrets()?;
            let wanted = Wanted {
                user,
                group: matched_group.as_deref(),
                digest,
                challenge: challenge.as_bytes(),
                response,
            };
            return check_secret(&secrets, wanted);
        }
        Err(Failure("no matching rule".into()))
    }

    /// The secrets file's text, after the checks `strict modes` asks for.
    fn read_secrets(&self) -> Result<Vec<u8>, Failure> {
        let Some(path) = &self.secrets_file else {
            return Err(Failure("no secrets file".into()));
        };
        read_secrets_file(path, self.strict_modes).map_err(Failure)
    }
}

/// What a secrets-file line must match.
struct Wanted<'a> {
    user: &'a [u8],
    group: Option<&'a [u8]>,
    digest: Digest,
    challenge: &'a [u8],
    response: &'a [u8],
}

/// Finds the user's (or the group's) line and compares the response. Each
/// name is tried on its first line only, as rsyncd does.
fn check_secret(secrets: &[u8], w: Wanted) -> Result<(), Failure> {
    if w.user.first() == Some(&b'#') {
        return Err(Failure("invalid username".into()));
    }
    let mut user = Some(w.user);
    let mut group = w.group;
    let mut outcome = Failure("secret not found".into());
    for raw in secrets.split(|&b| b == b'\n') {
        if user.is_none() && group.is_none() {
            break;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (slot, rest) = match line.strip_prefix(b"@") {
            Some(rest) => (&mut group, rest),
            None => (&mut user, line),
        };
        let Some(name) = *slot else { continue };
        let Some(secret) = rest.strip_prefix(name).and_then(|r| r.strip_prefix(b":")) else {
            continue;
        };
        let expected = w.digest.response(secret, w.challenge);
        if constant_time_eq(expected.as_bytes(), w.response) {
            return Ok(());
        }
        outcome = Failure("password mismatch".into());
        *slot = None;
    }
    Err(outcome)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the secrets file, refusing what rsyncd's strict modes refuse.
pub(crate) fn read_secrets_file(path: &Path, strict: bool) -> Result<Vec<u8>, String> {
    let link = std::fs::symlink_metadata(path)
        .map_err(|e| format!("no secrets file ({}: {e})", path.display()))?;
    if link.file_type().is_symlink() && link.uid() != 0 && link.uid() != euid() {
        return Err(format!(
            "no secrets file ({} is a symlink owned by uid {})",
            path.display(),
            link.uid()
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| format!("no secrets file ({}: {e})", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("no secrets file ({}: {e})", path.display()))?;
    if strict && meta.mode() & 0o006 != 0 {
        return Err(format!(
            "ignoring secrets file: {} must not be other-accessible (see strict modes)",
            path.display()
        ));
    }
    if strict && euid() == 0 && meta.uid() != 0 {
        return Err(format!(
            "ignoring secrets file: {} must be owned by root when running as root (see strict modes)",
            path.display()
        ));
    }
    if meta.len() > MAX_SECRETS_FILE_LEN {
        return Err(format!(
            "ignoring secrets file: {} is larger than {MAX_SECRETS_FILE_LEN} bytes",
            path.display()
        ));
    }
    let mut text = Vec::new();
    file.take(MAX_SECRETS_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn base64_matches_the_rfc_examples_without_padding() {
        // RFC 4648 section 10, with the padding removed.
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foob"), "Zm9vYg");
        assert_eq!(base64_unpadded(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn responses_are_the_digest_of_password_then_challenge() {
        // MD5("abc") and SHA-256("abc") from RFC 1321 and FIPS 180-2,
        // split between password and challenge, in base64 without padding.
        let md5_abc = [
            0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
            0x7f, 0x72,
        ];
        assert_eq!(Digest::Md5.response(b"a", b"bc"), base64_unpadded(&md5_abc));
        let sha256_abc = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0";
        assert_eq!(Digest::Sha256.response(b"ab", b"c"), sha256_abc);
        // MD4("abc") from RFC 1320.
        let md4_abc = [
            0xa4, 0x48, 0x01, 0x7a, 0xaf, 0x21, 0xd8, 0x52, 0x5f, 0xc1, 0x0a, 0xe8, 0x7a, 0xa6,
            0x72, 0x9d,
        ];
        assert_eq!(Digest::Md4.response(b"abc", b""), base64_unpadded(&md4_abc));
        assert_ne!(
            Digest::Md4Old.response(b"abc", b""),
            Digest::Md4.response(b"abc", b"")
        );
        assert_eq!(
            Digest::Md4Old.response(b"abc", b""),
            Digest::Md4.response(b"\0\0\0\0abc", b"")
        );
    }

    #[test]
    fn negotiation_picks_the_strongest_common_digest() {
        let full = "sha512 sha256 sha1 md5 md4";
        assert_eq!(Digest::negotiate(Some(full)), Some(Digest::Sha512));
        assert_eq!(Digest::negotiate(Some("md4 md5")), Some(Digest::Md5));
        assert_eq!(Digest::negotiate(Some("sha1 md4")), Some(Digest::Md4));
        assert_eq!(Digest::negotiate(Some("sha1 xxh")), None);
        assert_eq!(Digest::negotiate(None), Some(Digest::Md4Old));
        assert_eq!(Digest::offered_list(), "sha512 sha256 md5 md4");
    }

    #[test]
    fn the_digest_floor_uses_rsyncs_order() {
        assert!(Digest::Sha512.meets("sha256"));
        assert!(Digest::Md5.meets("md5"));
        assert!(!Digest::Md5.meets("sha1"));
        assert!(!Digest::Md4Old.meets("md5"));
        assert!(!Digest::Sha512.meets("whirlpool"));
    }

    fn rules(users: &[&str], secrets: &Path) -> AuthRules {
        let params = ModuleParams {
            auth_users: users.iter().map(|s| s.to_string()).collect(),
            secrets_file: Some(secrets.to_path_buf()),
            ..ModuleParams::default()
        };
        AuthRules::from_params(&params).unwrap()
    }

    fn secrets(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn answer(user: &str, password: &str, challenge: &str) -> Vec<u8> {
        let r = Digest::Md5.response(password.as_bytes(), challenge.as_bytes());
        format!("{user} {r}").into_bytes()
    }

    #[test]
    fn users_rules_and_passwords() {
        let (_dir, path) = secrets("#comment\nalice:wonder\r\nbob:builder\nbob:other\n", 0o600);
        let r = rules(&["alice", "bob", "eve:deny", "b*:deny"], &path);
        let c = "Y2hhbGxlbmdl";
        let ok = r.verify(Digest::Md5, c, &answer("alice", "wonder", c));
        assert_eq!(ok, Ok("alice".to_string()));
        assert!(r
            .verify(Digest::Md5, c, &answer("bob", "builder", c))
            .is_ok());
        // Only the first line of a user counts.
        let second = r.verify(Digest::Md5, c, &answer("bob", "other", c));
        assert_eq!(second.unwrap_err().1, Failure("password mismatch".into()));
        let wrong = r.verify(Digest::Md5, c, &answer("alice", "nope", c));
        assert_eq!(wrong.unwrap_err().1, Failure("password mismatch".into()));
        let denied = r.verify(Digest::Md5, c, &answer("eve", "x", c));
        assert_eq!(denied.unwrap_err().1, Failure("denied by rule".into()));
        let glob = r.verify(Digest::Md5, c, &answer("bert", "x", c));
        assert_eq!(glob.unwrap_err().1, Failure("denied by rule".into()));
        let stranger = r.verify(Digest::Md5, c, &answer("zed", "x", c));
        assert_eq!(stranger.unwrap_err().1, Failure("no matching rule".into()));
        let garbage = r.verify(Digest::Md5, c, b"nospace");
        assert_eq!(
            garbage.unwrap_err().1,
            Failure("invalid challenge response".into())
        );
        // The response is for this challenge only.
        let replay = r.verify(Digest::Md5, "b3RoZXI", &answer("alice", "wonder", c));
        assert!(replay.is_err());
    }

    #[test]
    fn a_comment_line_is_never_a_user() {
        let (_dir, path) = secrets("#x:pw\n", 0o600);
        let r = rules(&["*"], &path);
        let c = "abc";
        let got = r.verify(Digest::Md5, c, &answer("#x", "pw", c));
        assert_eq!(got.unwrap_err().1, Failure("invalid username".into()));
    }

    #[test]
    fn strict_modes_refuse_a_file_others_can_read() {
        let (_dir, path) = secrets("alice:wonder\n", 0o644);
        let r = rules(&["alice"], &path);
        let c = "abc";
        let got = r.verify(Digest::Md5, c, &answer("alice", "wonder", c));
        assert!(got.unwrap_err().1 .0.contains("other-accessible"));
        let mut lax = r.clone();
        lax.strict_modes = false;
        assert!(lax
            .verify(Digest::Md5, c, &answer("alice", "wonder", c))
            .is_ok());
    }

    #[test]
    fn group_rules_use_the_system_groups_and_group_secrets() {
        // root is in group root (gid 0) on every Linux system.
        let root_group = crate::sys::group_name(0).unwrap();
        let group = String::from_utf8(root_group).unwrap();
        let (_dir, path) = secrets(&format!("@{group}:groupsecret\n"), 0o600);
        let r = rules(&[&format!("@{group}")], &path);
        let c = "abc";
        assert!(r
            .verify(Digest::Md5, c, &answer("root", "groupsecret", c))
            .is_ok());
        let nobody = r.verify(Digest::Md5, c, &answer("no-such-user-x", "groupsecret", c));
        assert_eq!(nobody.unwrap_err().1, Failure("no matching rule".into()));
        let deny = rules(&[&format!("@{group}:deny"), "root"], &path);
        let got = deny.verify(Digest::Md5, c, &answer("root", "groupsecret", c));
        assert_eq!(got.unwrap_err().1, Failure("denied by rule".into()));
    }

    #[test]
    fn a_weak_digest_is_refused_below_the_floor() {
        let (_dir, path) = secrets("alice:wonder\n", 0o600);
        let mut r = rules(&["alice"], &path);
        r.floor = Some("sha256".into());
        assert!(r.check_digest(Digest::Sha512).is_ok());
        assert!(r.check_digest(Digest::Md5).is_err());
    }

    #[test]
    fn challenges_differ() {
        let a = new_challenge().unwrap();
        let b = new_challenge().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
    }
}
