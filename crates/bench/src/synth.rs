//! A seeded, deterministic synthetic registry: repositories of multi-arch
//! images (an index over platform manifests), log-normal layer sizes with
//! base layers shared across images, referrers per image (a signature and
//! an SBOM on the index, an attestation on the SBOM) and a few hot subjects
//! with 10,000+ referrers.
//!
//! The same seed and preset always give the same bytes, so a store and an
//! OCI layout generated apart hold the same digests.
//!
//! Layers and configs are described (digest, size) but not stored: the
//! generated content is a sparse registry, which ocidb ingests by default
//! and which the graph scenarios need (layer bytes would only cost disk).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidb::{Algorithm, Digest, Hasher, ManifestOptions, Result, Store};

pub(crate) const SIGNATURE: &str = "application/vnd.cncf.notary.signature";
pub(crate) const SBOM: &str = "application/spdx+json";
pub(crate) const ATTESTATION: &str = "application/vnd.in-toto+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const PLATFORMS: [(&str, &str); 4] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("linux", "s390x"),
    ("linux", "ppc64le"),
];

/// SplitMix64: tiny, fast and good enough for workload shapes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Log-normal with the given median and shape (Box-Muller).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }
}

/// Store sizes the generator knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// About 10k manifests: seconds to build.
    Small,
    /// About 100k manifests.
    Medium,
    /// About 1M manifests.
    Large,
}

