//! `lpgpu keys new | show | import`. Addresses go to stdout; nothing here ever
//! prints a private key.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::KeystoreArgs;
use crate::eth::PrivateKey;
use crate::eth::keystore::KdfStrength;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new key; prints its address.
    New(NewArgs),
    /// Print the key's address (and check the password when one is given).
    Show(KeystoreArgs),
    /// Encrypt an existing private key (hex in a file) into the keystore.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// Cheap key derivation (geth's --lightkdf): for tests and throwaway keys only.
    #[arg(long)]
    light_kdf: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// File holding the private key as hex (0x optional), e.g. an anvil account's.
    #[arg(long, value_name = "FILE")]
    private_key_file: PathBuf,
    /// Cheap key derivation (geth's --lightkdf): for tests and throwaway keys only.
    #[arg(long)]
    light_kdf: bool,
}

fn strength(light: bool) -> KdfStrength {
    if light {
        KdfStrength::Light
    } else {
        KdfStrength::Standard
    }
}

fn store_new_key(keystore: &KeystoreArgs, key: &PrivateKey, light: bool) -> Result<()> {
    let password = keystore.password()?;
    if password.is_empty() {
        bail!("refusing an empty keystore password");
    }
    let path = keystore
        .store()
        .create(key, password.as_bytes(), strength(light))?;
    tracing::info!(path = %path.display(), "key written");
    println!("{}", key.address());
    Ok(())
}

pub(crate) fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::New(args) => {
            store_new_key(&args.keystore, &PrivateKey::random(), args.light_kdf)
        }
        KeysCommand::Import(args) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(&args.private_key_file)
                    .with_context(|| format!("reading {}", args.private_key_file.display()))?,
            );
            let key = PrivateKey::from_hex(&text).with_context(|| {
                format!(
                    "{} does not hold a private key",
                    args.private_key_file.display()
                )
            })?;
            store_new_key(&args.keystore, &key, args.light_kdf)
        }
        KeysCommand::Show(keystore) => {
            let address = match keystore.password_if_given()? {
                Some(password) => keystore.store().unlock(password.as_bytes())?.address(),
                None => keystore.store().stated_address()?.context(
                    "the keystore file does not state its address: give the password to unlock it",
                )?,
            };
            println!("{address}");
            Ok(())
        }
    }
}
