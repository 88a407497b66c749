//! Stream and session identity, shared by every wire: [`StreamKey`] names a
//! stream inside this process (a 2018 job's stream id, a dial-out task's
//! `auth_token.session_id`, a pool session), and [`SessionId`] is a fresh,
//! unguessable 128-bit id that lpgpu hands out (the pool's sessions, whose
//! source segments are fetched by URL). Plain values, no I/O.

use std::fmt;
use std::sync::Arc;

use rand::RngCore;

/// The most bytes a stream key may have: longer keys from a peer are cut to
/// a digest of themselves so a map keyed on them stays bounded.
pub const MAX_STREAM_KEY_BYTES: usize = 256;

/// The name of a stream in this process. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(Arc<str>);

impl StreamKey {
    /// The key of a stream named `name` by a peer. A name longer than
    /// [`MAX_STREAM_KEY_BYTES`] is kept as a prefix and the keccak256 of the
    /// whole, so two long names never collide and no key grows unbounded.
    pub fn new(name: &str) -> Self {
        if name.len() <= MAX_STREAM_KEY_BYTES {
            return Self(Arc::from(name));
        }
        let mut cut = 64;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let digest = hex::encode(crate::eth::keccak256(name.as_bytes()));
        Self(Arc::from(format!("{}…{digest}", &name[..cut])))
    }

    /// A key no other stream has: for work that belongs to no stream (a
    /// dial-out task without a session id).
    pub fn unique() -> Self {
        Self(Arc::from(format!("anonymous-{}", SessionId::random())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamKey {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

/// A session id lpgpu makes: 128 random bits from the operating system,
/// written as 32 lower-case hex digits. Anything that can be fetched by a
/// URL naming it (the pool's source segments) is as hard to guess as a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_bit_hex_and_differ() {
        let a = SessionId::random().to_string();
        let b = SessionId::random().to_string();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn long_stream_names_are_bounded_and_distinct() {
        let short = StreamKey::new("abc");
        assert_eq!(short.as_str(), "abc");
        let long_a = "é".repeat(1000);
        let long_b = format!("{}x", "é".repeat(999));
        let (a, b) = (StreamKey::new(&long_a), StreamKey::new(&long_b));
        assert!(a.as_str().len() <= MAX_STREAM_KEY_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, StreamKey::new(&long_a));
        assert_ne!(StreamKey::unique(), StreamKey::unique());
    }
}
