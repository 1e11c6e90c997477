//! Free ports of 127.0.0.1 for the child processes the harness and the
//! tests start (Garage, etcd, `ocidb serve`).
//!
//! A port is chosen *below* the kernel's ephemeral range when it can be
//! read (Linux: `ip_local_port_range`). A port from the ephemeral range,
//! which binding port 0 hands out, can be taken before the child binds it
//! by any server that binds port 0 (every `ocidb serve` in the tests
//! does) or by an outgoing connection. CI once failed a Garage cluster's
//! `node connect` with "failed verifing server hello": something other
//! than Garage answered on the node's port. Below the range only a
//! listener that names its port can take one, and the callers start their
//! children again on fresh ports when one does.

use std::collections::BTreeSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::TcpListener;
use std::sync::Mutex;

use ocidb::error::{Error, Result};

/// The lowest port chosen when the ephemeral range is known: clear of the
/// well-known and most registered service ports.
const LOWEST: u16 = 10_000;

/// Ports this process has handed out: never handed out twice, since a
/// child may not have bound the first yet.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The first port of the kernel's ephemeral range, if it can be read.
fn ephemeral_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// A random number, different per call and per process.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// `n` distinct free ports. Every listener is held until all are chosen,
/// so the kernel cannot hand out one port twice.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut handed = HANDED_OUT
        .lock()
        .map_err(|_| Error::Internal("the free-port registry was poisoned".into()))?;
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    match ephemeral_start().filter(|&s| s > LOWEST + 1_000) {
        Some(end) => {
            let span = u64::from(end - LOWEST);
            let first = random() % span;
            for k in 0..span {
                if ports.len() == n {
                    break;
                }
                let port = LOWEST + ((first + k) % span) as u16;
                if handed.contains(&port) {
                    continue;
                }
                if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                    held.push(l);
                    ports.push(port);
                }
            }
            if ports.len() < n {
                return Err(Error::Internal(format!(
                    "no {n} free ports of 127.0.0.1 in {LOWEST}..{end}"
                )));
            }
        }
        // Not Linux, or a range we cannot step below: the kernel's choice.
        None => {
            while ports.len() < n {
                let l = TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| Error::io("finding a free port", e))?;
                let port = l
                    .local_addr()
                    .map_err(|e| Error::io("finding a free port", e))?
                    .port();
                held.push(l);
                if !handed.contains(&port) {
                    ports.push(port);
                }
            }
        }
    }
    handed.extend(&ports);
    Ok(ports)
}

/// One free port (see [`free_ports`]).
pub fn free_port() -> Result<u16> {
    free_ports(1)?
        .pop()
        .ok_or_else(|| Error::Internal("no free port".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let a = free_ports(3).expect("three ports");
        let b = free_ports(3).expect("three more");
        let all: BTreeSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 6, "a port handed out twice: {a:?} {b:?}");
        if let Some(end) = ephemeral_start().filter(|&s| s > LOWEST + 1_000) {
            assert!(
                all.iter().all(|&p| (LOWEST..end).contains(&p)),
                "{all:?} not in {LOWEST}..{end}"
            );
        }
        for p in all {
            TcpListener::bind(("127.0.0.1", p)).expect("a handed-out port is free");
        }
    }
}
