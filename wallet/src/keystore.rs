//! The keystore: a 24-word BIP39 mnemonic is the wallet; everything else is derived from it.
//!
//! - Key: the first 32 bytes of HMAC-SHA512(key "fai wallet seed", BIP39 seed of the
//!   mnemonic with an empty BIP39 passphrase). The same key signs on both layers and has
//!   the same address on both.
//! - Keystore `wallets/NAME.json`, readable by its owner only (0600): the address in the
//!   clear, and the mnemonic encrypted with ChaCha20-Poly1305 under a key stretched from
//!   the passphrase by Argon2id (64 MiB, 3 passes; parameters and salt stored, so a later
//!   build can raise them for new files and still open old ones).
//! - A keystore is never overwritten, and a wrong passphrase is told apart from a damaged
//!   file only by the authentication tag: both say the file cannot be opened with it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use bip39::Mnemonic;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fai_primitives::{Address, Network, SecretKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha512;

/// The environment variable a passphrase may come from (for scripts).
pub const PASSPHRASE_ENV: &str = "FAI_WALLET_PASSPHRASE";
/// The shortest passphrase accepted for a new keystore.
pub const MIN_PASSPHRASE: usize = 8;

/// Argon2id memory (KiB) and passes for new keystores.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfParams {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherParams {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keystore {
    version: u32,
    network: String,
    address: String,
    kdf: KdfParams,
    cipher: CipherParams,
}

/// An opened wallet.
pub struct Wallet {
    pub key: SecretKey,
    pub address: Address,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address)
    }
}

/// The key of a mnemonic.
pub fn derive_key(mnemonic: &Mnemonic) -> Result<SecretKey> {
    let seed = mnemonic.to_seed("");
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(b"fai wallet seed").context("HMAC key")?;
    mac.update(&seed);
    let out = mac.finalize().into_bytes();
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&out[..32]);
    SecretKey::from_bytes(&secret).context("the mnemonic derives an invalid key; make another")
}

/// The path of wallet `name` in `data_dir`.
pub fn wallet_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("wallet name {name:?} may use only letters, digits, '-' and '_' (at most 64)");
    }
    Ok(data_dir.join("wallets").join(format!("{name}.json")))
}

fn stretch(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    let params =
        Params::new(m, t, p, Some(32)).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(key)
}

/// Creates a new file at `path` readable and writable by its owner only (0600 on Unix);
/// fails if one exists. For secrets: keystores, keys, API keys.
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn write_keystore(path: &Path, store: &Keystore) -> Result<()> {
    let dir = path.parent().context("wallet path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = create_private_file(path).with_context(|| {
        format!(
            "cannot create {} (a wallet is never overwritten; choose another --name)",
            path.display()
        )
    })?;
    file.write_all(serde_json::to_string_pretty(store)?.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Encrypts `mnemonic` under `passphrase` into a new keystore `name`.
pub fn save(
    data_dir: &Path,
    name: &str,
    network: Network,
    mnemonic: &Mnemonic,
    passphrase: &str,
) -> Result<Wallet> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        bail!("the passphrase must have at least {MIN_PASSPHRASE} characters");
    }
    let path = wallet_path(data_dir, name)?;
    if path.exists() {
        bail!(
            "wallet {} already exists; choose another --name",
            path.display()
        );
    }
    let key = derive_key(mnemonic)?;
    let address = Address::from_public_key(network, &key.public_key());
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let secret = stretch(passphrase, &salt, M_COST_KIB, T_COST, 1)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&secret));
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), mnemonic.to_string().as_bytes())
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let store = Keystore {
        version: 1,
        network: network.to_string(),
        address: address.to_string(),
        kdf: KdfParams {
            algorithm: "argon2id".into(),
            m_cost_kib: M_COST_KIB,
            t_cost: T_COST,
            p_cost: 1,
            salt: hex::encode(salt),
        },
        cipher: CipherParams {
            algorithm: "chacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        },
    };
    write_keystore(&path, &store)?;
    Ok(Wallet { key, address })
}

/// A new wallet: a fresh 24-word mnemonic, saved under `passphrase`. Returns the wallet
/// and the mnemonic, which the user must write down.
pub fn create(
    data_dir: &Path,
    name: &str,
    network: Network,
    passphrase: &str,
) -> Result<(Wallet, Mnemonic)> {
    let mut entropy = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut entropy);
    let mnemonic = Mnemonic::from_entropy(&entropy).context("mnemonic")?;
    let wallet = save(data_dir, name, network, &mnemonic, passphrase)?;
    Ok((wallet, mnemonic))
}

