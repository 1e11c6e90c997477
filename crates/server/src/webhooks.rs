//! Delivery of the store's outbox to webhooks, as CloudEvents in HTTP
//! binary mode (attributes in `ce-*` headers, the event as a JSON body).
//!
//! Each webhook is a consumer of the outbox with its own cursor in the
//! store: an event is acknowledged only after the receiver answered 2xx,
//! so every event is delivered at least once, in commit order (hence in
//! commit order per repository), across restarts and `kill -9`. A receiver
//! that fails holds its own queue (retried with backoff, for ever), never
//! another webhook's.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request};
use hyper_util::rt::TokioIo;
use ocidb::store::Event;
use ocidb::{Error, Result};

use super::App;

/// Events read from the outbox at a time.
const BATCH: usize = 100;
/// How often an idle delivery task looks at the outbox again.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// The first retry's delay, doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts at one event.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One attempt's deadline: connect, send, and the response's head.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook: where to POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    host: String,
    port: u16,
    path: String,
}

impl Webhook {
    /// Parses `http://HOST[:PORT]/PATH`; anything else is refused, naming
    /// the rule.
    pub fn parse(url: &str) -> Result<Webhook> {
        let bad = |why: &str| Error::InvalidArgument {
            value: url.to_string(),
            expected: format!("a webhook URL http://HOST[:PORT][/PATH] ({why})"),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only plain http is delivered to"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("a host, without credentials"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (authority, 80),
        };
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the path holds spaces or control characters"));
        }
        Ok(Webhook {
            url: url.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The outbox consumer this webhook acknowledges as.
    fn consumer(&self) -> String {
        format!("webhook {}", self.url)
    }
}

/// The CloudEvents `subject`: `REPO:TAG`, `REPO@DIGEST`, or the digest.
fn subject(e: &Event) -> Option<String> {
    match (&e.repository, &e.tag, &e.digest) {
        (Some(r), Some(t), _) => Some(format!("{r}:{t}")),
        (Some(r), None, Some(d)) => Some(format!("{r}@{d}")),
        (None, _, Some(d)) => Some(d.to_string()),
        (Some(r), None, None) => Some(r.clone()),
        (None, _, None) => None,
    }
}

/// One POST of `e`; Ok when the receiver answered 2xx.
async fn post(hook: &Webhook, source: &str, e: &Event) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(e).map_err(|x| format!("encoding event {}: {x}", e.seq))?;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((hook.host.as_str(), hook.port))
            .await
            .map_err(|x| format!("connecting: {x}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|x| format!("HTTP handshake: {x}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::post(hook.path.as_str())
            .header(header::HOST, format!("{}:{}", hook.host, hook.port))
            .header(header::CONTENT_TYPE, "application/json")
            .header("ce-specversion", "1.0")
            .header("ce-id", e.seq.to_string())
            .header("ce-source", source)
            .header("ce-type", e.kind.cloud_event_type())
            .header("ce-time", ocidb::clock::rfc3339(e.time_ms));
        if let Some(s) = subject(e) {
            req = req.header("ce-subject", s);
        }
        let req = req
            .body(Body::from(body))
            .map_err(|x| format!("building the request: {x}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|x| format!("sending: {x}"))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
    }
}

/// Runs on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("an outbox task failed: {e}")))?
}

/// Delivers the outbox to `hook` for ever: reads after the consumer's
/// cursor, posts each event until it is taken, acknowledges each batch.
pub(crate) async fn deliver(app: Arc<App>, hook: Webhook, source: String) {
    let consumer = hook.consumer();
    let store = Arc::clone(&app.store);
    // Registering keeps every event from now on for this webhook.
    let mut cursor = loop {
        let (s, c) = (Arc::clone(&store), consumer.clone());
        let r = blocking(move || {
            let at = s.event_cursor(&c)?;
            s.ack_events(&c, at)?;
            Ok(at)
        })
        .await;
        match r {
            Ok(at) => break at,
            Err(e) => {
                tracing::warn!("webhook {}: reading its cursor: {e}", hook.url);
                tokio::time::sleep(MAX_BACKOFF).await;
            }
        }
    };
    loop {
        let s = Arc::clone(&store);
        let batch = match blocking(move || s.events_after(cursor, BATCH)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("webhook {}: reading the outbox: {e}", hook.url);
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        for e in &batch {
            let mut wait = FIRST_BACKOFF;
            loop {
                match post(&hook, &source, e).await {
                    Ok(()) => {
                        app.metrics.events_delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(why) => {
                        app.metrics.event_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "webhook {}: event {} ({}): {why}; retrying in {} ms",
                            hook.url,
                            e.seq,
                            e.kind.cloud_event_type(),
                            wait.as_millis()
                        );
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
            }
            cursor = e.seq;
        }
        let (s, c, at) = (Arc::clone(&store), consumer.clone(), cursor);
        if let Err(e) = blocking(move || s.ack_events(&c, at)).await {
            // Not fatal: the events go again after a restart (at least once).
            tracing::warn!("webhook {}: acknowledging up to {at}: {e}", hook.url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_parse_or_name_the_rule() {
        let w = Webhook::parse("http://127.0.0.1:9000/hooks/ocidb").expect("parse");
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 9000, "/hooks/ocidb")
        );
        let w = Webhook::parse("http://hooks.example").expect("parse");
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("hooks.example", 80, "/")
        );
        let w = Webhook::parse("http://[::1]:8080/x").expect("parse");
        assert_eq!((w.host.as_str(), w.port), ("::1", 8080));
        for bad in [
            "https://hooks.example/x",
            "ftp://x",
            "http://",
            "http://user:pw@host/x",
            "http://host:port/x",
            "http://host/a b",
        ] {
            let e = Webhook::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
