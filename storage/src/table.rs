//! Typed tables: a column family with a key type and a value type, both encoded with the
//! canonical codec. Reads decode, and a value that does not decode is an error naming the
//! column, never a panic.

use std::marker::PhantomData;

use fai_primitives::{Decode, Encode};

use crate::{KeyValueStore, Result, StorageError, WriteBatch};

/// A column of keys `K` and values `V`.
pub struct Table<K, V> {
    name: &'static str,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Table<K, V> {}

impl<K: Encode + Decode, V: Encode + Decode> Table<K, V> {
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            _types: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn get(&self, store: &dyn KeyValueStore, key: &K) -> Result<Option<V>> {
        match store.get(self.name, &key.to_bytes())? {
            None => Ok(None),
            Some(bytes) => V::from_bytes(&bytes).map(Some).map_err(|e| self.corrupt(e)),
        }
    }

    pub fn put(&self, batch: &mut WriteBatch, key: &K, value: &V) {
        batch.put(self.name, key.to_bytes(), value.to_bytes());
    }

    pub fn delete(&self, batch: &mut WriteBatch, key: &K) {
        batch.delete(self.name, key.to_bytes());
    }

    /// Every entry, in key order.
    pub fn entries(&self, store: &dyn KeyValueStore) -> Result<Vec<(K, V)>> {
        store
            .scan(self.name)?
            .into_iter()
            .map(|(k, v)| {
                let k = K::from_bytes(&k).map_err(|e| self.corrupt(e))?;
                let v = V::from_bytes(&v).map_err(|e| self.corrupt(e))?;
                Ok((k, v))
            })
            .collect()
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            column: self.name,
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, RocksStore, Schema};

    const SCHEMA: Schema = Schema {
        columns: &["numbers"],
        format_version: 3,
    };
    const NUMBERS: Table<u32, u64> = Table::new("numbers");

    fn exercise(store: &dyn KeyValueStore) {
        let mut batch = WriteBatch::new();
        NUMBERS.put(&mut batch, &1, &10);
        NUMBERS.put(&mut batch, &2, &20);
        store.write(batch).unwrap();
        assert_eq!(NUMBERS.get(store, &1).unwrap(), Some(10));
        assert_eq!(NUMBERS.entries(store).unwrap(), vec![(1, 10), (2, 20)]);

        // A batch that names a missing column changes nothing, not even its good writes.
        let mut bad = WriteBatch::new();
        NUMBERS.delete(&mut bad, &1);
        bad.put("nope", vec![1], vec![2]);
        assert!(matches!(
            store.write(bad),
            Err(StorageError::UnknownColumn(_))
        ));
        assert_eq!(NUMBERS.get(store, &1).unwrap(), Some(10));

        // A value that does not decode is reported as corruption of that column.
        let mut raw = WriteBatch::new();
        raw.put("numbers", 7u32.to_bytes(), vec![1, 2, 3]);
        store.write(raw).unwrap();
        let err = NUMBERS.get(store, &7).unwrap_err();
        assert!(
            err.to_string().contains("corrupt value in column numbers"),
            "{err}"
        );

        // Scanning back: keys under a prefix, at most an upper bound, newest first.
        let mut versions = WriteBatch::new();
        for key in [&b"a\x01"[..], b"k\x01", b"k\x03", b"k\x05", b"l\x00"] {
            versions.put("numbers", key.to_vec(), key.to_vec());
        }
        store.write(versions).unwrap();
        let keys = |prefix: &[u8], upper: &[u8], limit| -> Vec<Vec<u8>> {
            store
                .scan_back("numbers", prefix, upper, limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(b"k", b"k\x04", 10),
            vec![b"k\x03".to_vec(), b"k\x01".to_vec()]
        );
        assert_eq!(keys(b"k", b"k\xff", 1), vec![b"k\x05".to_vec()]);
        assert!(keys(b"k", b"k\x00", 10).is_empty());
        assert!(keys(b"m", b"m\xff", 10).is_empty());
    }

    #[test]
    fn memory_backend_behaves() {
        exercise(&MemoryStore::open(SCHEMA).unwrap());
    }

    #[test]
    fn rocks_backend_behaves_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RocksStore::open(dir.path(), SCHEMA).unwrap();
            exercise(&store);
        }
        let store = RocksStore::open(dir.path(), SCHEMA).unwrap();
        assert_eq!(NUMBERS.get(&store, &2).unwrap(), Some(20));
    }

    #[test]
    fn a_database_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStore::open(dir.path(), SCHEMA).unwrap());
        let newer = Schema {
            format_version: 4,
            ..SCHEMA
        };
        let err = RocksStore::open(dir.path(), newer).unwrap_err();
        assert!(matches!(
            err,
            StorageError::FormatMismatch {
                found: 3,
                expected: 4,
                ..
            }
        ));
        assert!(err.to_string().contains("format version 3"));
    }

    #[test]
    fn a_locked_database_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksStore::open(dir.path(), SCHEMA).unwrap();
        let err = RocksStore::open(dir.path(), SCHEMA).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }
}
