//! The RocksDB backend: one column family per table, batches written atomically with the
//! write-ahead log on, so a crash leaves either all of a block's writes or none.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, DB};

use crate::{
    KeyValue, KeyValueStore, Result, Schema, StorageError, WriteBatch, WriteOp, META_COLUMN,
};

/// A RocksDB database opened with a [`Schema`].
pub struct RocksStore {
    db: DB,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksStore({})", self.db.path().display())
    }
}

fn backend(e: rocksdb::Error) -> StorageError {
    StorageError::Backend(e.into_string())
}

impl RocksStore {
    /// Opens (or creates) the database in `path` and checks its format version.
    ///
    /// Errors: [`StorageError::Backend`] when RocksDB cannot open the directory (locked by
    /// another process, unreadable, corrupt), [`StorageError::FormatMismatch`] when the data
    /// was written by a build with another layout.
    pub fn open(path: &Path, schema: Schema) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(512);
        let mut names = vec![META_COLUMN];
        names.extend_from_slice(schema.columns);
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            StorageError::Backend(format!(
                "cannot open {}: {}",
                path.display(),
                e.into_string()
            ))
        })?;
        let store = RocksStore { db };
        crate::check_format_version(&store, &path.display().to_string(), schema.format_version)?;
        Ok(store)
    }

    fn cf(&self, column: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(column)
            .ok_or_else(|| StorageError::UnknownColumn(column.to_string()))
    }
}

impl KeyValueStore for RocksStore {
    fn get(&self, column: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(column)?, key).map_err(backend)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                WriteOp::Put { column, key, value } => wb.put_cf(self.cf(column)?, key, value),
                WriteOp::Delete { column, key } => wb.delete_cf(self.cf(column)?, key),
            }
        }
        self.db.write(wb).map_err(backend)
    }

    fn scan(&self, column: &'static str) -> Result<Vec<KeyValue>> {
        self.db
            .iterator_cf(self.cf(column)?, IteratorMode::Start)
            .map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(backend)
            })
            .collect()
    }

    fn scan_back(
        &self,
        column: &'static str,
        prefix: &[u8],
        upper: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(column)?,
            IteratorMode::From(upper, rocksdb::Direction::Reverse),
        );
        for item in iter {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}
