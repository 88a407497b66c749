//! Ethereum V3 keystore files ("Web3 Secret Storage"), as geth, clef and
//! eth-account write them: scrypt or PBKDF2-HMAC-SHA256 key derivation,
//! AES-128-CTR, and a keccak256 MAC. A keystore directory holds one key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Address, PrivateKey, keccak256};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Work factors refused when reading a file: a hostile keystore must not make us
/// allocate gigabytes or spin for minutes.
const MAX_SCRYPT_MEMORY_BYTES: u64 = 1 << 30;
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no keystore file in {0} (create one with `lpgpu keys new` or `lpgpu keys import`)")]
    NoKey(PathBuf),
    #[error(
        "{dir} holds several keystore files ({count}); lpgpu uses one key per keystore directory"
    )]
    SeveralKeys { dir: PathBuf, count: usize },
    #[error("{0} already holds a key; use another --keystore directory")]
    AlreadyHasKey(PathBuf),
    #[error("{path}: not a V3 keystore file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("wrong password (the keystore MAC does not match)")]
    WrongPassword,
    #[error("the key in the keystore is not a valid secp256k1 key")]
    InvalidKey,
    #[error("keystore says address {stated} but its key is for {actual}")]
    AddressMismatch { stated: Address, actual: Address },
}

/// How hard new keys are to brute-force (and how slow they are to unlock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfStrength {
    /// geth's standard scrypt: N = 2^18, r = 8, p = 1 (256 MiB, about a second).
    Standard,
    /// geth's `--lightkdf`: N = 2^12, r = 8, p = 6. For tests and throwaway keys.
    Light,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeystoreJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(alias = "Crypto")]
    pub crypto: CryptoJson,
    #[serde(default)]
    pub id: Option<String>,
    pub version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CryptoJson {
    pub cipher: String,
    pub ciphertext: String,
    pub cipherparams: CipherParams,
    pub kdf: String,
    pub kdfparams: serde_json::Value,
    pub mac: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CipherParams {
    pub iv: String,
}

#[derive(Debug, Deserialize)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Debug, Deserialize)]
struct Pbkdf2Params {
    c: u32,
    dklen: usize,
    prf: String,
    salt: String,
}

/// Encrypts `key` under `password` into a V3 keystore document.
pub fn encrypt(key: &PrivateKey, password: &[u8], strength: KdfStrength) -> KeystoreJson {
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    let mut uuid = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut iv);
    rand::rngs::OsRng.fill_bytes(&mut uuid);
    let (log_n, r, p) = match strength {
        KdfStrength::Standard => (18u8, 8u32, 1u32),
        KdfStrength::Light => (12, 8, 6),
    };
    let mut derived = Zeroizing::new([0u8; 32]);
    #[allow(clippy::expect_used, reason = "fixed parameters and output length")]
    let params = scrypt::Params::new(log_n, r, p).expect("fixed scrypt parameters are valid");
    #[allow(clippy::expect_used, reason = "fixed parameters and output length")]
    scrypt::scrypt(password, &salt, &params, derived.as_mut()).expect("32-byte output is valid");

    let mut ciphertext = key.secret_bytes().to_vec();
    Aes128Ctr::new(derived[..16].into(), (&iv).into()).apply_keystream(&mut ciphertext);
    let mac = keccak256([&derived[16..32], &ciphertext[..]].concat());

    // UUID version 4, variant 1.
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let u = hex::encode(uuid);
    KeystoreJson {
        address: Some(hex::encode(key.address().as_bytes())),
        crypto: CryptoJson {
            cipher: "aes-128-ctr".into(),
            ciphertext: hex::encode(&ciphertext),
            cipherparams: CipherParams {
                iv: hex::encode(iv),
            },
            kdf: "scrypt".into(),
            kdfparams: serde_json::json!({
                "dklen": 32, "n": 1u64 << log_n, "r": r, "p": p, "salt": hex::encode(salt)
            }),
            mac: hex::encode(mac),
        },
        id: Some(format!(
            "{}-{}-{}-{}-{}",
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..]
        )),
        version: 3,
    }
}

