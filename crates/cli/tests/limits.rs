//! What an anonymous or hostile client can make `ocidb serve` spend
//! (issue 26, items 2, 4 and 9), driven through HTTP: metric labels from
//! a closed set, `/metrics` behind the API's credentials or on the admin
//! listener, failed logins throttled, names validated before any grant
//! pattern sees them.

mod common;

use common::server::Server;

const ALICE: &str = "Basic YWxpY2U6c2VjcmV0"; // alice:secret

fn with_users(dir: &std::path::Path, extra: &[&str]) -> Server {
    common::server::start_with_grants(
        dir,
        &["alice"],
        "alice team-*/*/release write\nalice a/* write\n",
        extra,
    )
}

/// Item 2: 8,000 requests with unique 16 KB methods grew the metrics by
/// 125 MiB on the main of 2026-12-05. Invented methods now count as
/// `other`, and the metrics name none of them.
#[test]
fn invented_methods_are_one_metric_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    for i in 0..200 {
        let method = format!("M{i:03}{}", "X".repeat(1000));
        let r = server.request(&method, "/v2/", &[], b"");
        assert!(r.status >= 400, "{method}: {r:?}");
    }
    let m = server.request("GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(!text.contains("XXXX"), "an invented method became a label");
    assert!(
        text.contains(r#"route="base",method="other""#),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.len() < 64 * 1024, "metrics of {} bytes", text.len());
}

/// Item 2: `/metrics` needed no credentials with `--htpasswd`; now it
/// needs a user's, unless read from `--admin-addr`.
#[test]
fn metrics_need_credentials_or_the_admin_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_users(dir.path(), &["--admin-addr", "127.0.0.1:0"]);
    let anon = server.request("GET", "/metrics", &[], b"");
    assert_eq!(anon.status, 401, "{anon:?}");
    assert!(!String::from_utf8_lossy(&anon.body).contains("ocidb_http"));
    let authed = server.request("GET", "/metrics", &[("Authorization", ALICE)], b"");
    assert_eq!(authed.status, 200, "{authed:?}");
    assert!(
        String::from_utf8_lossy(&authed.body).contains("ocidb_http_request_duration_seconds_count")
    );
    // The admin listener's address is in the log.
    let admin = (0..100)
        .find_map(|_| {
            let found = server.log.lock().ok().and_then(|l| {
                l.iter()
                    .find(|x| x.contains("admin listener"))
                    .and_then(|x| x.split("http://").nth(1))
                    .map(|a| a.trim().to_string())
            });
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            found
        })
        .expect("the admin listener logs its address");
    let m = common::server::request(&admin, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200, "{m:?}");
    assert!(String::from_utf8_lossy(&m.body).contains("ocidb_http_request_duration_seconds_count"));
    // It serves nothing else: no API there.
    let api = common::server::request(&admin, "GET", "/v2/_catalog", &[], b"");
    assert_eq!(api.status, 404, "{api:?}");
}

/// Item 8: wrong passwords ran bcrypt inline, uncached and unlimited.
/// After ten failures in a minute a user's logins get 429 without bcrypt,
/// even with the right password; an unknown user gets the same 401 as a
/// wrong password.
#[test]
fn failed_logins_are_throttled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_users(dir.path(), &[]);
    let wrong = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
    for i in 0..10 {
        let r = server.request("GET", "/v2/", &[("Authorization", wrong)], b"");
        assert_eq!(r.status, 401, "attempt {i}: {r:?}");
    }
    let r = server.request("GET", "/v2/", &[("Authorization", wrong)], b"");
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "TOOMANYREQUESTS"),
        "{r:?}"
    );
    assert_eq!(r.header("retry-after"), Some("60"));
    let r = server.request("GET", "/v2/", &[("Authorization", ALICE)], b"");
    assert_eq!(r.status, 429, "the right password waits too: {r:?}");
    let unknown = "Basic bWFsbG9yeTpzZWNyZXQ="; // mallory:secret
    let r = server.request("GET", "/v2/", &[("Authorization", unknown)], b"");
    assert_eq!(
        (r.status, r.code().as_str()),
        (401, "UNAUTHORIZED"),
        "{r:?}"
    );
}

/// Item 9: a 30,000-character name was matched against `team-*/*/release`
/// for seconds of CPU before it was validated. It is refused first.
#[test]
fn long_names_are_refused_before_grants_are_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_users(dir.path(), &[]);
    let name = format!("team-{}", "a/".repeat(15_000));
    let r = server.request(
        "GET",
        &format!("/v2/{name}x/tags/list"),
        &[("Authorization", ALICE)],
        b"",
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "NAME_INVALID"),
        "{r:?}"
    );
    let long = server.request(
        "GET",
        &format!("/v2/a/{}/tags/list", "b".repeat(300)),
        &[("Authorization", ALICE)],
        b"",
    );
    assert_eq!(
        (long.status, long.code().as_str()),
        (400, "NAME_INVALID"),
        "{long:?}"
    );
    // A valid name inside the grant still works.
    let ok = server.request(
        "GET",
        "/v2/team-x/web/release/tags/list",
        &[("Authorization", ALICE)],
        b"",
    );
    assert_ne!(ok.status, 400, "{ok:?}");
    assert_ne!(ok.status, 403, "{ok:?}");
}