impl Preset {
    /// Parses `small`, `medium` or `large`.
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "small" => Ok(Preset::Small),
            "medium" => Ok(Preset::Medium),
            "large" => Ok(Preset::Large),
            other => Err(ocidb::Error::InvalidArgument {
                value: other.to_string(),
                expected: "a preset: small (~10k manifests), medium (~100k) or large (~1M)".into(),
            }),
        }
    }

    /// The approximate manifest count of this preset.
    pub fn manifests(self) -> u64 {
        match self {
            Preset::Small => 10_000,
            Preset::Medium => 100_000,
            Preset::Large => 1_000_000,
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenSpec {
    /// Seed: the same seed gives the same content.
    pub seed: u64,
    /// Target number of manifests (indexes, platform manifests, referrers).
    pub manifests: u64,
    /// Repositories the images are spread over.
    pub repositories: u64,
    /// Shared base layers (the dedupe pool).
    pub base_layers: u64,
    /// Hot subjects, each with `hot_referrers` referrers.
    pub hot_subjects: u64,
    /// Referrers of each hot subject.
    pub hot_referrers: u64,
}

impl GenSpec {
    /// A spec of about `manifests` manifests with the default shape.
    pub fn sized(manifests: u64, seed: u64) -> GenSpec {
        GenSpec {
            seed,
            manifests,
            repositories: (manifests / 5_000).clamp(1, 200),
            base_layers: 64,
            hot_subjects: if manifests >= 100_000 { 3 } else { 1 },
            hot_referrers: 10_000.min(manifests / 2),
        }
    }

    /// The spec of a preset.
    pub fn preset(p: Preset, seed: u64) -> GenSpec {
        GenSpec::sized(p.manifests(), seed)
    }
}

/// One generated manifest, ready to ingest.
#[derive(Clone, Debug)]
pub struct GenManifest {
    /// Its repository.
    pub repo: String,
    /// Its bytes.
    pub body: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: &'static str,
    /// Tags to set on it.
    pub tags: Vec<String>,
}

/// Digests the scenarios query, noted while generating.
#[derive(Clone, Debug, Default)]
pub struct Landmarks {
    /// (repository, image index) of every image, in generation order.
    pub images: Vec<(String, Digest)>,
    /// (repository, subject) with exactly one referrer (a signature).
    pub one_referrer: Option<(String, Digest)>,
    /// (repository, subject) with about 100 referrers, 1% SBOMs.
    pub hundred_referrers: Option<(String, Digest)>,
    /// (repository, subject) with `hot_referrers` referrers, 1% SBOMs.
    pub hot: Vec<(String, Digest)>,
    /// The most shared base layer.
    pub popular_layer: Option<Digest>,
    /// Every manifest digest (for lookups).
    pub manifests: Vec<Digest>,
}

/// Streams generated manifests, children before parents, in batches.
pub struct Generator {
    spec: GenSpec,
    rng: Rng,
    bases: Vec<(Digest, u64)>,
    made: u64,
    image: u64,
    /// What the scenarios will ask about.
    pub landmarks: Landmarks,
}

fn fake_digest(rng: &mut Rng) -> Digest {
    let mut raw = [0u8; 32];
    for c in raw.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Hasher::digest_of(Algorithm::Sha256, &raw)
}

fn descriptor(media_type: &str, d: &Digest, size: u64) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{d}","size":{size}}}"#)
}

impl Generator {
    /// A generator for `spec`.
    pub fn new(spec: GenSpec) -> Generator {
        let mut rng = Rng::new(spec.seed);
        let bases = (0..spec.base_layers.max(1))
            .map(|_| {
                let size = rng.log_normal(30.0 * 1024.0 * 1024.0, 1.0) as u64 + 1;
                (fake_digest(&mut rng), size)
            })
            .collect();
        Generator {
            spec,
            rng,
            bases,
            made: 0,
            image: 0,
            landmarks: Landmarks::default(),
        }
    }

    fn push(&mut self, out: &mut Vec<GenManifest>, repo: &str, mt: &'static str, body: String) {
        let body = body.into_bytes();
        let digest = Hasher::digest_of(Algorithm::Sha256, &body);
        self.landmarks.manifests.push(digest);
        self.made += 1;
        out.push(GenManifest {
            repo: repo.to_string(),
            body,
            digest,
            media_type: mt,
            tags: Vec::new(),
        });
    }

    fn platform_manifest(&mut self, out: &mut Vec<GenManifest>, repo: &str) -> (Digest, u64) {
        let layers = 3 + self.rng.below(6);
        let mut parts = Vec::new();
        // Images mostly share their bottom layer; popular bases are popular.
        let b = (self.rng.unit().powi(3) * self.bases.len() as f64) as usize;
        let (bd, bs) = self.bases[b.min(self.bases.len() - 1)];
        parts.push(descriptor(LAYER, &bd, bs));
        for _ in 1..layers {
            // Mostly small, a few of hundreds of MiB.
            let size = self.rng.log_normal(2.0 * 1024.0 * 1024.0, 1.8) as u64 + 1;
            let d = fake_digest(&mut self.rng);
            parts.push(descriptor(LAYER, &d, size));
        }
        let cfg = fake_digest(&mut self.rng);
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            descriptor(CONFIG, &cfg, 1000 + self.rng.below(9000)),
            parts.join(",")
        );
        let size = body.len() as u64;
        self.push(out, repo, OCI_MANIFEST, body);
        (
            self.landmarks.manifests[self.landmarks.manifests.len() - 1],
            size,
        )
    }

    fn referrer(
        &mut self,
        out: &mut Vec<GenManifest>,
        repo: &str,
        subject: (&Digest, u64, &str),
        artifact_type: &str,
        n: u64,
    ) -> (Digest, u64) {
        let payload = fake_digest(&mut self.rng);
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{}],"subject":{},"annotations":{{"org.opencontainers.image.created":"2026-11-28T00:00:00Z","n":"{n}"}}}}"#,
            descriptor(
                "application/octet-stream",
                &payload,
                500 + self.rng.below(4000)
            ),
            descriptor(subject.2, subject.0, subject.1),
        );
        let size = body.len() as u64;
        self.push(out, repo, OCI_MANIFEST, body);
        (
            self.landmarks.manifests[self.landmarks.manifests.len() - 1],
            size,
        )
    }

    /// The next batch of about `target` manifests (children first), or
    /// None when the spec's count is reached.
    pub fn next_batch(&mut self, target: usize) -> Option<Vec<GenManifest>> {
        if self.made >= self.spec.manifests {
            return None;
        }
        let mut out = Vec::with_capacity(target + 16);
        while out.len() < target && self.made < self.spec.manifests {
            let n = self.image;
            self.image += 1;
            let repo = format!("bench/repo-{:03}", n % self.spec.repositories.max(1));
            let platforms = 1 + self.rng.below(PLATFORMS.len() as u64) as usize;
            let mut entries = Vec::new();
            for (os, arch) in PLATFORMS.iter().take(platforms) {
                let (d, size) = self.platform_manifest(&mut out, &repo);
                entries.push(format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
                ));
            }
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                entries.join(",")
            );
            let index_size = body.len() as u64;
            self.push(&mut out, &repo, OCI_INDEX, body);
            let index = self.landmarks.manifests[self.landmarks.manifests.len() - 1];
            if let Some(last) = out.last_mut() {
                last.tags.push(format!("v{n}"));
            }
            self.landmarks.images.push((repo.clone(), index));
            let subject = (&index, index_size, OCI_INDEX);
            // Hot subjects first, while the budget lasts.
            let hot_left = self.landmarks.hot.len() < self.spec.hot_subjects as usize;
            let k = if self.landmarks.one_referrer.is_none() && n > 0 {
                self.landmarks.one_referrer = Some((repo.clone(), index));
                1
            } else if self.landmarks.hundred_referrers.is_none() && n > 1 {
                self.landmarks.hundred_referrers = Some((repo.clone(), index));
                100
            } else if hot_left && n > 2 {
                self.landmarks.hot.push((repo.clone(), index));
                self.spec.hot_referrers
            } else {
                0
            };
            if k > 0 {
                for j in 0..k {
                    let at = if j % 100 == 99 { SBOM } else { SIGNATURE };
                    self.referrer(&mut out, &repo, subject, at, j);
                }
                continue;
            }
            // The usual set: a signature and an SBOM on the image, and an
            // attestation on the SBOM (a referrer of a referrer).
            self.referrer(&mut out, &repo, subject, SIGNATURE, 0);
            let (sbom, sbom_size) = self.referrer(&mut out, &repo, subject, SBOM, 1);
            self.referrer(
                &mut out,
                &repo,
                (&sbom, sbom_size, OCI_MANIFEST),
                ATTESTATION,
                2,
            );
        }
        self.landmarks.popular_layer = self.bases.first().map(|b| b.0);
        Some(out)
    }
}

