//! Named counters in the `meta` table (repository, artifact-type and lease
//! ids).

use crate::engine::Batch;
use crate::error::Result;
use crate::schema::record::le8;
use redb::ReadableTable as _;

/// Takes the next value of a named counter in `meta` (1 first).
pub(crate) fn next_counter(b: &mut Batch<'_>, name: &str) -> Result<u64> {
    let cur =
        b.t.meta
            .get(name)?
            .map(|g| le8(g.value()))
            .map_or(1, u64::from_le_bytes);
    b.t.meta
        .insert(name, cur.wrapping_add(1).to_le_bytes().as_slice())?;
    Ok(cur)
}
