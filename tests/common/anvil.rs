//! anvil, the Ethereum node of the tests (installed from npm by .ci/setup
//! into contracts/node_modules), one per test so no two tests share an
//! account's nonce.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// anvil's first two development accounts' keys.
pub const DEPLOYER: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const BROADCASTER: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#[derive(Debug)]
pub struct Anvil {
    child: Child,
    pub url: String,
}

impl Anvil {
    pub fn start() -> Self {
        let binary = std::env::var_os("LPGPU_ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // The platform package's binary itself: node_modules/.bin/anvil is a
                // Node wrapper whose child would outlive a kill.
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
            });
        let port = super::free_port();
        let child = Command::new(&binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} (run .ci/setup): {e}", binary.display()));
        let mut anvil = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return anvil;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anvil.stop();
        panic!("anvil did not listen on {port}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}
