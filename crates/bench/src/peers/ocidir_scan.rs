//! The ocidir crate reading the generated OCI layout.

use std::path::Path;

use super::peer_err;
use ocidb::{Digest, Result};

/// The ocidir peer: the crate's own reader over the generated layout.
pub struct Ocidir {
    dir: ocidir::OciDir,
}

impl Ocidir {
    /// Opens the layout at `path`.
    pub fn open(path: &Path) -> Result<Ocidir> {
        use ocidir::cap_std;
        let d = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| peer_err("ocidir open", e))?;
        let dir = ocidir::OciDir::open(d).map_err(|e| peer_err("ocidir open", e))?;
        Ok(Ocidir { dir })
    }

    /// Referrers of `subject`: read index.json, then every manifest it
    /// lists, keeping those whose subject matches.
    pub fn referrers(&self, subject: &Digest, at: Option<&str>) -> Result<usize> {
        use ocidir::oci_spec::image::{ImageIndex, ImageManifest, MediaType};
        let index = self
            .dir
            .read_index()
            .map_err(|e| peer_err("ocidir index.json", e))?;
        let want = subject.to_string();
        let mut n = 0;
        for desc in index.manifests() {
            let (subj, artifact_type) = match desc.media_type() {
                MediaType::ImageIndex => {
                    let m: ImageIndex = self
                        .dir
                        .read_json_blob(desc)
                        .map_err(|e| peer_err("ocidir read", e))?;
                    (m.subject().clone(), m.artifact_type().clone())
                }
                _ => {
                    let m: ImageManifest = self
                        .dir
                        .read_json_blob(desc)
                        .map_err(|e| peer_err("ocidir read", e))?;
                    (m.subject().clone(), m.artifact_type().clone())
                }
            };
            let Some(s) = subj else { continue };
            if s.digest().to_string() != want {
                continue;
            }
            if let Some(at) = at
                && artifact_type.map(|t| t.to_string()).as_deref() != Some(at)
            {
                continue;
            }
            n += 1;
        }
        Ok(n)
    }
}
