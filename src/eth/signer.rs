//! The protocol's signing scheme (`spec/wire.md`, "Signatures"):
//! `digest = keccak256("\x19Ethereum Signed Message:\n32" ‖ keccak256(msg))`,
//! secp256k1 ECDSA over `digest`, RFC 6979 nonces, low-S, 65 bytes `r ‖ s ‖ v`.

use std::fmt;

use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::{Address, keccak256};

/// The digest that `Sign(msg)` signs. The message is always hashed first, so the
/// EIP-191 prefix always says 32 (unlike a plain `personal_sign(msg)`).
pub fn signed_digest(message: &[u8]) -> [u8; 32] {
    let inner = keccak256(message);
    let mut prefixed = Vec::with_capacity(28 + 32);
    prefixed.extend_from_slice(b"\x19Ethereum Signed Message:\n32");
    prefixed.extend_from_slice(&inner);
    keccak256(&prefixed)
}

/// Why a signature did not verify. Each variant is a distinct client mistake.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SignatureError {
    #[error("a signature is 65 bytes, got {0}")]
    BadLength(usize),
    #[error("signature recovery byte v must be 0, 1, 27 or 28, got {0}")]
    BadRecoveryByte(u8),
    #[error("signature has a high S value (not canonical)")]
    HighS,
    #[error("signature r or s is out of range")]
    OutOfRange,
    #[error("no public key recovers from this signature")]
    Unrecoverable,
    #[error("signature is by {recovered}, not by {expected}")]
    WrongSigner {
        expected: Address,
        recovered: Address,
    },
}

/// A 65-byte `r ‖ s ‖ v` signature as lpgpu writes it (v = 27 or 28).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 65]);

impl Signature {
    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Recovers the signer of `Sign(message)` from raw signature bytes. Accepts
    /// v = 0/1 (2018 nodes) and 27/28; rejects other lengths, other v, high S.
    pub fn recover(message: &[u8], signature: &[u8]) -> Result<Address, SignatureError> {
        Self::recover_digest(&signed_digest(message), signature)
    }

    /// Like [`Signature::recover`] over an already computed digest.
    pub fn recover_digest(digest: &[u8; 32], signature: &[u8]) -> Result<Address, SignatureError> {
        let bytes: &[u8; 65] = signature
            .try_into()
            .map_err(|_| SignatureError::BadLength(signature.len()))?;
        let v = match bytes[64] {
            0 | 27 => 0,
            1 | 28 => 1,
            other => return Err(SignatureError::BadRecoveryByte(other)),
        };
        let ecdsa =
            EcdsaSignature::from_slice(&bytes[..64]).map_err(|_| SignatureError::OutOfRange)?;
        if ecdsa.normalize_s().is_some() {
            return Err(SignatureError::HighS);
        }
        let recovery_id =
            RecoveryId::from_byte(v).ok_or(SignatureError::BadRecoveryByte(bytes[64]))?;
        let key = VerifyingKey::recover_from_prehash(digest, &ecdsa, recovery_id)
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(address_of(&key))
    }

    /// Checks that `signature` is `expected`'s `Sign(message)`.
    pub fn verify(
        message: &[u8],
        signature: &[u8],
        expected: Address,
    ) -> Result<(), SignatureError> {
        let recovered = Self::recover(message, signature)?;
        if recovered == expected {
            Ok(())
        } else {
            Err(SignatureError::WrongSigner {
                expected,
                recovered,
            })
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{})", hex::encode(self.0))
    }
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1: 0x04 ‖ X ‖ Y; the address hashes X ‖ Y.
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    Address(address)
}

/// A secp256k1 private key. Its `Debug` shows only the address: a private key is
/// never logged or printed.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
    address: Address,
}

#[derive(Debug, thiserror::Error)]
#[error("not a valid secp256k1 private key (32 bytes, nonzero, below the curve order)")]
pub struct InvalidPrivateKey;

impl PrivateKey {
    pub fn random() -> Self {
        Self::from_signing_key(SigningKey::random(&mut rand::rngs::OsRng))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidPrivateKey> {
        let key = SigningKey::from_slice(bytes).map_err(|_| InvalidPrivateKey)?;
        Ok(Self::from_signing_key(key))
    }

    /// Parses `0x`-prefixed or bare hex, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, InvalidPrivateKey> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = Zeroizing::new(hex::decode(text).map_err(|_| InvalidPrivateKey)?);
        Self::from_bytes(&bytes)
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let address = address_of(key.verifying_key());
        Self { key, address }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// The raw secret, for the keystore to encrypt. Wiped when dropped.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes().into())
    }

