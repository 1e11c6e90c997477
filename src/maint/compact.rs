//! Compaction of the database file.

use crate::error::{Error, Result};
use crate::store::Store;
use std::sync::Arc;

impl Store {
    /// Reclaims free space in the redb file (see ARCHITECTURE.md, "File
    /// growth"). Needs exclusive access: the writer thread is stopped and
    /// restarted around it. Returns the file size before and after.
    pub fn compact(&mut self) -> Result<(u64, u64)> {
        let path = self.root.join(crate::store::DB_FILE);
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let before = size(&path);
        self.stop_writer();
        let res = match Arc::get_mut(&mut self.db) {
            Some(db) => {
                // redb compacts in rounds; repeat while it makes progress.
                let mut r = Ok(());
                for _ in 0..8 {
                    match db.compact() {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            r = Err(Error::from(e));
                            break;
                        }
                    }
                }
                r
            }
            None => Err(Error::InvalidArgument {
                value: "compact".into(),
                expected: "no other handle using the store while compacting".into(),
            }),
        };
        self.start_writer()?;
        res?;
        Ok((before, size(&path)))
    }
}
