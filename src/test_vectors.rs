//! Loads `../shared/vectors/wire-vectors.json`, the independent test vectors
//! (set `LPGPU_VECTORS` to read them from elsewhere).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

pub fn vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| load("LPGPU_VECTORS", "wire-vectors.json"))
}

/// `../shared/vectors/bo-vectors.json`: today's broadcaster ↔ orchestrator
/// wire (set `LPGPU_BO_VECTORS` to read them from elsewhere).
pub fn bo_vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| load("LPGPU_BO_VECTORS", "bo-vectors.json"))
}

fn load(variable: &str, file: &str) -> Value {
    {
        let path = std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../shared/vectors")
                    .join(file)
            });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "reading test vectors {}: {e} (set {variable})",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("the vectors are JSON")
    }
}

/// A `0x…` hex string of the vectors as bytes.
pub fn hex_bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("a hex string");
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).expect("valid hex")
}
