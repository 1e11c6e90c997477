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

use ocidb::error::{Error, IoContext as _, Result};

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
    /// The admin API (`USER * admin`): maintenance of the whole store.
    admin: bool,
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
    /// A bcrypt hash of no one's password, at the users' cost: an unknown
    /// user is verified against it, so that a 401 takes as long for a
    /// name that does not exist as for one that does.
    dummy_hash: String,
    /// Recent failed logins by user name and by client address.
    failures: Mutex<Failures>,
    /// bcrypt runs on the blocking pool, this many at once: a flood of
    /// logins queues here instead of taking every thread.
    verifying: tokio::sync::Semaphore,
}

/// Failed logins in the current window, per key (`u:NAME`, `a:ADDRESS`).
#[derive(Debug, Default)]
struct Failures {
    window_start: Option<std::time::Instant>,
    counts: HashMap<String, u32>,
}

/// Failed logins a user name may make per window (a client address three
/// times as many) before its attempts are refused without running bcrypt.
const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`].
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Keys remembered per window: past it the oldest window is dropped early
/// rather than grow (a flood of distinct names cannot exhaust memory).
const MAX_FAILURE_KEYS: usize = 65_536;
/// bcrypt verifications at once.
const MAX_VERIFYING: usize = 2;

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No or bad credentials: 401 with a challenge.
    Unauthenticated,
    /// Authenticated, without a grant: 403.
    Forbidden,
    /// Too many failed logins for this user or address: 429.
    Throttled,
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
        let grants = access
            .map(|p| parse_grants(p, &users, htpasswd))
            .transpose()?;
        // The dummy hash costs what the users' hashes cost (the highest,
        // so an unknown name is never the cheaper one).
        let cost = users
            .values()
            .filter_map(|h| h.get(4..6).and_then(|c| c.parse::<u32>().ok()))
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST)
            .clamp(4, 31);
        let dummy_hash =
            bcrypt::hash("no one's password", cost).map_err(|e| Error::InvalidArgument {
                value: format!("bcrypt cost {cost}"),
                expected: format!("a cost bcrypt can hash with ({e})"),
            })?;
        Ok(Access {
            users,
            grants,
            anonymous_read,
            verified: Mutex::new(HashMap::new()),
            dummy_hash,
            failures: Mutex::new(Failures::default()),
            verifying: tokio::sync::Semaphore::new(MAX_VERIFYING),
        })
    }

    /// The user an `Authorization` header proves: `Ok(None)` without one,
    /// `Err` when it proves no one (or its user or address failed too
    /// often). bcrypt runs on the blocking pool, [`MAX_VERIFYING`] at once,
    /// never on an async worker.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> std::result::Result<Option<String>, Denied> {
        let Some(h) = authorization else {
            return Ok(None);
        };
        if let Some(u) = self.verified.lock().ok().and_then(|m| m.get(h).cloned()) {
            return Ok(Some(u));
        }
        let (user, password) = basic_credentials(h).ok_or(Denied::Unauthenticated)?;
        let mut keys = vec![format!("u:{}", ocidb::text::quote_untrusted(&user))];
        keys.extend(peer.map(|p| format!("a:{p}")));
        if self.throttled(&keys) {
            return Err(Denied::Throttled);
        }
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let ok = {
            let _permit = self
                .verifying
                .acquire()
                .await
                .map_err(|_| Denied::Unauthenticated)?;
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !(ok && known) {
            self.note_failure(&keys);
            return Err(Denied::Unauthenticated);
        }
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(h.to_string(), user.clone());
        }
        Ok(Some(user))
    }

    /// Whether any of `keys` used up its failures in this window.
    fn throttled(&self, keys: &[String]) -> bool {
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        f.roll();
        keys.iter().any(|k| {
            // An address may be shared (NAT): it gets more room than a name.
            let limit = if k.starts_with("a:") {
                3 * MAX_FAILURES
            } else {
                MAX_FAILURES
            };
            f.counts.get(k).is_some_and(|n| *n >= limit)
        })
    }

    fn note_failure(&self, keys: &[String]) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        f.roll();
        if f.counts.len() + keys.len() > MAX_FAILURE_KEYS {
            f.counts.clear();
        }
        for k in keys {
            *f.counts.entry(k.clone()).or_insert(0) += 1;
        }
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
            !g.admin
                && (g.user == "*" || g.user == user)
                && (g.write || want == Want::Read)
                && matches(&g.pattern, repo)
        })
    }

    /// Whether `user` (already authenticated, `None`: anonymous) may do
    /// `want` on `repo` (`None`: the base or the catalog, which any
    /// authenticated user, or anyone with anonymous reads, may reach).
    pub(crate) fn authorize(
        &self,
        user: Option<&str>,
        repo: Option<&str>,
        want: Want,
    ) -> std::result::Result<(), Denied> {
        let ok = match repo {
            None => user.is_some() || (self.anonymous_read && want == Want::Read),
            Some(r) => self.allowed(user, r, want),
        };
        match (ok, user) {
            (true, _) => Ok(()),
            (false, None) => Err(Denied::Unauthenticated),
            (false, Some(_)) => Err(Denied::Forbidden),
        }
    }

    /// Whether `user` may use the admin API through the API listener: only
    /// with an explicit `USER * admin` grant (a registry without an access
    /// file grants no one that).
    pub(crate) fn is_admin(&self, user: Option<&str>) -> bool {
        let (Some(user), Some(grants)) = (user, &self.grants) else {
            return false;
        };
        grants
            .iter()
            .any(|g| g.admin && (g.user == "*" || g.user == user))
    }

    /// How many users the password file has (for a reload's log line).
    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether `user` may read `repo` (catalog filtering, mount sources).
    pub(crate) fn can_read(&self, user: Option<&str>, repo: &str) -> bool {
        self.allowed(user, repo, Want::Read)
    }
}

/// What an admin grant must look like.
const ADMIN_GRANT: &str =
    "`USER * admin`: the admin API covers the whole store, so its pattern is `*`";

/// The grants of the access file `p` (`USER PATTERN read|write` or `USER
/// * admin` lines; `#` comments), each user checked against `users`.
fn parse_grants(p: &Path, users: &HashMap<String, String>, htpasswd: &Path) -> Result<Vec<Grant>> {
    let text = std::fs::read_to_string(p).context(|| format!("reading {}", p.display()))?;
    let mut g = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (write, admin) = match parts.as_slice() {
            [_, _, "read"] => (false, false),
            [_, _, "write"] => (true, false),
            [_, "*", "admin"] => (false, true),
            [_, _, "admin"] => {
                return Err(Error::InvalidArgument {
                    value: format!("{}:{}: `{line}`", p.display(), n + 1),
                    expected: ADMIN_GRANT.into(),
                })
            }
            _ => {
                return Err(Error::InvalidArgument {
                    value: format!("{}:{}: `{line}`", p.display(), n + 1),
                    expected: "`USER PATTERN read|write` or `USER * admin`".into(),
                })
            }
        };
        // A grant to a name the password file does not know
        // is a typo that would otherwise fail silently.
        if parts[0] != "*" && !users.contains_key(parts[0]) {
            return Err(Error::InvalidArgument {
                value: format!("{}:{}: user `{}`", p.display(), n + 1, parts[0]),
                expected: format!(
                    "a user of the password file {} (or `*`)",
                    htpasswd.display()
                ),
            });
        }
        g.push(Grant {
            user: parts[0].to_string(),
            pattern: parts[1].to_string(),
            write,
            admin,
        });
    }
    Ok(g)
}

