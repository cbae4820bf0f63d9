//! Storage for infer-node: a key-value store with named column families, written through
//! atomic batches, and typed tables on top of it.
//!
//! Two backends share the [`KeyValueStore`] trait: [`RocksStore`] (RocksDB, what a node
//! runs on) and [`MemoryStore`] (a `BTreeMap`, for unit tests). Every database carries a
//! format version in its `meta` column, checked when it is opened, so a node never reads
//! data laid out by another build without saying so.
//!
//! Values are encoded with the canonical codec of `fai-primitives`; a value that does not
//! decode is reported as [`StorageError::Corrupt`] with the column it came from.

mod memory;
mod rocks;
mod table;

use thiserror::Error;

pub use memory::MemoryStore;
pub use rocks::RocksStore;
pub use table::Table;

/// The column every database has, holding the format version and other metadata.
pub const META_COLUMN: &str = "meta";

/// The key of the format version in [`META_COLUMN`].
pub const FORMAT_VERSION_KEY: &[u8] = b"format_version";

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Backend(String),
    #[error(
        "the database in {path} has format version {found}, this build reads version {expected}; \
         move it aside and resync, or run a build that matches it"
    )]
    FormatMismatch {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("corrupt value in column {column}: {detail}")]
    Corrupt {
        column: &'static str,
        detail: String,
    },
    #[error("unknown column {0}")]
    UnknownColumn(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The tables a database holds and the layout version of their contents.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Column family names, not counting [`META_COLUMN`], which is always there.
    pub columns: &'static [&'static str],
    /// Bumped whenever the layout of any column changes.
    pub format_version: u32,
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        column: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        column: &'static str,
        key: Vec<u8>,
    },
}

/// Writes applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, column: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put { column, key, value });
    }

    pub fn delete(&mut self, column: &'static str, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete { column, key });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }
}

/// A key and value read from a column.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A key-value store with named columns and atomic batches.
pub trait KeyValueStore: Send + Sync {
    /// The value under `key` in `column`, if any.
    fn get(&self, column: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies every write of `batch` atomically.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Every key and value of `column`, in key order.
    fn scan(&self, column: &'static str) -> Result<Vec<KeyValue>>;

    /// At most `limit` entries of `column` whose keys start with `prefix` and are at most
    /// `upper`, from the greatest key down: the newest versions of a versioned key.
    fn scan_back(
        &self,
        column: &'static str,
        prefix: &[u8],
        upper: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>>;
}

/// Reads the stored format version, writes `expected` into a new database, and fails on
/// a mismatch. Both backends call it when they open.
fn check_format_version(store: &dyn KeyValueStore, path: &str, expected: u32) -> Result<()> {
    match store.get(META_COLUMN, FORMAT_VERSION_KEY)? {
        None => {
            let mut batch = WriteBatch::new();
            batch.put(
                META_COLUMN,
                FORMAT_VERSION_KEY.to_vec(),
                expected.to_le_bytes().to_vec(),
            );
            store.write(batch)
        }
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| StorageError::Corrupt {
                    column: META_COLUMN,
                    detail: format!("format version of {} bytes", bytes.len()),
                })?;
            if found == expected {
                Ok(())
            } else {
                Err(StorageError::FormatMismatch {
                    path: path.to_string(),
                    found,
                    expected,
                })
            }
        }
    }
}
