//! An index log in memory: for tests, and for hosts that want to see what
//! a store ships.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::IndexLog;
use crate::error::{Error, IoContext as _, Result};

/// Named objects in memory, shared by its clones.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    objects: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>>> {
        self.objects
            .lock()
            .map_err(|_| Error::lock("memory index log lock"))
    }

    /// The names of every object, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.lock()?.keys().cloned().collect())
    }
}

impl IndexLog for MemoryLog {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.lock()?.insert(name.to_string(), Arc::new(bytes));
        Ok(())
    }

    fn put_file(&self, name: &str, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).context(|| format!("reading {}", path.display()))?;
        self.put(name, bytes)
    }

    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>> {
        let Some(b) = self.lock()?.get(name).cloned() else {
            return Ok(None);
        };
        if b.len() as u64 > max_len {
            return Err(Error::Corrupt(format!(
                "index log object {name} holds {} bytes, over the {max_len} an object of its kind may",
                b.len()
            )));
        }
        Ok(Some(b.to_vec()))
    }

    fn get_to_file(&self, name: &str, path: &Path) -> Result<bool> {
        let Some(b) = self.lock()?.get(name).cloned() else {
            return Ok(false);
        };
        std::fs::write(path, &*b).context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = format!("{dir}/");
        Ok(self
            .lock()?
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.lock()?.remove(name);
        Ok(())
    }
}
