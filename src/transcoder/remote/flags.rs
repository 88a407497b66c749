//! The orchestrators a rig dials, read from the text of its flags:
//! `--orch-addr A[,B,…]`, `--orch-secret` (one secret for all, or one per
//! orchestrator as `A=S1,B=S2` or a file of such lines) and
//! `--orch-weight A=2,B=1`. Plain code: the caller reads files.

use zeroize::Zeroizing;

use super::OrchAddr;

/// `--orch-addr A[,B,…]`: at least one, no orchestrator twice.
pub fn parse_orch_addrs(text: &str) -> Result<Vec<OrchAddr>, String> {
    let mut addrs: Vec<OrchAddr> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(format!("--orch-addr {text:?}: an empty entry"));
        }
        let addr: OrchAddr = entry.parse()?;
        if addrs.contains(&addr) {
            return Err(format!("--orch-addr {text:?}: {addr} is given twice"));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// `ADDR=VALUE` entries naming only orchestrators of `addrs`, each once:
/// the value for each (None where one is not named). Err(None) when the
/// text is not in that form at all (then it is one value for all).
fn per_orchestrator<'t>(
    addrs: &[OrchAddr],
    entries: &[&'t str],
) -> Result<Vec<Option<&'t str>>, Option<String>> {
    let mut values = vec![None; addrs.len()];
    if entries.is_empty() {
        return Err(None);
    }
    for entry in entries {
        let Some((name, value)) = entry.split_once('=') else {
            return Err(None);
        };
        let Ok(addr) = name.trim().parse::<OrchAddr>() else {
            return Err(None);
        };
        let Some(i) = addrs.iter().position(|a| *a == addr) else {
            return Err(None);
        };
        if values[i].is_some() {
            return Err(Some(format!("{addr} is named twice")));
        }
        values[i] = Some(value.trim());
    }
    Ok(values)
}

/// The secret of each orchestrator. `text` is the flag's value, or the
/// file's contents when it named a file (`from_file`). The per-orchestrator
/// form is recognised only when every entry (comma-separated, or one per
/// non-empty line of a file) is `ADDR=SECRET` for an `--orch-addr` entry;
/// anything else is one secret for all: the value, or the file's first
/// line, as go-livepeer reads `-orchSecret`.
pub fn parse_orch_secrets(
    addrs: &[OrchAddr],
    text: &str,
    from_file: bool,
) -> Result<Vec<Zeroizing<String>>, String> {
    let entries: Vec<&str> = if from_file {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    } else {
        text.split(',').map(str::trim).collect()
    };
    match per_orchestrator(addrs, &entries) {
        Ok(values) => addrs
            .iter()
            .zip(values)
            .map(|(addr, value)| match value {
                Some(secret) if !secret.is_empty() => Ok(Zeroizing::new(secret.to_string())),
                Some(_) => Err(format!("--orch-secret: the secret for {addr} is empty")),
                None => Err(format!(
                    "--orch-secret names some orchestrators but not {addr}: give each one's secret"
                )),
            })
            .collect(),
        Err(Some(why)) => Err(format!("--orch-secret: {why}")),
        Err(None) => {
            let secret = if from_file {
                text.lines().next().unwrap_or("").trim()
            } else {
                text.trim()
            };
            if secret.is_empty() {
                return Err("--orch-secret is empty".into());
            }
            Ok(addrs
                .iter()
                .map(|_| Zeroizing::new(secret.to_string()))
                .collect())
        }
    }
}

/// The largest `--orch-weight`.
pub const MAX_WEIGHT: u32 = 1000;

/// `--orch-weight A=2,B=1`: each orchestrator's weight (1 where not named).
pub fn parse_orch_weights(addrs: &[OrchAddr], text: Option<&str>) -> Result<Vec<u32>, String> {
    let Some(text) = text else {
        return Ok(vec![1; addrs.len()]);
    };
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    let values = per_orchestrator(addrs, &entries).map_err(|why| {
        format!(
            "--orch-weight {text:?}: {}",
            why.unwrap_or_else(|| "give ADDR=WEIGHT for --orch-addr entries".into())
        )
    })?;
    addrs
        .iter()
        .zip(values)
        .map(|(addr, value)| match value {
            None => Ok(1),
            Some(weight) => weight
                .parse::<u32>()
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    format!("--orch-weight: {addr}={weight} is not a whole number 1..={MAX_WEIGHT}")
                }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<OrchAddr> {
        parse_orch_addrs("a.example:8935,b.example:9000").unwrap()
    }

    #[test]
    fn addresses_are_a_list_without_repeats() {
        assert_eq!(addrs().len(), 2);
        assert!(parse_orch_addrs("a.example").is_ok());
        assert!(parse_orch_addrs("a.example,a.example:8935").is_err());
        assert!(parse_orch_addrs("a.example,").is_err());
        assert!(parse_orch_addrs("a.example,h/x").is_err());
    }

    #[test]
    fn one_secret_serves_every_orchestrator() {
        let secrets = parse_orch_secrets(&addrs(), "s3cret", false).unwrap();
        assert!(secrets.iter().all(|s| s.as_str() == "s3cret"));
        // Commas and '=' in a secret do not make it a list.
        let secrets = parse_orch_secrets(&addrs(), "x=y,z", false).unwrap();
        assert_eq!(secrets[1].as_str(), "x=y,z");
        let secrets = parse_orch_secrets(&addrs(), "first\nsecond\n", true).unwrap();
        assert_eq!(secrets[0].as_str(), "first");
        assert!(parse_orch_secrets(&addrs(), "  ", false).is_err());
    }

    #[test]
    fn secrets_per_orchestrator_by_flag_or_file() {
        let secrets =
            parse_orch_secrets(&addrs(), "b.example:9000=two, a.example=one", false).unwrap();
        assert_eq!((secrets[0].as_str(), secrets[1].as_str()), ("one", "two"));
        let file = "# rig secrets\na.example:8935=one=with=equals\n\nb.example:9000=two\n";
        let secrets = parse_orch_secrets(&addrs(), file, true).unwrap();
        assert_eq!(secrets[0].as_str(), "one=with=equals");
        let missing = parse_orch_secrets(&addrs(), "a.example=one", false).unwrap_err();
        assert!(missing.contains("b.example:9000"), "{missing}");
        assert!(parse_orch_secrets(&addrs(), "a.example=one,a.example=two", false).is_err());
        assert!(parse_orch_secrets(&addrs(), "a.example=,b.example:9000=x", false).is_err());
    }

    #[test]
    fn weights_default_to_one() {
        assert_eq!(parse_orch_weights(&addrs(), None).unwrap(), vec![1, 1]);
        assert_eq!(
            parse_orch_weights(&addrs(), Some("b.example:9000=3")).unwrap(),
            vec![1, 3]
        );
        for bad in [
            "a.example=0",
            "a.example=x",
            "c.example=2",
            "2",
            "a.example=1001",
        ] {
            assert!(parse_orch_weights(&addrs(), Some(bad)).is_err(), "{bad}");
        }
    }
}