    /// `Sign(message)` of `spec/wire.md`, with v = 27/28.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.sign_digest(&signed_digest(message))
    }

    /// Signs a 32-byte digest as is (RFC 6979 nonce, low S, v = 27/28).
    #[allow(
        clippy::expect_used,
        reason = "signing a 32-byte digest with a valid key cannot fail"
    )]
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Signature {
        let (signature, recovery_id) = self
            .key
            .sign_prehash_recoverable(digest)
            .expect("signing a 32-byte prehash with a valid key cannot fail");
        // k256 already returns low-S; normalise anyway so the invariant is local.
        let (signature, recovery_id) = match signature.normalize_s() {
            Some(low) => (
                low,
                RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced()),
            ),
            None => (signature, recovery_id),
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = 27 + recovery_id.to_byte();
        Signature(out)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(address {}, secret hidden)", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{hex_bytes, vectors};

    fn vector_key() -> (PrivateKey, Address) {
        let v = &vectors()["keys"][0];
        let key = PrivateKey::from_hex(v["private_key"].as_str().unwrap()).unwrap();
        let address: Address = v["address"].as_str().unwrap().parse().unwrap();
        (key, address)
    }

    #[test]
    fn address_of_vector_key() {
        let (key, address) = vector_key();
        assert_eq!(key.address(), address);
        assert_eq!(
            key.address().to_string(),
            vectors()["keys"][0]["address"].as_str().unwrap()
        );
    }

    #[test]
    fn sign_job_id_matches_vector() {
        let (key, address) = vector_key();
        let v = &vectors()["keys"][0]["sign_job_id_42"];
        let message = v["message_ascii"].as_str().unwrap().as_bytes();
        assert_eq!(
            hex::encode(keccak256(message)),
            v["inner_keccak256"].as_str().unwrap()[2..]
        );
        assert_eq!(
            hex::encode(signed_digest(message)),
            v["signed_digest"].as_str().unwrap()[2..]
        );
        let signature = key.sign(message);
        assert_eq!(signature.to_vec(), hex_bytes(&v["signature_v27_28"]));
        assert_eq!(
            Signature::recover(message, &hex_bytes(&v["signature_v27_28"])),
            Ok(address)
        );
        assert_eq!(
            Signature::recover(message, &hex_bytes(&v["signature_v0_1"])),
            Ok(address)
        );
    }

    #[test]
    fn segment_signature_matches_vector() {
        let (key, address) = vector_key();
        let v = &vectors()["keys"][0]["segment_signature"];
        let flatten = hex_bytes(&v["flatten_hex"]);
        assert_eq!(
            hex::encode(signed_digest(&flatten)),
            v["signed_digest"].as_str().unwrap()[2..]
        );
        assert_eq!(
            key.sign(&flatten).to_vec(),
            hex_bytes(&v["signature_v27_28"])
        );
        assert_eq!(
            Signature::recover(&flatten, &hex_bytes(&v["signature_v0_1"])),
            Ok(address)
        );
    }

    #[test]
    fn plain_personal_sign_does_not_verify() {
        let (_, address) = vector_key();
        let v = &vectors()["keys"][0]["negative_plain_personal_sign_42"];
        assert!(!v["must_verify"].as_bool().unwrap());
        let result = Signature::verify(b"42", &hex_bytes(&v["signature_v27_28"]), address);
        assert!(
            matches!(result, Err(SignatureError::WrongSigner { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn transcode_data_signature_matches_vector() {
        let v = &vectors()["transcode_data_sig"];
        let key = PrivateKey::from_hex(v["private_key"].as_str().unwrap()).unwrap();
        let concat: Vec<u8> = v["renditions_ascii"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| keccak256(r.as_str().unwrap().as_bytes()))
            .collect();
        assert_eq!(
            hex::encode(&concat),
            v["concat_of_hashes_hex"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(keccak256(&concat)),
            v["keccak256_concat"].as_str().unwrap()[2..]
        );
        let mut expected = hex_bytes(&v["signature_v0_1"]);
        expected[64] += 27;
        assert_eq!(key.sign(&concat).to_vec(), expected);
        assert_eq!(
            Signature::recover(&concat, &hex_bytes(&v["signature_v0_1"])),
            Ok(key.address())
        );
    }

    #[test]
    fn rejects_bad_lengths_bad_v_and_high_s() {
        let (key, address) = vector_key();
        let good = key.sign(b"42").to_vec();
        assert_eq!(
            Signature::recover(b"42", &good[..64]),
            Err(SignatureError::BadLength(64))
        );
        assert_eq!(
            Signature::recover(b"42", &[good.clone(), vec![0]].concat()),
            Err(SignatureError::BadLength(66))
        );
        assert_eq!(
            Signature::recover(b"42", &[]),
            Err(SignatureError::BadLength(0))
        );
        for v in [2u8, 26, 29, 35, 255] {
            let mut bad = good.clone();
            bad[64] = v;
            assert_eq!(
                Signature::recover(b"42", &bad),
                Err(SignatureError::BadRecoveryByte(v))
            );
        }
        // The same signature with s' = n - s (and the other parity) is valid ECDSA
        // but malleable: it must be refused.
        let ecdsa = EcdsaSignature::from_slice(&good[..64]).unwrap();
        let high_s =
            EcdsaSignature::from_scalars(ecdsa.r().to_bytes(), (-*ecdsa.s()).to_bytes()).unwrap();
        let mut bad = high_s.to_bytes().to_vec();
        bad.push(if good[64] == 27 { 28 } else { 27 });
        assert_eq!(Signature::recover(b"42", &bad), Err(SignatureError::HighS));
        let zero = [0u8; 65];
        assert_eq!(
            Signature::recover(b"42", &zero),
            Err(SignatureError::OutOfRange)
        );
        assert_eq!(Signature::verify(b"42", &good, address), Ok(()));
        assert!(matches!(
            Signature::verify(b"43", &good, address),
            Err(SignatureError::WrongSigner { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (key, _) = vector_key();
        let shown = format!("{key:?}");
        assert!(
            !shown.to_lowercase().contains("4c0883a69102937d"),
            "{shown}"
        );
    }

    #[test]
    fn rejects_invalid_private_keys() {
        assert!(PrivateKey::from_hex("0x00").is_err());
        assert!(PrivateKey::from_bytes(&[0u8; 32]).is_err());
        assert!(PrivateKey::from_bytes(&[0xffu8; 32]).is_err());
        assert!(PrivateKey::from_hex("zz").is_err());
    }
}
