//! `--config FILE`: TOML keys become command-line flags that were not given on
//! the command line or in the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

const GLOBAL_FLAGS_WITH_VALUES: [&str; 2] = ["--config", "--log-format"];

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut tokens = args.iter().skip(1);
    while let Some(token) = tokens.next() {
        let token = token.to_string_lossy();
        if token == "--config" {
            return tokens.next().map(PathBuf::from);
        }
        if let Some(path) = token.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("LPGPU_CONFIG").map(PathBuf::from)
}

/// The subcommands named on the command line, outermost first.
fn subcommand_path(root: &clap::Command, args: &[OsString]) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = root;
    let mut tokens = args
        .iter()
        .skip(1)
        .map(|t| t.to_string_lossy().into_owned());
    while let Some(token) = tokens.next() {
        if token.starts_with('-') {
            if GLOBAL_FLAGS_WITH_VALUES.contains(&token.as_str()) {
                tokens.next();
            }
            continue;
        }
        match current.find_subcommand(&token) {
            Some(sub) => {
                path.push(token);
                current = sub;
            }
            None => break,
        }
    }
    path
}

fn find_leaf<'a>(root: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter().fold(root, |command, name| {
        command
            .find_subcommand(name)
            .expect("path was found in this tree")
    })
}

fn any_command_has_flag(command: &clap::Command, flag: &str) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some(flag))
        || command
            .get_subcommands()
            .any(|s| any_command_has_flag(s, flag))
}

fn value_tokens(
    key: &str,
    flag: &str,
    value: &toml::Value,
    takes_value: bool,
) -> Result<Vec<OsString>> {
    let text = match value {
        toml::Value::Boolean(true) if !takes_value => return Ok(vec![format!("--{flag}").into()]),
        toml::Value::Boolean(false) if !takes_value => return Ok(vec![]),
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                _ => bail!("config key {key:?}: list items must be strings or integers"),
            })
            .collect::<Result<Vec<_>>>()?
            .join(","),
        _ => bail!("config key {key:?}: unsupported value type"),
    };
    Ok(vec![format!("--{flag}").into(), text.into()])
}

/// Returns `args` with the config file's applicable keys appended as flags.
pub(super) fn apply_config_file(
    root: &clap::Command,
    mut args: Vec<OsString>,
) -> Result<Vec<OsString>> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading --config {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("--config {} is not valid TOML", path.display()))?;

    let path_names = subcommand_path(root, &args);
    let leaf = find_leaf(root, &path_names);
    let first = path_names.first().map(String::as_str);
    let mut entries: Vec<(String, toml::Value, bool)> = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) if Some(key.as_str()) == first => {
                entries.extend(section.into_iter().map(|(k, v)| (k, v, true)));
            }
            toml::Value::Table(_) if root.find_subcommand(&key).is_some() => {}
            toml::Value::Table(_) => bail!(
                "--config {}: [{key}] is not an lpgpu command",
                path.display()
            ),
            value => entries.push((key, value, false)),
        }
    }

    let given: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for (key, value, strict) in entries {
        let flag = key.replace('_', "-");
        if flag == "config" {
            bail!(
                "--config {}: a config file cannot name another config file",
                path.display()
            );
        }
        let arg = leaf
            .get_arguments()
            .chain(root.get_arguments())
            .find(|a| a.get_long() == Some(flag.as_str()));
        let Some(arg) = arg else {
            if strict || !any_command_has_flag(root, &flag) {
                bail!(
                    "--config {}: {key:?} is not a flag of `lpgpu {}`",
                    path.display(),
                    path_names.join(" ")
                );
            }
            continue;
        };
        let on_command_line = given
            .iter()
            .any(|g| *g == format!("--{flag}") || g.starts_with(&format!("--{flag}=")));
        let variable = format!("LPGPU_{}", flag.to_uppercase().replace('-', "_"));
        if on_command_line || std::env::var_os(&variable).is_some() {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        args.extend(value_tokens(&key, &flag, &value, takes_value)?);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(config: &str, args: &[&str]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lpgpu.toml");
        std::fs::write(&path, config).unwrap();
        let mut argv: Vec<OsString> = vec!["lpgpu".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let out = apply_config_file(&super::super::command(), argv)?;
        Ok(out
            .into_iter()
            .skip(3)
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn keys_become_flags_unless_given() {
        let config =
            "keystore = \"/k\"\nhostname = \"node.example\"\n[node]\nlisten = \"127.0.0.1:1\"\n";
        let out = apply(config, &["node", "--hostname", "cli.example"]).unwrap();
        assert_eq!(
            out,
            [
                "node",
                "--hostname",
                "cli.example",
                "--keystore",
                "/k",
                "--listen",
                "127.0.0.1:1"
            ]
        );
        // Top-level keys that another command has are skipped for this one.
        let out = apply(config, &["job", "show", "3"]).unwrap();
        assert_eq!(out, ["job", "show", "3"]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(apply("[node]\nlistne = \"x\"\n", &["node"]).is_err());
        assert!(apply("no_such_flag = 1\n", &["node"]).is_err());
        assert!(apply("[nod]\nlisten = \"x\"\n", &["node"]).is_err());
        assert!(apply("not toml", &["node"]).is_err());
    }
}