/// Decrypts a V3 keystore document. `origin` names the file in errors.
pub fn decrypt(
    doc: &KeystoreJson,
    password: &[u8],
    origin: &Path,
) -> Result<PrivateKey, KeystoreError> {
    let malformed = |reason: String| KeystoreError::Malformed {
        path: origin.to_path_buf(),
        reason,
    };
    if doc.version != 3 {
        return Err(malformed(format!(
            "version {} (only 3 is supported)",
            doc.version
        )));
    }
    let crypto = &doc.crypto;
    if crypto.cipher != "aes-128-ctr" {
        return Err(malformed(format!(
            "cipher {:?} (only aes-128-ctr is supported)",
            crypto.cipher
        )));
    }
    let hex_field = |name: &str, text: &str| {
        hex::decode(text).map_err(|_| malformed(format!("{name} is not hex")))
    };
    let ciphertext = hex_field("ciphertext", &crypto.ciphertext)?;
    let iv = hex_field("iv", &crypto.cipherparams.iv)?;
    let mac = hex_field("mac", &crypto.mac)?;
    if iv.len() != 16 || mac.len() != 32 || ciphertext.len() != 32 {
        return Err(malformed(
            "iv, mac or ciphertext has the wrong length".into(),
        ));
    }

    let mut derived = Zeroizing::new(vec![0u8; 32]);
    match crypto.kdf.as_str() {
        "scrypt" => {
            let params: ScryptParams = serde_json::from_value(crypto.kdfparams.clone())
                .map_err(|e| malformed(format!("scrypt kdfparams: {e}")))?;
            let salt = hex_field("salt", &params.salt)?;
            if params.dklen != 32 || !params.n.is_power_of_two() || params.n < 2 {
                return Err(malformed(
                    "scrypt dklen must be 32 and n a power of two".into(),
                ));
            }
            let memory = 128u64 * params.n * u64::from(params.r) * u64::from(params.p.max(1));
            if memory > MAX_SCRYPT_MEMORY_BYTES {
                return Err(malformed(format!(
                    "scrypt parameters need {memory} bytes; refusing over 1 GiB"
                )));
            }
            let log_n = params.n.trailing_zeros() as u8;
            let scrypt_params = scrypt::Params::new(log_n, params.r, params.p)
                .map_err(|e| malformed(format!("scrypt parameters: {e}")))?;
            scrypt::scrypt(password, &salt, &scrypt_params, derived.as_mut())
                .map_err(|e| malformed(format!("scrypt: {e}")))?;
        }
        "pbkdf2" => {
            let params: Pbkdf2Params = serde_json::from_value(crypto.kdfparams.clone())
                .map_err(|e| malformed(format!("pbkdf2 kdfparams: {e}")))?;
            let salt = hex_field("salt", &params.salt)?;
            if params.prf != "hmac-sha256" || params.dklen != 32 {
                return Err(malformed(
                    "pbkdf2 needs prf hmac-sha256 and dklen 32".into(),
                ));
            }
            if params.c == 0 || params.c > MAX_PBKDF2_ROUNDS {
                return Err(malformed(format!(
                    "pbkdf2 c = {} is out of range",
                    params.c
                )));
            }
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, params.c, derived.as_mut());
        }
        other => {
            return Err(malformed(format!(
                "kdf {other:?} (scrypt and pbkdf2 are supported)"
            )));
        }
    }

    let expected_mac = keccak256([&derived[16..32], &ciphertext[..]].concat());
    if expected_mac[..] != mac[..] {
        return Err(KeystoreError::WrongPassword);
    }
    let mut secret = Zeroizing::new(ciphertext);
    Aes128Ctr::new(derived[..16].into(), iv[..].into()).apply_keystream(&mut secret);
    let key = PrivateKey::from_bytes(&secret).map_err(|_| KeystoreError::InvalidKey)?;
    if let Some(stated) = doc.address.as_deref() {
        let stated_address = parse_stated_address(stated)
            .ok_or_else(|| malformed(format!("address {stated:?} is not an address")))?;
        if stated_address != key.address() {
            return Err(KeystoreError::AddressMismatch {
                stated: stated_address,
                actual: key.address(),
            });
        }
    }
    Ok(key)
}

