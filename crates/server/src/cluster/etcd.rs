//! A small blocking client of etcd's v3 JSON gateway (`/v3/...`, etcd
//! 3.4 and later): the handful of calls a cluster member makes (range,
//! put, a compare-and-set transaction, leases, watches), over plain
//! HTTP/1.1. Blocking, because the engine's writer thread publishes the
//! log head from outside any async runtime; small, because a gRPC stack
//! for five calls would be most of the server's dependencies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};

/// The most a unary answer may hold: etcd's are a few hundred bytes.
const MAX_ANSWER: usize = 1 << 20;

/// An etcd cluster, by the client URLs of its members.
#[derive(Clone, Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    timeout: Duration,
}

/// A key's value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key (it changes when the key is
    /// deleted and put again).
    pub create_revision: i64,
    /// The revision of its last put.
    pub mod_revision: i64,
}

/// A change a watch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` was put.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value and revisions.
        kv: KeyValue,
    },
    /// `key` was deleted (or its lease lapsed).
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        revision: i64,
    },
}

/// Why a call failed: the message names the endpoint and the call.
pub type EtcdResult<T> = Result<T, String>;

/// A condition of [`Etcd::put_if`], on a key's revisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard<'a> {
    /// The key exists with this create revision (it was not deleted and
    /// put again since).
    Created(&'a [u8], i64),
    /// The key's last put had this revision (0: the key does not exist).
    Modified(&'a [u8], i64),
}

impl Guard<'_> {
    fn key(&self) -> &[u8] {
        match self {
            Guard::Created(k, _) | Guard::Modified(k, _) => k,
        }
    }

    fn compare(&self) -> Value {
        match *self {
            Guard::Created(k, r) => {
                json!({ "key": b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": r.to_string() })
            }
            Guard::Modified(k, r) => {
                json!({ "key": b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": r.to_string() })
            }
        }
    }
}

/// What [`Etcd::put_if`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutIf {
    /// Every guard held and the key was put: the revision of the put.
    Put(i64),
    /// A guard failed and nothing changed: each guarded key as it is, in
    /// the guards' order, read in the same transaction.
    Refused(Vec<Option<KeyValue>>),
}

impl Etcd {
    /// `etcd://HOST:PORT[,HOST:PORT…]` (or `http://`).
    pub fn parse(url: &str) -> EtcdResult<Etcd> {
        let rest = url
            .strip_prefix("etcd://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("`{url}` is not an etcd address: expected etcd://HOST:PORT[,HOST:PORT…]")
            })?;
        let endpoints: Vec<String> = rest
            .split(',')
            .map(|h| h.trim().trim_end_matches('/').to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if endpoints.is_empty() || endpoints.iter().any(|e| !e.contains(':')) {
            return Err(format!(
                "`{url}` names no etcd member as HOST:PORT: expected etcd://HOST:PORT[,HOST:PORT…]"
            ));
        }
        Ok(Etcd {
            endpoints,
            timeout: Duration::from_secs(3),
        })
    }

    /// The members' addresses, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The value of `key`, if it exists, and the store's revision.
    pub fn get(&self, key: &[u8]) -> EtcdResult<(Option<KeyValue>, i64)> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        let kv = v
            .get("kvs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(key_value)
            .transpose()?;
        Ok((kv, revision(&v)))
    }

    /// Puts `value` at `key` (bound to `lease` unless 0).
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> EtcdResult<i64> {
        let v = self.call(
            "/v3/kv/put",
            &json!({ "key": b64(key), "value": b64(value), "lease": lease.to_string() }),
        )?;
        Ok(revision(&v))
    }

    /// Puts `value` at `key` only if `key` does not exist: `Some(revision)`
    /// of the put (the key's create revision) when it did not.
    pub fn create(&self, key: &[u8], value: &[u8], lease: i64) -> EtcdResult<Option<i64>> {
        let put = self.txn(&[Guard::Created(key, 0)], key, value, lease)?;
        Ok(match put {
            PutIf::Put(revision) => Some(revision),
            PutIf::Refused(_) => None,
        })
    }

    /// Puts `value` at `key` (bound to no lease) only if every guard
    /// holds, in one transaction; otherwise reads the guarded keys in it.
    pub fn put_if(&self, guards: &[Guard<'_>], key: &[u8], value: &[u8]) -> EtcdResult<PutIf> {
        self.txn(guards, key, value, 0)
    }

    fn txn(&self, guards: &[Guard<'_>], key: &[u8], value: &[u8], lease: i64) -> EtcdResult<PutIf> {
        let body = json!({
            "compare": guards.iter().map(Guard::compare).collect::<Vec<_>>(),
            "success": [{ "request_put": { "key": b64(key), "value": b64(value), "lease": lease.to_string() } }],
            "failure": guards.iter().map(|g| json!({ "request_range": { "key": b64(g.key()) } })).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", &body)?;
        if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(PutIf::Put(revision(&v)));
        }
        let responses = v.get("responses").and_then(Value::as_array);
        let read = (0..guards.len())
            .map(|i| {
                responses
                    .and_then(|r| r.get(i))
                    .and_then(|r| r.get("response_range"))
                    .and_then(|r| r.get("kvs"))
                    .and_then(Value::as_array)
                    .and_then(|kvs| kvs.first())
                    .map(key_value)
                    .transpose()
            })
            .collect::<EtcdResult<Vec<_>>>()?;
        Ok(PutIf::Refused(read))
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &[u8]) -> EtcdResult<()> {
        self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))
            .map(drop)
    }

    /// A lease of `ttl` seconds: its id.
    pub fn grant(&self, ttl: u64) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        int(v.get("ID")).ok_or_else(|| format!("etcd granted no lease id: {v}"))
    }

    /// Renews `lease`: the seconds it has left (0: it is gone).
    pub fn keep_alive(&self, lease: i64) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        Ok(v.get("result").and_then(|r| int(r.get("TTL"))).unwrap_or(0))
    }

    /// Ends `lease` now: the keys bound to it go.
    pub fn revoke(&self, lease: i64) -> EtcdResult<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .map(drop)
    }

    /// Watches every key under `prefix` from revision `from`, calling
    /// `each` with each change, until `each` returns `false` (then
    /// `Ok(last revision seen)`), the stream ends or `idle` passes with
    /// nothing (then `Ok` too: watch again from the revision returned), or
    /// the connection fails.
    pub fn watch(
        &self,
        prefix: &[u8],
        from: i64,
        idle: Duration,
        each: &mut dyn FnMut(WatchEvent) -> bool,
    ) -> EtcdResult<i64> {
        let body = json!({ "create_request": {
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let (endpoint, stream) = self.open("/v3/watch", &body, Some(idle))?;
        let mut last = from - 1;
        let mut messages = serde_json::Deserializer::from_reader(stream).into_iter::<Value>();
        loop {
            let msg = match messages.next() {
                None => return Ok(last + 1),
                Some(Err(e)) if e.is_io() => return Ok(last + 1),
                Some(Err(e)) => return Err(format!("etcd {endpoint}: a watch message: {e}")),
                Some(Ok(m)) => m,
            };
            let Some(result) = msg.get("result") else {
                return Err(format!("etcd {endpoint}: the watch failed: {msg}"));
            };
            if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                return Err(format!("etcd {endpoint}: the watch was canceled: {result}"));
            }
            for e in result
                .get("events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let kv = e
                    .get("kv")
                    .ok_or_else(|| format!("a watch event without kv: {e}"))?;
                let key = unb64(kv.get("key"))?;
                let ev = if e.get("type").and_then(Value::as_str) == Some("DELETE") {
                    let revision = int(kv.get("mod_revision")).unwrap_or(0);
                    last = last.max(revision);
                    WatchEvent::Delete { key, revision }
                } else {
                    let kv = key_value(kv)?;
                    last = last.max(kv.mod_revision);
                    WatchEvent::Put { key, kv }
                };
                if !each(ev) {
                    return Ok(last + 1);
                }
            }
        }
    }

    /// One unary call, to the first member that answers.
    fn call(&self, path: &str, body: &Value) -> EtcdResult<Value> {
        let (endpoint, mut stream) = self.open(path, body, None)?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("etcd {endpoint}{path}: reading the answer: {e}"))?;
        if buf.len() > MAX_ANSWER {
            return Err(format!(
                "etcd {endpoint}{path}: an answer over {MAX_ANSWER} bytes"
            ));
        }
        // A streaming call (keepalive) answers one message and closes.
        let v: Value = serde_json::Deserializer::from_slice(&buf)
            .into_iter::<Value>()
            .next()
            .ok_or_else(|| format!("etcd {endpoint}{path}: an empty answer"))?
            .map_err(|e| format!("etcd {endpoint}{path}: not JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("etcd {endpoint}{path}: {err}"));
        }
        Ok(v)
    }

    /// Sends `body` to `path` of the first member that takes it; the
    /// answer's body as a reader once its status is 200.
    fn open(
        &self,
        path: &str,
        body: &Value,
        idle: Option<Duration>,
    ) -> EtcdResult<(String, Box<dyn Read + Send>)> {
        let mut why = Vec::new();
        for endpoint in &self.endpoints {
            match self.request(endpoint, path, body, idle) {
                Ok(r) => return Ok((endpoint.clone(), r)),
                Err(e) => why.push(format!("{endpoint}: {e}")),
            }
        }
        Err(format!(
            "no etcd member answered {path}: {}",
            why.join("; ")
        ))
    }

    fn request(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        idle: Option<Duration>,
    ) -> Result<Box<dyn Read + Send>, String> {
        let addr: SocketAddr = endpoint
            .to_socket_addrs()
            .map_err(|e| format!("resolving: {e}"))?
            .next()
            .ok_or("resolves to no address")?;
        let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(idle.unwrap_or(self.timeout)))
            .and_then(|()| s.set_write_timeout(Some(self.timeout)))
            .and_then(|()| s.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        let body = body.to_string();
        let mut w = &s;
        write!(
            w,
            "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| format!("sending: {e}"))?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status)
            .map_err(|e| format!("reading the status: {e}"))?;
        let code = status.split_whitespace().nth(1).unwrap_or("");
        let mut chunked = false;
        let mut length = None;
        loop {
            let mut line = String::new();
            r.read_line(&mut line)
                .map_err(|e| format!("reading the headers: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if k == "content-length" {
                    length = v.parse::<u64>().ok();
                }
            }
        }
        let reader: Box<dyn Read + Send> = if chunked {
            Box::new(Chunked::new(r))
        } else if let Some(n) = length {
            Box::new(r.take(n))
        } else {
            Box::new(r)
        };
        if code != "200" {
            let mut text = String::new();
            let _ = reader.take(4096).read_to_string(&mut text);
            return Err(format!("{} {}", status.trim(), text.trim()));
        }
        Ok(reader)
    }
}

/// The body of a chunked HTTP/1.1 answer.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Chunked<R> {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                return Ok(0);
            }
            let line = line.trim();
            if line.is_empty() {
                continue; // the CRLF after a chunk
            }
            let size = line.split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                Error::new(ErrorKind::InvalidData, format!("a chunk size `{size}`"))
            })?;
            if self.left == 0 {
                self.done = true;
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "a chunk cut short"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd's int64s come as JSON strings (or numbers).
fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn revision(v: &Value) -> i64 {
    int(v.get("header").and_then(|h| h.get("revision"))).unwrap_or(0)
}

fn key_value(kv: &Value) -> EtcdResult<KeyValue> {
    Ok(KeyValue {
        value: unb64(kv.get("value"))?,
        create_revision: int(kv.get("create_revision")).unwrap_or(0),
        mod_revision: int(kv.get("mod_revision")).unwrap_or(0),
    })
}

fn b64(bytes: &[u8]) -> String {
    crate::base64::encode(bytes)
}

/// Decodes a base64 field (absent: empty, as the gateway omits empty
/// values).
fn unb64(v: Option<&Value>) -> EtcdResult<Vec<u8>> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let s = v
        .as_str()
        .ok_or_else(|| format!("not a base64 string: {v}"))?;
    crate::base64::decode(s, MAX_ANSWER).ok_or_else(|| format!("`{s}` is not base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_and_a_bad_one_is_named() {
        assert_eq!(unb64(None).expect("absent"), Vec::<u8>::new());
        assert_eq!(
            unb64(Some(&json!(b64(b"/ocidb/head")))).expect("decode"),
            b"/ocidb/head"
        );
        assert!(unb64(Some(&json!("a*b"))).expect_err("bad").contains("a*b"));
    }

    #[test]
    fn a_prefix_ends_after_its_last_byte_that_can_grow() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn chunked_bodies_are_joined_and_a_cut_one_is_an_error() {
        let mut s = String::new();
        Chunked::new(&b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"[..])
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "abcde");
        let mut v = Vec::new();
        assert!(Chunked::new(&b"5\r\nab"[..]).read_to_end(&mut v).is_err());
    }

    #[test]
    fn addresses_are_parsed_or_refused_by_name() {
        let e = Etcd::parse("etcd://127.0.0.1:2379,h2:2379").expect("parse");
        assert_eq!(e.endpoints(), ["127.0.0.1:2379", "h2:2379"]);
        assert!(Etcd::parse("127.0.0.1:2379")
            .expect_err("no scheme")
            .contains("etcd://HOST:PORT"));
        assert!(Etcd::parse("etcd://nohost").is_err());
    }
}
