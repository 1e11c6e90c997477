//! The redb schema: table definitions, key layouts and record codecs.
//! Values only; nothing here opens a transaction of its own.

pub(crate) mod body;
pub(crate) mod codec;
pub(crate) mod keys;
pub(crate) mod logged;
pub(crate) mod record;
pub(crate) mod reverse;
pub(crate) mod tables;