fn parse_stated_address(text: &str) -> Option<Address> {
    let bare = text.strip_prefix("0x").unwrap_or(text);
    format!("0x{}", bare.to_lowercase()).parse().ok()
}

/// A directory holding one V3 key file, as `--keystore DIR` names it.
#[derive(Debug, Clone)]
pub struct KeystoreDir {
    dir: PathBuf,
}

impl KeystoreDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `key` encrypted under `password` as a geth-named file
    /// (`UTC--<time>--<address>`, mode 0600). Refuses a directory that has a key.
    pub fn create(
        &self,
        key: &PrivateKey,
        password: &[u8],
        strength: KdfStrength,
    ) -> Result<PathBuf, KeystoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeystoreError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        if !self.key_files()?.is_empty() {
            return Err(KeystoreError::AlreadyHasKey(self.dir.clone()));
        }
        let doc = encrypt(key, password, strength);
        let now = time::OffsetDateTime::now_utc();
        let name = format!(
            "UTC--{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:09}Z--{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond(),
            hex::encode(key.address().as_bytes())
        );
        let path = self.dir.join(name);
        let temporary = self.dir.join(".lpgpu-key.tmp");
        #[allow(clippy::expect_used, reason = "the keystore's own type serialises")]
        let json = serde_json::to_vec_pretty(&doc).expect("keystore JSON serialises");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io(&temporary))?;
        file.write_all(&json)
            .and_then(|_| file.sync_all())
            .map_err(io(&temporary))?;
        fs::rename(&temporary, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// Reads and decrypts the directory's key.
    pub fn unlock(&self, password: &[u8]) -> Result<PrivateKey, KeystoreError> {
        let (path, doc) = self.read_only_key()?;
        decrypt(&doc, password, &path)
    }

    /// The address the key file states, read without the password (eth-account
    /// and geth both write it). `None` when the file does not say.
    pub fn stated_address(&self) -> Result<Option<Address>, KeystoreError> {
        let (path, doc) = self.read_only_key()?;
        match doc.address.as_deref() {
            None => Ok(None),
            Some(text) => {
                parse_stated_address(text)
                    .map(Some)
                    .ok_or_else(|| KeystoreError::Malformed {
                        path,
                        reason: format!("address {text:?} is not an address"),
                    })
            }
        }
    }

    fn read_only_key(&self) -> Result<(PathBuf, KeystoreJson), KeystoreError> {
        let files = self.key_files()?;
        match files.len() {
            0 => Err(KeystoreError::NoKey(self.dir.clone())),
            1 => {
                let Some(path) = files.into_iter().next() else {
                    return Err(KeystoreError::NoKey(self.dir.clone()));
                };
                let text = fs::read(&path).map_err(|source| KeystoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                let doc = serde_json::from_slice(&text).map_err(|e| KeystoreError::Malformed {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok((path, doc))
            }
            count => Err(KeystoreError::SeveralKeys {
                dir: self.dir.clone(),
                count,
            }),
        }
    }

    /// Regular files in the directory, hidden ones (our temporary file) excepted.
    fn key_files(&self) -> Result<Vec<PathBuf>, KeystoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NoKey(self.dir.clone()));
            }
            Err(source) => {
                return Err(KeystoreError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeystoreError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of the Web3 Secret Storage definition (password
    // "testpassword"), as geth's own keystore tests use them.
    const SPEC_KEY: &str = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
    const SPEC_PBKDF2: &str = r#"{
        "crypto": {"cipher": "aes-128-ctr", "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
          "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
          "kdf": "pbkdf2", "kdfparams": {"c": 262144, "dklen": 32, "prf": "hmac-sha256",
            "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
          "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},
        "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6", "version": 3}"#;
    const SPEC_SCRYPT: &str = r#"{
        "crypto": {"cipher": "aes-128-ctr", "cipherparams": {"iv": "83dbcc02d8ccb40e466191a123791e0e"},
          "ciphertext": "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
          "kdf": "scrypt", "kdfparams": {"dklen": 32, "n": 262144, "p": 8, "r": 1,
            "salt": "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"},
          "mac": "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"},
        "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6", "version": 3}"#;

    fn open(text: &str, password: &str) -> Result<PrivateKey, KeystoreError> {
        let doc: KeystoreJson = serde_json::from_str(text).unwrap();
        decrypt(&doc, password.as_bytes(), Path::new("vector"))
    }

    #[test]
    fn decrypts_the_spec_pbkdf2_vector() {
        let key = open(SPEC_PBKDF2, "testpassword").unwrap();
        assert_eq!(hex::encode(*key.secret_bytes()), SPEC_KEY);
    }

    #[test]
    fn decrypts_the_spec_scrypt_vector() {
        let key = open(SPEC_SCRYPT, "testpassword").unwrap();
        assert_eq!(hex::encode(*key.secret_bytes()), SPEC_KEY);
    }

    #[test]
    fn wrong_password_is_a_typed_error() {
        assert!(matches!(
            open(SPEC_PBKDF2, "nope"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_work_factors_are_refused() {
        let huge = SPEC_SCRYPT.replace("\"n\": 262144", "\"n\": 1073741824");
        assert!(matches!(
            open(&huge, "testpassword"),
            Err(KeystoreError::Malformed { .. })
        ));
        let not_power = SPEC_SCRYPT.replace("\"n\": 262144", "\"n\": 1000");
        assert!(matches!(
            open(&not_power, "testpassword"),
            Err(KeystoreError::Malformed { .. })
        ));
        let rounds = SPEC_PBKDF2.replace("\"c\": 262144", "\"c\": 4000000000");
        assert!(matches!(
            open(&rounds, "testpassword"),
            Err(KeystoreError::Malformed { .. })
        ));
        let cipher = SPEC_PBKDF2.replace("aes-128-ctr", "aes-256-gcm");
        assert!(matches!(
            open(&cipher, "testpassword"),
            Err(KeystoreError::Malformed { .. })
        ));
    }

    #[test]
    fn round_trip_through_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeystoreDir::new(dir.path().join("keys"));
        let key = PrivateKey::random();
        let path = store.create(&key, b"secret", KdfStrength::Light).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("UTC--") && name.ends_with(&hex::encode(key.address().as_bytes())),
            "{name}"
        );
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(store.unlock(b"secret").unwrap().address(), key.address());
        assert_eq!(store.stated_address().unwrap(), Some(key.address()));
        assert!(matches!(
            store.unlock(b"wrong"),
            Err(KeystoreError::WrongPassword)
        ));
        assert!(matches!(
            store.create(&key, b"x", KdfStrength::Light),
            Err(KeystoreError::AlreadyHasKey(_))
        ));
    }

    #[test]
    fn empty_and_missing_directories_say_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            KeystoreDir::new(dir.path()).unlock(b"x"),
            Err(KeystoreError::NoKey(_))
        ));
        assert!(matches!(
            KeystoreDir::new(dir.path().join("absent")).unlock(b"x"),
            Err(KeystoreError::NoKey(_))
        ));
        fs::write(dir.path().join("garbage"), b"{not json").unwrap();
        assert!(matches!(
            KeystoreDir::new(dir.path()).unlock(b"x"),
            Err(KeystoreError::Malformed { .. })
        ));
    }
}