impl Failures {
    /// Starts a new window once the current one is over.
    fn roll(&mut self) {
        let now = std::time::Instant::now();
        match self.window_start {
            Some(t) if now.duration_since(t) < FAILURE_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.counts.clear();
            }
        }
    }
}

/// The user name a `Basic` header claims, made safe to log (control
/// characters escaped, at most 64 characters): for the access log of a
/// refused login.
pub(crate) fn claimed_user(h: &str) -> Option<String> {
    let (user, _) = basic_credentials(h)?;
    let shown: String = ocidb::text::quote_untrusted(&user)
        .chars()
        .take(64)
        .collect();
    Some(shown)
}

/// The value of an `Authorization` header that sends `user_and_password`
/// (`USER:PASSWORD`) with Basic authentication: what a client of this
/// server (the command line's `--server`, a test) sends.
pub fn basic_authorization(user_and_password: &str) -> String {
    format!(
        "Basic {}",
        crate::base64::encode(user_and_password.as_bytes())
    )
}

/// The user and password of a `Basic` header.
fn basic_credentials(h: &str) -> Option<(String, String)> {
    let encoded = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let decoded = String::from_utf8(crate::base64::decode(encoded.trim(), 4096)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `*` matches any run of characters (`/` included); everything else
/// matches itself. Linear: the literal pieces between stars are found
/// left to right (the leftmost match of each leaves the most room for the
/// rest, so no backtracking is ever needed).
fn matches(pattern: &str, s: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No star: the whole name is the pattern.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_authorization_is_rfc_4648_base64() {
        assert_eq!(basic_authorization("alice:pw"), "Basic YWxpY2U6cHc=");
        assert_eq!(
            basic_credentials(&basic_authorization("alice:pw")),
            Some(("alice".to_string(), "pw".to_string()))
        );
    }

    #[test]
    fn patterns() {
        assert!(matches("*", "a/b"));
        assert!(matches("*", ""));
        assert!(matches("team-a/*", "team-a/app"));
        assert!(!matches("team-a/*", "team-b/app"));
        assert!(matches("*/app", "x/y/app"));
        assert!(!matches("app", "app2"));
        assert!(matches("app", "app"));
        assert!(matches("a*a", "aa") && matches("a*a", "aba"));
        assert!(!matches("a*a", "a"));
        assert!(matches("*x*x", "xx") && !matches("*x*x", "x"));
        assert!(matches("team-*/*/release", "team-a/web/release"));
        assert!(!matches("team-*/*/release", "team-a/web/releases"));
        assert!(matches("a**b", "ab"));
    }

    /// Issue 26, item 9: a 30,000-character name against a pattern with
    /// two stars took 4.7-12 s of CPU; matching is now linear. (Counted,
    /// not timed: the answer must come from one left-to-right pass.)
    #[test]
    fn matching_a_long_name_is_linear() {
        let name = "team-".to_string() + &"a/".repeat(15_000);
        assert!(!matches("team-*/*/release", &name));
        let name = name + "release";
        assert!(matches("team-*/*/release", &name));
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn check(
        a: &std::sync::Arc<Access>,
        authz: Option<&str>,
        repo: Option<&str>,
        want: Want,
    ) -> std::result::Result<Option<String>, Denied> {
        let user = rt().block_on(a.authenticate(authz, None))?;
        a.authorize(user.as_deref(), repo, want).map(|()| user)
    }

    #[test]
    fn a_grant_to_a_user_the_password_file_lacks_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = bcrypt::hash("secret", 4).expect("hash");
        std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).expect("write");
        std::fs::write(
            dir.path().join("access"),
            "alice a/* write\n* b/* read\nalcie c/* write\n",
        )
        .expect("write");
        let e = Access::load(
            &dir.path().join("htpasswd"),
            Some(&dir.path().join("access")),
            false,
        )
        .expect_err("a typo in a grant's user");
        let msg = e.to_string();
        assert!(
            msg.contains(":3: user `alcie`") && msg.contains("htpasswd"),
            "{msg}"
        );
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
        let a = std::sync::Arc::new(
            Access::load(
                &dir.path().join("htpasswd"),
                Some(&dir.path().join("access")),
                true,
            )
            .expect("load"),
        );
        let basic = |u: &str, p: &str| basic_authorization(&format!("{u}:{p}"));
        let alice = basic("alice", "secret");
        let bob = basic("bob", "secret");
        assert!(check(&a, Some(&alice), Some("team-a/app"), Want::Write).is_ok());
        assert_eq!(
            check(&a, Some(&bob), Some("team-a/app"), Want::Write),
            Err(Denied::Forbidden)
        );
        assert!(check(&a, Some(&bob), Some("team-a/app"), Want::Read).is_ok());
        assert_eq!(
            check(&a, Some(&alice), Some("team-b/app"), Want::Read),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            check(
                &a,
                Some(&basic("alice", "wrong")),
                Some("team-a/app"),
                Want::Read
            ),
            Err(Denied::Unauthenticated)
        );
        // Anonymous reads, no anonymous writes.
        assert!(check(&a, None, Some("anything"), Want::Read).is_ok());
        assert_eq!(
            check(&a, None, Some("anything"), Want::Write),
            Err(Denied::Unauthenticated)
        );
        // Failed logins of one user are refused without bcrypt once they
        // reach the limit (the wrong password above was the first), even
        // with the right password; another user is not affected.
        let wrong = basic("alice", "wrong");
        for _ in 1..MAX_FAILURES {
            assert_eq!(
                check(&a, Some(&wrong), Some("team-a/app"), Want::Read),
                Err(Denied::Unauthenticated)
            );
        }
        assert_eq!(
            check(
                &a,
                Some(&basic("alice", "guess")),
                Some("team-a/app"),
                Want::Read
            ),
            Err(Denied::Throttled)
        );
        assert!(check(&a, Some(&bob), Some("team-a/app"), Want::Read).is_ok());
        // Unknown users fail like wrong passwords (and are counted too).
        assert_eq!(
            check(
                &a,
                Some(&basic("mallory", "x")),
                Some("team-a/app"),
                Want::Read
            ),
            Err(Denied::Unauthenticated)
        );
    }
}
