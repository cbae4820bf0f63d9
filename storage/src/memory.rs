//! An in-memory [`KeyValueStore`] with the same behaviour as RocksDB's: for unit tests
//! and benchmarks that should not touch the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use crate::{
    KeyValue, KeyValueStore, Result, Schema, StorageError, WriteBatch, WriteOp, META_COLUMN,
};

type Column = BTreeMap<Vec<u8>, Vec<u8>>;

/// A store that lives in memory and vanishes when dropped.
#[derive(Debug)]
pub struct MemoryStore {
    columns: RwLock<HashMap<&'static str, Column>>,
}

impl MemoryStore {
    /// A new empty store with the columns of `schema`, stamped with its format version.
    pub fn open(schema: Schema) -> Result<Self> {
        let mut columns = HashMap::new();
        columns.insert(META_COLUMN, Column::new());
        for c in schema.columns {
            columns.insert(*c, Column::new());
        }
        let store = MemoryStore {
            columns: RwLock::new(columns),
        };
        crate::check_format_version(&store, "memory", schema.format_version)?;
        Ok(store)
    }
}

fn unknown(column: &str) -> StorageError {
    StorageError::UnknownColumn(column.to_string())
}

impl KeyValueStore for MemoryStore {
    fn get(&self, column: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cols = self.columns.read().unwrap_or_else(|e| e.into_inner());
        let col = cols.get(column).ok_or_else(|| unknown(column))?;
        Ok(col.get(key).cloned())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut cols = self.columns.write().unwrap_or_else(|e| e.into_inner());
        // Check every column first so a bad batch changes nothing.
        for op in batch.ops() {
            let (WriteOp::Put { column, .. } | WriteOp::Delete { column, .. }) = op;
            if !cols.contains_key(column) {
                return Err(unknown(column));
            }
        }
        for op in batch.ops {
            match op {
                WriteOp::Put { column, key, value } => {
                    cols.get_mut(column)
                        .ok_or_else(|| unknown(column))?
                        .insert(key, value);
                }
                WriteOp::Delete { column, key } => {
                    cols.get_mut(column)
                        .ok_or_else(|| unknown(column))?
                        .remove(&key);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, column: &'static str) -> Result<Vec<KeyValue>> {
        let cols = self.columns.read().unwrap_or_else(|e| e.into_inner());
        let col = cols.get(column).ok_or_else(|| unknown(column))?;
        Ok(col.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn scan_back(
        &self,
        column: &'static str,
        prefix: &[u8],
        upper: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let cols = self.columns.read().unwrap_or_else(|e| e.into_inner());
        let col = cols.get(column).ok_or_else(|| unknown(column))?;
        Ok(col
            .range(..=upper.to_vec())
            .rev()
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
