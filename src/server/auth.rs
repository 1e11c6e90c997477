//! Access control: Basic authentication against an htpasswd file (bcrypt),
//! grants of read or write on repository patterns, and anonymous reads.
//!
//! Without an htpasswd file the registry is open (as distribution is by
//! default; `ocidb serve` binds to 127.0.0.1 unless told otherwise). With
//! one, every request is checked before any repository is looked up, so a
//! client without a grant learns nothing about what exists.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, IoContext as _, Result};

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    Write,
}

#[derive(Debug)]
struct Grant {
    /// A user name, or `*` for every authenticated user.
    user: String,
    /// A repository pattern: `*` matches any run of characters.
    pattern: String,
    write: bool,
}

/// Who may do what.
#[derive(Debug)]
pub struct Access {
    users: HashMap<String, String>,
    /// `None`: every authenticated user may read and write everything.
    grants: Option<Vec<Grant>>,
    anonymous_read: bool,
    /// Authorization headers already verified (bcrypt is slow by design),
    /// bounded.
    verified: Mutex<HashMap<String, String>>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No or bad credentials: 401 with a challenge.
    Unauthenticated,
    /// Authenticated, without a grant: 403.
    Forbidden,
}

const MAX_CACHED: usize = 1024;

impl Access {
    /// Loads an htpasswd file (`user:bcrypt-hash` lines) and, when given,
    /// an access file (`USER PATTERN read|write` lines; `#` comments).
    pub fn load(htpasswd: &Path, access: Option<&Path>, anonymous_read: bool) -> Result<Access> {
        let text = std::fs::read_to_string(htpasswd)
            .context(|| format!("reading {}", htpasswd.display()))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(Error::InvalidArgument {
                    value: format!("{}:{}", htpasswd.display(), n + 1),
                    expected: "an htpasswd line `user:$2y$…` (bcrypt)".into(),
                });
            };
            if !hash.starts_with("$2") {
                return Err(Error::InvalidArgument {
                    value: format!("{}:{} (user {user})", htpasswd.display(), n + 1),
                    expected: "a bcrypt hash (`htpasswd -B`); other schemes are refused".into(),
                });
            }
            users.insert(user.to_string(), hash.to_string());
        }
        let grants = match access {
            None => None,
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).context(|| format!("reading {}", p.display()))?;
                let mut g = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let write = match parts.as_slice() {
                        [_, _, "read"] => false,
                        [_, _, "write"] => true,
                        _ => {
                            return Err(Error::InvalidArgument {
                                value: format!("{}:{}: `{line}`", p.display(), n + 1),
                                expected: "`USER PATTERN read|write`".into(),
                            })
                        }
                    };
                    g.push(Grant {
                        user: parts[0].to_string(),
                        pattern: parts[1].to_string(),
                        write,
                    });
                }
                Some(g)
            }
        };
        Ok(Access {
            users,
            grants,
            anonymous_read,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The user an `Authorization` header proves, if any.
    fn user(&self, authorization: Option<&str>) -> Option<String> {
        let h = authorization?;
        if let Some(u) = self.verified.lock().ok().and_then(|m| m.get(h).cloned()) {
            return Some(u);
        }
        let encoded = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))?;
        let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let hash = self.users.get(user)?;
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return None;
        }
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(h.to_string(), user.to_string());
        }
        Some(user.to_string())
    }

    /// Whether `user` (`None`: anonymous) may do `want` on `repo`.
    fn allowed(&self, user: Option<&str>, repo: &str, want: Want) -> bool {
        let Some(user) = user else {
            return self.anonymous_read && want == Want::Read;
        };
        let Some(grants) = &self.grants else {
            return true;
        };
        grants.iter().any(|g| {
            (g.user == "*" || g.user == user)
                && (g.write || want == Want::Read)
                && matches(&g.pattern, repo)
        })
    }

    /// Checks a request on `repo` (`None`: the base or the catalog, which
    /// any authenticated user, or anyone with anonymous reads, may reach).
    pub(crate) fn check(
        &self,
        authorization: Option<&str>,
        repo: Option<&str>,
        want: Want,
    ) -> std::result::Result<Option<String>, Denied> {
        let user = self.user(authorization);
        if authorization.is_some() && user.is_none() {
            return Err(Denied::Unauthenticated);
        }
        let ok = match repo {
            None => user.is_some() || (self.anonymous_read && want == Want::Read),
            Some(r) => self.allowed(user.as_deref(), r, want),
        };
        match (ok, &user) {
            (true, _) => Ok(user),
            (false, None) => Err(Denied::Unauthenticated),
            (false, Some(_)) => Err(Denied::Forbidden),
        }
    }

    /// Whether `user` may read `repo` (catalog filtering, mount sources).
    pub(crate) fn can_read(&self, user: Option<&str>, repo: &str) -> bool {
        self.allowed(user, repo, Want::Read)
    }
}

/// `*` matches any run of characters (`/` included); everything else
/// matches itself.
fn matches(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| matches(rest, &tail[i..]))
        }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    if bytes.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "a/b"));
        assert!(matches("team-a/*", "team-a/app"));
        assert!(!matches("team-a/*", "team-b/app"));
        assert!(matches("*/app", "x/y/app"));
        assert!(!matches("app", "app2"));
    }

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("!!"), None);
    }

    #[test]
    fn grants_and_anonymous_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = bcrypt::hash("secret", 4).expect("hash");
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("alice:{hash}\nbob:{hash}\n"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("access"),
            "alice team-a/* write\nbob team-a/* read # read only\n",
        )
        .expect("write");
        let a = Access::load(
            &dir.path().join("htpasswd"),
            Some(&dir.path().join("access")),
            true,
        )
        .expect("load");
        let basic = |u: &str, p: &str| {
            let raw = format!("{u}:{p}");
            let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for c in raw.as_bytes().chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..=c.len() {
                    s.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
                s.push_str(&"=".repeat(3 - c.len()));
            }
            format!("Basic {s}")
        };
        let alice = basic("alice", "secret");
        let bob = basic("bob", "secret");
        assert!(a
            .check(Some(&alice), Some("team-a/app"), Want::Write)
            .is_ok());
        assert_eq!(
            a.check(Some(&bob), Some("team-a/app"), Want::Write),
            Err(Denied::Forbidden)
        );
        assert!(a.check(Some(&bob), Some("team-a/app"), Want::Read).is_ok());
        assert_eq!(
            a.check(Some(&alice), Some("team-b/app"), Want::Read),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            a.check(
                Some(&basic("alice", "wrong")),
                Some("team-a/app"),
                Want::Read
            ),
            Err(Denied::Unauthenticated)
        );
        // Anonymous reads, no anonymous writes.
        assert!(a.check(None, Some("anything"), Want::Read).is_ok());
        assert_eq!(
            a.check(None, Some("anything"), Want::Write),
            Err(Denied::Unauthenticated)
        );
    }
}
