//! The key pre-pass over a manifest body, before it is parsed: duplicate
//! keys, keys that Go's case-insensitive field matching would read as a
//! spec field, and nesting deeper than [`MAX_JSON_DEPTH`]. Two parsers must
//! never see two different manifests in one body.

/// Field names the image and distribution specs define. Go's encoding/json
/// matches struct fields case-insensitively, so another casing of one of
/// these is the same field to skopeo, crane and containerd.
const SPEC_FIELDS: [&str; 20] = [
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "blobs",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// Deepest nesting accepted in a manifest, unknown fields included.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `key` equals `spec` under Go's case folding of field names:
/// ASCII case plus the two non-ASCII letters that fold to ASCII ones (the
/// Kelvin sign and the long s). Allocates nothing.
fn folds_to(key: &str, spec: &str) -> bool {
    // Each spec character is one byte; a key character folding to it is
    // one to three (the Kelvin sign).
    if key.len() < spec.len() || key.len() > 3 * spec.len() {
        return false;
    }
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    let mut k = key.chars().map(fold);
    let mut s = spec.chars().map(|c| c.to_ascii_lowercase());
    loop {
        match (k.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Walks the whole document once before it is parsed: every object's keys
/// are unique, no spec field appears in another casing (annotation maps,
/// whose keys are data, excepted), and nesting stays within
/// [`MAX_JSON_DEPTH`], inside unknown fields too.
pub(crate) fn check_keys(body: &[u8]) -> std::result::Result<(), String> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = KeyCheck {
        depth: 0,
        annotations: false,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        // Not JSON at all: the parse that follows says what is wrong.
        Err(e) if e.is_syntax() || e.is_eof() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Clone, Copy)]
struct KeyCheck {
    depth: usize,
    /// The object being read is an annotation map.
    annotations: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyCheck {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyCheck {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested::<A::Error>()?;
        while seq
            .next_element_seed(KeyCheck {
                annotations: false,
                ..inner
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        let inner = self.nested::<A::Error>()?;
        // Most objects have a handful of keys: a list beats a hash set.
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut seen_set: std::collections::HashSet<std::borrow::Cow<'de, str>> =
            std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !self.annotations
                && let Some(spec) = SPEC_FIELDS.iter().find(|f| **f != key && folds_to(&key, f))
            {
                return Err(A::Error::custom(format!(
                        "field `{}` is another casing of the spec field `{spec}`; Go clients read it as `{spec}`, so it is refused",
                        crate::text::quote_untrusted(&key)
                    )));
            }
            let annotations = !self.annotations && key == "annotations";
            let twice = if seen_set.is_empty() && seen.len() < 16 {
                seen.contains(&key)
            } else {
                seen_set.extend(seen.drain(..));
                seen_set.contains(&key)
            };
            if twice {
                return Err(A::Error::custom(format!(
                    "key `{}` appears twice in one object; a key may appear once",
                    crate::text::quote_untrusted(&key)
                )));
            }
            if seen_set.is_empty() {
                seen.push(key);
            } else {
                seen_set.insert(key);
            }
            map.next_value_seed(KeyCheck {
                annotations,
                ..inner
            })?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

impl KeyCheck {
    fn nested<E: serde::de::Error>(self) -> Result<KeyCheck, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(format!(
                "JSON nests deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok(KeyCheck {
            depth: self.depth + 1,
            ..self
        })
    }
}