/// What [`generate_into_store`] made.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Manifests ingested.
    pub manifests: u64,
    /// Seconds spent in the store's batch calls alone: what the peers and
    /// baselines time of theirs (generating the content is left out of
    /// every side).
    pub seconds: f64,
    /// Wall time, generating the content included, in seconds.
    pub wall_seconds: f64,
    /// Digests the scenarios use.
    pub landmarks: Landmarks,
}

/// Ingests `spec` into `store`, in batches of `batch` manifests (each one
/// transaction, as `Store::put_manifest_batch` makes it; the last commit
/// is durable).
pub fn generate_into_store(
    store: &Store,
    spec: &GenSpec,
    batch: usize,
    mut progress: impl FnMut(u64),
) -> Result<Generated> {
    let mut g = Generator::new(spec.clone());
    let started = std::time::Instant::now();
    let mut in_store = std::time::Duration::ZERO;
    let mut made = 0u64;
    while let Some(items) = g.next_batch(batch) {
        let batch: Vec<(&str, &[u8], ManifestOptions)> = items
            .iter()
            .map(|m| {
                (
                    m.repo.as_str(),
                    m.body.as_slice(),
                    // Each batch is a durable commit, as each of the fair
                    // SQLite peer's is (synchronous=FULL). It also bounds
                    // the file: redb reuses the pages a commit frees only
                    // once a durable commit follows it. The synthetic graph
                    // stores no blobs: only manifests and their edges.
                    ManifestOptions::default()
                        .media_type(m.media_type)
                        .digest(m.digest)
                        .tags(m.tags.iter().map(String::as_str))
                        .no_sync(false)
                        .children(ocidb::Children::AllowMissing),
                )
            })
            .collect();
        let t0 = std::time::Instant::now();
        store.put_manifest_batch(&batch)?;
        in_store += t0.elapsed();
        made += items.len() as u64;
        progress(made);
    }
    Ok(Generated {
        manifests: made,
        seconds: in_store.as_secs_f64(),
        wall_seconds: started.elapsed().as_secs_f64(),
        landmarks: g.landmarks,
    })
}

/// Writes `spec` as an OCI image layout at `dir` (sparse: manifests only).
/// index.json lists every image index (tagged with `ref.name`) and every
/// referrer, as a layout written by a referrer-aware tool does.
pub fn generate_layout(dir: &Path, spec: &GenSpec) -> Result<Landmarks> {
    use ocidb::error::IoContext as _;
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).context(|| format!("creating {}", blobs.display()))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .context(|| format!("writing {}/oci-layout", dir.display()))?;
    let mut g = Generator::new(spec.clone());
    let mut entries = Vec::new();
    while let Some(items) = g.next_batch(10_000) {
        for m in items {
            let path = blobs.join(m.digest.hex());
            fs::write(&path, &m.body).context(|| format!("writing {}", path.display()))?;
            let is_referrer = m.body.windows(10).any(|w| w == br#""subject":"#);
            if !m.tags.is_empty() || is_referrer {
                let mut e = format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{}"#,
                    m.media_type,
                    m.digest,
                    m.body.len()
                );
                if let Some(t) = m.tags.first() {
                    e.push_str(&format!(
                        r#","annotations":{{"org.opencontainers.image.ref.name":"{t}"}}"#
                    ));
                }
                e.push('}');
                entries.push(e);
            }
        }
    }
    let path = dir.join("index.json");
    let mut f = fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
    write!(
        f,
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .context(|| format!("writing {}", path.display()))?;
    Ok(g.landmarks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_content_and_the_shape_asked_for() {
        let spec = GenSpec::sized(3_000, 7);
        let run = |spec: &GenSpec| {
            let mut g = Generator::new(spec.clone());
            let mut all = Vec::new();
            while let Some(b) = g.next_batch(500) {
                all.extend(b.into_iter().map(|m| m.digest));
            }
            (all, g.landmarks)
        };
        let (a, marks) = run(&spec);
        let (b, _) = run(&spec);
        assert_eq!(a, b);
        let (c, _) = run(&GenSpec::sized(3_000, 8));
        assert_ne!(a, c, "another seed, other content");
        assert!(
            a.len() as u64 >= 3_000 && a.len() < 3_000 + 1_600,
            "{}",
            a.len()
        );
        assert_eq!(marks.hot.len(), 1);
        assert!(marks.one_referrer.is_some() && marks.hundred_referrers.is_some());
    }

    #[test]
    fn log_normal_sizes_are_mostly_small_with_a_long_tail() {
        let mut r = Rng::new(1);
        let mut v: Vec<f64> = (0..20_000).map(|_| r.log_normal(2e6, 1.8)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((1.5e6..2.7e6).contains(&median), "{median}");
        assert!(v[v.len() - 1] > 100e6, "a tail of hundreds of MiB");
    }
}