/// Item 4 (of the findings): downloads that never read held a blocking
/// thread each until 512 of them stopped every store request. Now a
/// stalled download holds no thread, the downloads in progress are capped
/// (429 with Retry-After past the cap), and a client that reads nothing
/// for the body idle timeout is cut off, which gives its permit back.
#[test]
fn downloads_nobody_reads_are_capped_and_cut_off() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("store"),
        &["--max-downloads", "4", "--body-idle-timeout", "3s"],
    );
    // Larger than what the kernel buffers on a loopback connection whose
    // client holds a small window (the server's send buffer grows to
    // `tcp_wmem`'s maximum, 4 MiB by default).
    let blob = ocidb_testkit::deterministic_bytes(b"stall", 48 << 20);
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &blob).to_string();
    let up = server.request(
        "POST",
        &format!("/v2/dl/app/blobs/uploads/?digest={d}"),
        &[],
        &blob,
    );
    assert_eq!(up.status, 201, "{up:?}");
    let path = format!("/v2/dl/app/blobs/{d}");
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = common::server::connect_small_window(&server.addr);
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("request");
        stalled.push(c);
    }
    // Once all four hold a permit, a fifth is told to come back.
    let mut refused = None;
    for _ in 0..100 {
        let r = server.request("HEAD", &path, &[], b"");
        assert_eq!(r.status, 200, "HEAD sends no body and needs no permit");
        let r = server.request("GET", &path, &[("Range", "bytes=0-0")], b"");
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let refused = refused.expect("a download past the cap gets 429");
    assert_eq!(refused.code(), "TOOMANYREQUESTS");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The store answers everything else meanwhile.
    let tags = server.request("GET", "/v2/dl/app/tags/list", &[], b"");
    assert!(tags.status == 200 || tags.status == 404, "{tags:?}");
    // The stalled clients are cut off after 3 s of reading nothing; then a
    // download goes through again, whole.
    let mut whole = None;
    for _ in 0..300 {
        let r = server.request("GET", &path, &[], b"");
        if r.status == 200 {
            whole = Some(r);
            break;
        }
        assert_eq!(r.status, 429, "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let whole = whole.expect("the stalled downloads were cut off");
    assert_eq!(whole.body.len(), blob.len());
    drop(stalled);
}

/// Item 5: a stalled manifest body was held for ever (200 of them held
/// 837 MiB). Now it gets the body idle timeout: 408, logged below ERROR.
#[test]
fn a_stalled_manifest_body_is_cut_off_with_408() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("store"), &["--body-idle-timeout", "1s"]);
    let mut c = std::net::TcpStream::connect(&server.addr).expect("connect");
    c.write_all(
        b"PUT /v2/m/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 4000000\r\n\r\n{\"schemaVersion\":",
    )
    .expect("head");
    let r = common::server::read_response(c, false);
    assert_eq!(
        (r.status, r.code().as_str()),
        (408, "BLOB_UPLOAD_INVALID"),
        "{r:?}"
    );
    assert_client_error_not_logged_as_error(&server);
}

/// Item 12: four PATCHes trickling a byte every two seconds held every
/// upload permit; the idle timeout was no minimum rate. Now a body under
/// the minimum rate over an idle window is cut off with 408.
#[test]
fn a_trickling_upload_is_cut_off_with_408() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("store"),
        &["--body-idle-timeout", "2s", "--min-body-rate", "1000"],
    );
    let start = server.request("POST", "/v2/t/app/blobs/uploads/", &[], b"");
    let location = start.header("location").expect("location").to_string();
    let mut c = std::net::TcpStream::connect(&server.addr).expect("connect");
    c.write_all(
        format!("PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").as_bytes(),
    )
    .expect("head");
    c.set_read_timeout(Some(std::time::Duration::from_millis(400)))
        .expect("timeout");
    let mut answer = Vec::new();
    for _ in 0..60 {
        // One byte every 400 ms: never idle for 2 s, far under 1000 B/s.
        if c.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match std::io::Read::read(&mut c, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("minimum"), "{text}");
    assert_client_error_not_logged_as_error(&server);
}

/// Item 12: silent connections from one address starved everyone. One
/// address now holds at most --max-connections-per-client; past it a new
/// connection is closed at once, and a slot comes back when one closes.
#[test]
fn one_address_holds_only_so_many_connections() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("store"),
        &["--max-connections-per-client", "3"],
    );
    let silent: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(&server.addr).expect("connect");
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a fourth connection is closed at once");
    drop(silent);
    // The server notices the closes as it reads them: until then a new
    // connection may still be turned away (reset), which is no answer.
    let mut ok = false;
    for _ in 0..100 {
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            server.request("GET", "/v2/", &[], b"").status
        }));
        if answered.is_ok_and(|s| s == 200) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ok, "the slots came back");
}

/// Client-caused failures are not the server's errors: nothing at ERROR.
fn assert_client_error_not_logged_as_error(server: &Server) {
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = server.log.lock().expect("log").clone();
    assert!(
        !log.iter().any(|l| l.contains("ERROR")),
        "an ERROR line for a client's failure: {log:?}"
    );
}
