//! Key files in the data directory: `keys/NAME.key` holds one secp256k1 secret key as
//! hex, readable by its owner only. The node key (`node`) receives mining rewards unless
//! the configuration names another address.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fai_primitives::SecretKey;

/// The key the node mines and signs with.
pub const NODE_KEY: &str = "node";

/// The path of key `name` in `data_dir`.
pub fn key_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("key name {name:?} may use only letters, digits, '-' and '_'");
    }
    Ok(data_dir.join("keys").join(format!("{name}.key")))
}

/// Creates key `name`; fails if it exists (a key is never overwritten).
pub fn create(data_dir: &Path, name: &str) -> Result<SecretKey> {
    let path = key_path(data_dir, name)?;
    if path.exists() {
        bail!(
            "key file {} already exists; choose another name with --name",
            path.display()
        );
    }
    let dir = path.parent().context("key path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = SecretKey::generate();
    let mut file = fai_wallet::keystore::create_private_file(&path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "{}", key.to_hex())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()?;
    Ok(key)
}

/// Reads key `name`.
pub fn load(data_dir: &Path, name: &str) -> Result<SecretKey> {
    let path = key_path(data_dir, name)?;
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read key file {} (create it with `infer-node keys new --name {name}`)",
            path.display()
        )
    })?;
    text.trim()
        .parse::<SecretKey>()
        .with_context(|| format!("key file {} does not hold a valid key", path.display()))
}

/// Reads key `name`, creating it first if it does not exist.
pub fn load_or_create(data_dir: &Path, name: &str) -> Result<(SecretKey, bool)> {
    if key_path(data_dir, name)?.exists() {
        Ok((load(data_dir, name)?, false))
    } else {
        Ok((create(data_dir, name)?, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = create(dir.path(), "alice").unwrap();
        assert_eq!(load(dir.path(), "alice").unwrap(), k);
        assert!(create(dir.path(), "alice")
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(key_path(dir.path(), "alice").unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(key_path(dir.path(), "../etc").is_err());
        fs::write(key_path(dir.path(), "bad").unwrap(), "zz").unwrap();
        assert!(format!("{:#}", load(dir.path(), "bad").unwrap_err()).contains("valid key"));
    }
}
