//! Ethereum primitives the protocol needs: keccak256, secp256k1 keys, the
//! `Sign`/verify scheme of `spec/wire.md`, EIP-55 addresses, and V3 keystore files.
//!
//! Nothing here does I/O except [`keystore`], which reads and writes key files.

mod address;
pub mod keystore;
mod signer;

pub use address::{Address, AddressParseError};
pub use signer::{PrivateKey, Signature, SignatureError, signed_digest};

use sha3::{Digest, Keccak256};

/// keccak256 of `data` (Ethereum's hash, not NIST SHA3-256).
pub fn keccak256(data: impl AsRef<[u8]>) -> [u8; 32] {
    Keccak256::digest(data.as_ref()).into()
}

/// keccak256 computed incrementally, for bodies hashed while they stream in.
#[derive(Debug, Clone, Default)]
pub struct Keccak256Hasher(Keccak256);

impl Keccak256Hasher {
    pub fn new() -> Self {
        Self(Keccak256::new())
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    pub fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keccak_of_empty_and_text_match_vectors() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            hex::encode(keccak256(b"hello segment")),
            "53103f83c03d63e5b20b276d9346c99b5593122aa715a1b2bfbaaa61193b3bd0"
        );
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let data = (0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>();
        let mut hasher = Keccak256Hasher::new();
        for chunk in data.chunks(777) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finalize(), keccak256(&data));
    }
}
