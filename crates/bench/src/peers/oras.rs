//! The oras-go-style peer: the whole graph in memory, rebuilt at open.

use std::collections::HashMap;
use std::path::Path;

use super::peer_err;
use ocidb::{Digest, Result};

/// One referrer as the oras-style graph keeps it.
#[derive(Clone, Debug)]
struct Node {
    digest: Digest,
    artifact_type: Option<String>,
}

/// The oras-go-style peer: the whole graph rebuilt in memory at open by
/// reading and parsing every manifest of the layout.
pub struct OrasGraph {
    referrers: HashMap<Digest, Vec<Node>>,
    predecessors: HashMap<Digest, Vec<Digest>>,
    /// Manifests read at open.
    pub manifests: usize,
}

#[derive(serde::Deserialize)]
struct Desc {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: String,
}

#[derive(serde::Deserialize)]
struct AnyManifest {
    #[serde(default)]
    manifests: Vec<Desc>,
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
    subject: Option<Desc>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

impl OrasGraph {
    /// Reads index.json and every manifest reachable from it.
    pub fn open(layout: &Path) -> Result<OrasGraph> {
        let read = |d: &str| -> Result<Vec<u8>> {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            let p = layout.join("blobs").join("sha256").join(hex);
            std::fs::read(&p).map_err(|e| peer_err(&format!("reading {}", p.display()), e))
        };
        let index: AnyManifest = serde_json::from_slice(
            &std::fs::read(layout.join("index.json")).map_err(|e| peer_err("index.json", e))?,
        )
        .map_err(|e| peer_err("index.json", e))?;
        let mut g = OrasGraph {
            referrers: HashMap::new(),
            predecessors: HashMap::new(),
            manifests: 0,
        };
        let mut queue: Vec<String> = index.manifests.into_iter().map(|d| d.digest).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = queue.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let body = read(&d)?;
            let m: AnyManifest =
                serde_json::from_slice(&body).map_err(|e| peer_err(&format!("manifest {d}"), e))?;
            g.manifests += 1;
            let me = Digest::parse(&d)?;
            for c in m
                .manifests
                .iter()
                .chain(m.config.iter())
                .chain(m.layers.iter())
            {
                let cd = Digest::parse(&c.digest)?;
                g.predecessors.entry(cd).or_default().push(me);
                if c.media_type.contains("manifest") || c.media_type.contains("index") {
                    queue.push(c.digest.clone());
                }
            }
            if let Some(s) = m.subject {
                g.referrers
                    .entry(Digest::parse(&s.digest)?)
                    .or_default()
                    .push(Node {
                        digest: me,
                        artifact_type: m.artifact_type,
                    });
            }
        }
        Ok(g)
    }

    /// Referrers of `subject` from memory.
    pub fn referrers(&self, subject: &Digest, at: Option<&str>) -> usize {
        self.referrers.get(subject).map_or(0, |v| {
            v.iter()
                .filter(|n| at.is_none() || n.artifact_type.as_deref() == at)
                .map(|n| n.digest)
                .collect::<Vec<_>>()
                .len()
        })
    }

    /// Parents of `d` from memory.
    pub fn predecessors(&self, d: &Digest) -> usize {
        self.predecessors.get(d).map_or(0, |v| v.clone().len())
    }
}