/// Imports a mnemonic as wallet `name`.
pub fn import(
    data_dir: &Path,
    name: &str,
    network: Network,
    phrase: &str,
    passphrase: &str,
) -> Result<Wallet> {
    let mnemonic = Mnemonic::parse_normalized(phrase.trim())
        .map_err(|e| anyhow::anyhow!("not a valid BIP39 mnemonic: {e}"))?;
    save(data_dir, name, network, &mnemonic, passphrase)
}

/// The largest keystore file read (one is about 700 bytes).
pub const MAX_KEYSTORE_BYTES: u64 = 64 * 1024;

/// A keystore's contents, decoded and checked, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKeystore {
    pub network: String,
    pub address: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: Vec<u8>,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// Decodes a keystore file's bytes: a format this build reads, parameters within bounds
/// (Argon2id memory at most 4 GiB, at most 100 passes, a salt of 8 to 64 bytes, a 12-byte
/// nonce, a ciphertext of a mnemonic's size), or an error saying which.
pub fn parse(bytes: &[u8]) -> Result<SealedKeystore> {
    if bytes.len() as u64 > MAX_KEYSTORE_BYTES {
        bail!("the file is over {MAX_KEYSTORE_BYTES} bytes: not a keystore");
    }
    let store: Keystore = serde_json::from_slice(bytes).context("not a keystore")?;
    if store.version != 1
        || store.kdf.algorithm != "argon2id"
        || store.cipher.algorithm != "chacha20poly1305"
    {
        bail!("a keystore format this build cannot read");
    }
    let salt = hex::decode(&store.kdf.salt).context("the salt is not hex")?;
    let nonce: [u8; 12] = hex::decode(&store.cipher.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .context("the nonce is not 12 bytes of hex")?;
    let ciphertext = hex::decode(&store.cipher.ciphertext).context("the ciphertext is not hex")?;
    if store.kdf.m_cost_kib > 4 * 1024 * 1024
        || store.kdf.t_cost > 100
        || !(8..=64).contains(&salt.len())
        || ciphertext.len() > 4096
    {
        bail!("key-stretching parameters out of bounds");
    }
    Ok(SealedKeystore {
        network: store.network,
        address: store.address,
        m_cost_kib: store.kdf.m_cost_kib,
        t_cost: store.kdf.t_cost,
        p_cost: store.kdf.p_cost,
        salt,
        nonce,
        ciphertext,
    })
}

fn read_keystore(data_dir: &Path, name: &str) -> Result<(PathBuf, SealedKeystore)> {
    use std::io::Read;
    let path = wallet_path(data_dir, name)?;
    let file = fs::File::open(&path).with_context(|| {
        format!(
            "cannot read wallet {}; make one with `infer-node wallet new`",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_KEYSTORE_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read wallet {}", path.display()))?;
    let store = parse(&bytes).with_context(|| format!("wallet {} is damaged", path.display()))?;
    Ok((path, store))
}

/// The address of wallet `name` (no passphrase needed).
pub fn address(data_dir: &Path, name: &str, network: Network) -> Result<Address> {
    let (path, store) = read_keystore(data_dir, name)?;
    Address::parse_for(&store.address, network)
        .with_context(|| format!("wallet {}", path.display()))
}

/// Opens wallet `name` with `passphrase`.
pub fn open(data_dir: &Path, name: &str, network: Network, passphrase: &str) -> Result<Wallet> {
    let (path, store) = read_keystore(data_dir, name)?;
    let damaged = || format!("wallet {} is damaged", path.display());
    let secret = stretch(
        passphrase,
        &store.salt,
        store.m_cost_kib,
        store.t_cost,
        store.p_cost,
    )
    .with_context(damaged)?;
    let plain = ChaCha20Poly1305::new(Key::from_slice(&secret))
        .decrypt(Nonce::from_slice(&store.nonce), store.ciphertext.as_slice())
        .map_err(|_| {
            anyhow::anyhow!(
                "wrong passphrase for wallet {} (or the file is damaged)",
                path.display()
            )
        })?;
    let phrase = String::from_utf8(plain).map_err(|_| anyhow::anyhow!("{}", damaged()))?;
    let mnemonic =
        Mnemonic::parse_normalized(&phrase).map_err(|_| anyhow::anyhow!("{}", damaged()))?;
    let key = derive_key(&mnemonic)?;
    let address = Address::from_public_key(network, &key.public_key());
    if address.to_string() != store.address {
        bail!(
            "wallet {} holds a key for another address or network",
            path.display()
        );
    }
    Ok(Wallet { key, address })
}

/// What `wallet sign-message` signs: sha256d("FAI signed message:\n" ‖ message).
pub fn message_digest(message: &str) -> fai_primitives::Hash256 {
    fai_primitives::Hash256::sha256d_parts(&[b"FAI signed message:\n", message.as_bytes()])
}

/// The passphrase: from [`PASSPHRASE_ENV`], or asked on the terminal (twice for a new one).
pub fn passphrase(confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    let first = rpassword::prompt_password("wallet passphrase: ")
        .with_context(|| format!("cannot read a passphrase; set {PASSPHRASE_ENV}"))?;
    if confirm {
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            bail!("the passphrases differ");
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art";

    #[test]
    fn a_wallet_is_its_mnemonic_and_its_keystore_needs_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mnemonic) = create(dir.path(), "main", Network::Devnet, "correct horse").unwrap();
        assert_eq!(mnemonic.word_count(), 24);
        let path = wallet_path(dir.path(), "main").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&mnemonic.to_string()[..20]),
            "the mnemonic is not in the clear"
        );
        assert_eq!(
            address(dir.path(), "main", Network::Devnet).unwrap(),
            w.address
        );
        let opened = open(dir.path(), "main", Network::Devnet, "correct horse").unwrap();
        assert_eq!(opened.address, w.address);
        let err = open(dir.path(), "main", Network::Devnet, "wrong horse").unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        // Never overwritten; short passphrases and bad names refused.
        assert!(create(dir.path(), "main", Network::Devnet, "correct horse").is_err());
        assert!(create(dir.path(), "short", Network::Devnet, "1234567").is_err());
        assert!(create(dir.path(), "../escape", Network::Devnet, "correct horse").is_err());
        // The same mnemonic imported elsewhere gives the same key and address.
        let other = tempfile::tempdir().unwrap();
        let again = import(
            other.path(),
            "copy",
            Network::Devnet,
            &mnemonic.to_string(),
            "another one",
        )
        .unwrap();
        assert_eq!(again.address, w.address);
        assert!(import(
            other.path(),
            "bad",
            Network::Devnet,
            "not a mnemonic at all",
            "another one"
        )
        .is_err());
    }

    /// A keystore file is read within a bound and every field is checked before the
    /// key is stretched: a huge or tampered file is a clear error, not an allocation of
    /// its size or a panic.
    #[test]
    fn a_damaged_or_oversized_keystore_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "main", Network::Devnet, "correct horse").unwrap();
        let path = wallet_path(dir.path(), "main").unwrap();
        let good = fs::read(&path).unwrap();
        let sealed = parse(&good).unwrap();
        assert_eq!(sealed.salt.len(), 16);
        let edit =
            |from: &str, to: &str| String::from_utf8(good.clone()).unwrap().replace(from, to);
        let nonce = hex::encode(sealed.nonce);
        for (bytes, why) in [
            (edit(&nonce, "00"), "nonce"),
            (edit("\"version\": 1", "\"version\": 2"), "format"),
            (edit(&hex::encode(&sealed.salt), "0011"), "bounds"),
            (
                b"{".to_vec().into_iter().map(char::from).collect(),
                "not a keystore",
            ),
        ] {
            let err = parse(bytes.as_bytes()).unwrap_err();
            assert!(format!("{err:#}").contains(why), "{why}: {err:#}");
        }
        let mut huge = good.clone();
        huge.resize(2 * MAX_KEYSTORE_BYTES as usize, b' ');
        fs::write(&path, &huge).unwrap();
        let err = open(dir.path(), "main", Network::Devnet, "correct horse").unwrap_err();
        assert!(format!("{err:#}").contains("over 65536 bytes"), "{err:#}");
    }

    #[test]
    fn the_derivation_is_fixed() {
        let m = Mnemonic::parse_normalized(PHRASE).unwrap();
        let a = derive_key(&m).unwrap();
        let b = derive_key(&m).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        // A damaged keystore is refused, not a panic.
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), "w", Network::Regtest, &m, "passphrase!").unwrap();
        let path = wallet_path(dir.path(), "w").unwrap();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"nonce\": \"", "\"nonce\": \"zz");
        fs::write(&path, text).unwrap();
        assert!(open(dir.path(), "w", Network::Regtest, "passphrase!")
            .unwrap_err()
            .to_string()
            .contains("damaged"));
    }
}
