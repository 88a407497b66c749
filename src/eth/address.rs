//! 20-byte Ethereum addresses, printed EIP-55 checksummed.

use std::fmt;
use std::str::FromStr;

use super::keccak256;

/// An Ethereum account address. Compared as 20 bytes; displayed with the EIP-55
/// mixed-case checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressParseError {
    #[error("an address is 0x followed by 40 hex characters")]
    BadFormat,
    #[error("address has mixed case but its EIP-55 checksum is wrong (a typo?)")]
    BadChecksum,
}

impl Address {
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// EIP-55: uppercase each hex letter whose nibble in keccak256(lowercase hex) is >= 8.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl FromStr for Address {
    type Err = AddressParseError;

    /// Accepts `0x` + 40 hex characters: all lowercase, all uppercase, or mixed
    /// case with a correct EIP-55 checksum.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or(AddressParseError::BadFormat)?;
        if body.len() != 40 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddressParseError::BadFormat);
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(body, &mut bytes).map_err(|_| AddressParseError::BadFormat)?;
        let address = Address(bytes);
        let has_lower = body.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = body.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper && address.to_checksum()[2..] != *body {
            return Err(AddressParseError::BadChecksum);
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksum())
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_checksum())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of the EIP-55 text.
    const EIP55: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn checksums_match_eip55_examples() {
        for text in EIP55 {
            let address: Address = text.to_lowercase().parse().unwrap();
            assert_eq!(address.to_checksum(), text);
            assert_eq!(text.parse::<Address>().unwrap(), address);
        }
    }

    #[test]
    fn rejects_bad_checksum_and_bad_format() {
        let wrong_case = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert_eq!(
            wrong_case.parse::<Address>(),
            Err(AddressParseError::BadChecksum)
        );
        for bad in [
            "",
            "0x",
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6",
            "0xzz",
        ] {
            assert_eq!(
                bad.parse::<Address>(),
                Err(AddressParseError::BadFormat),
                "{bad}"
            );
        }
        let too_long = format!("{}00", EIP55[0]);
        assert_eq!(
            too_long.parse::<Address>(),
            Err(AddressParseError::BadFormat)
        );
    }

    #[test]
    fn all_upper_case_is_accepted() {
        let upper = format!("0x{}", EIP55[0][2..].to_uppercase());
        assert_eq!(upper.parse::<Address>().unwrap().to_checksum(), EIP55[0]);
    }
}
