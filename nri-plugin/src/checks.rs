//! Startup checks: everything a node needs before any container can be
//! wrapped. Each check says what it found or what is wrong and where.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kubefence_shared::envelope::TrustSet;
use kubefence_shared::profile::Catalog;

use crate::config::Config;
use crate::landlock;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub result: Result<String, String>,
}

/// All checks, with the loaded keys and catalog when those succeeded.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
    pub trust: Option<TrustSet>,
    pub catalog: Option<Catalog>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
    }

    /// One line per check: `ok   name: detail` or `FAIL name: error`.
    pub fn render(&self) -> String {
        self.checks
            .iter()
            .map(|c| match &c.result {
                Ok(d) => format!("ok   {}: {d}\n", c.name),
                Err(e) => format!("FAIL {}: {e}\n", c.name),
            })
            .collect()
    }

    /// The failures only, for an error message.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Whether `path` is a regular file someone may execute.
pub fn check_executable(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(format!("{} is executable", path.display()))
}

/// Runs every check against `config`.
pub fn run(config: &Config) -> Report {
    let mut checks = vec![Check {
        name: "config",
        result: Ok(format!(
            "plugin {}-{}, handlers [{}], on_invalid {:?}, validator {}",
            config.plugin_index,
            config.plugin_name,
            config.sandbox_handlers.join(", "),
            config.on_invalid,
            config.validator
        )),
    }];
    checks.push(Check {
        name: "landlock",
        result: landlock::abi_version()
            .map(|abi| format!("kernel Landlock ABI v{abi}"))
            .map_err(|e| e.to_string()),
    });
    checks.push(Check {
        name: "nono",
        result: check_executable(&config.layout.host_binary()),
    });
    let absent = config.layout.host_absent_path();
    checks.push(Check {
        name: "absent-path",
        // nono is told `--allow <this>` to displace NONO_ALLOW; it must
        // never exist or every container could write to it.
        result: match std::fs::symlink_metadata(&absent) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(format!("{} does not exist", absent.display()))
            }
            Ok(_) => Err(format!(
                "{} exists; remove it: nono is told to allow it in every container",
                absent.display()
            )),
            Err(e) => Err(format!("{}: {e}", absent.display())),
        },
    });
    let trust = TrustSet::load(&config.public_keys);
    checks.push(Check {
        name: "keys",
        result: match &trust {
            Ok(t) => Ok(format!(
                "{} trusted key(s) from {}: {}",
                t.len(),
                config.public_keys.display(),
                t.key_ids()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => Err(e.to_string()),
        },
    });
    let catalog = Catalog::load_with_files(&config.layout.host_profiles());
    checks.push(Check {
        name: "catalog",
        result: match &catalog {
            Ok(c) => Ok(format!(
                "{} profile(s) in {}: {} (strictest: {})",
                c.profiles.len(),
                config.layout.host_profiles().display(),
                c.names(),
                c.strictest
            )),
            Err(e) => Err(e.to_string()),
        },
    });
    Report {
        checks,
        trust: trust.ok(),
        catalog: catalog.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;
    use kubefence_shared::envelope::Signer;

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn check<'a>(r: &'a Report, name: &str) -> &'a Result<String, String> {
        &r.checks.iter().find(|c| c.name == name).unwrap().result
    }

    #[test]
    fn each_missing_piece_is_reported() {
        let dir = Tmp(std::env::temp_dir().join(format!("kf-checks-{}", std::process::id())));
        let host = dir.0.join("opt");
        let keys = dir.0.join("keys");
        std::fs::create_dir_all(host.join("profiles")).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        let config = Config::from_file(FileConfig {
            host_dir: Some(host.clone()),
            public_keys: Some(keys.clone()),
            ..Default::default()
        })
        .unwrap();

        let r = run(&config);
        assert!(!r.ok());
        assert!(check(&r, "config").is_ok());
        assert!(check(&r, "nono").as_ref().unwrap_err().contains("nono"));
        assert!(check(&r, "keys")
            .as_ref()
            .unwrap_err()
            .contains("no public keys"));
        assert!(check(&r, "catalog")
            .as_ref()
            .unwrap_err()
            .contains("catalog.json"));
        assert!(r.render().contains("FAIL nono: "));
        assert!(r.failures().contains("keys: "));

        let nono = host.join("nono");
        std::fs::write(&nono, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&nono, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check(&run(&config), "nono")
            .as_ref()
            .unwrap_err()
            .contains("not executable"));
        std::fs::set_permissions(&nono, std::fs::Permissions::from_mode(0o755)).unwrap();
        let signer = Signer::generate().unwrap();
        std::fs::write(keys.join("webhook.pem"), signer.public_pem().unwrap()).unwrap();
        std::fs::write(
            host.join("profiles/catalog.json"),
            r#"{"strictest":"strict","profiles":{"strict":{}}}"#,
        )
        .unwrap();
        std::fs::write(host.join("profiles/strict.json"), "{}").unwrap();

        std::fs::write(host.join(".kubefence-absent"), "").unwrap();
        assert!(check(&run(&config), "absent-path")
            .as_ref()
            .unwrap_err()
            .contains("exists"));
        std::fs::remove_file(host.join(".kubefence-absent")).unwrap();

        let r = run(&config);
        assert!(r.ok(), "{}", r.render());
        assert!(check(&r, "keys")
            .as_ref()
            .unwrap()
            .contains(signer.kid().as_str()));
        assert!(check(&r, "landlock").as_ref().unwrap().contains("ABI v"));
        assert_eq!(r.trust.map(|t| t.len()), Some(1));
        assert_eq!(
            r.catalog.map(|c| c.strictest.to_string()).as_deref(),
            Some("strict")
        );
    }
}
