//! The nono command line both sides build: the node plugin for a container's
//! PID 1, the webhook for a wrapped `kubectl exec`. Defined once so the two
//! can never disagree about what "wrapped" means.
//!
//! ```text
//! <dir>/nono wrap --silent --profile <dir>/profiles/<p>.json
//!   --allow <dir>/.kubefence-absent --env-credential '' --log-file /dev/null
//!   -- <original argv>
//! ```
//!
//! The profile is an absolute path into the read-only nono directory: nono
//! takes a bare name as a lookup in the workload-controlled
//! `$HOME/.config/nono/profiles`. nono takes a flag over its environment
//! variable, so the three pinned flags make `NONO_ALLOW`,
//! `NONO_ENV_CREDENTIAL` and `NONO_LOG_FILE` inert even if one reached it
//! (the node also removes every `NONO_*` variable; docs/nono-inputs.md).
//! `--` ends nono's flags: nothing in the original argv can become one.

use crate::profile::ProfileName;

/// Name of the nono binary inside the nono directory.
pub const BINARY_NAME: &str = "nono";
/// Name of the profile directory inside the nono directory.
pub const PROFILES_DIR: &str = "profiles";
/// A file under the nono directory that must never exist: nono is told to
/// allow it, to displace `NONO_ALLOW`. The node checks it is absent.
pub const ABSENT_NAME: &str = ".kubefence-absent";
/// Index of the profile path in a wrapped argv.
const PROFILE_ARG: usize = 4;

/// The profile file as a container sees it.
pub fn profile_path(nono_dir: &str, profile: &ProfileName) -> String {
    format!("{nono_dir}/{PROFILES_DIR}/{profile}.json")
}

fn prefix(nono_dir: &str, profile_path: String) -> Vec<String> {
    vec![
        format!("{nono_dir}/{BINARY_NAME}"),
        "wrap".to_owned(),
        "--silent".to_owned(),
        "--profile".to_owned(),
        profile_path,
        "--allow".to_owned(),
        format!("{nono_dir}/{ABSENT_NAME}"),
        "--env-credential".to_owned(),
        String::new(),
        "--log-file".to_owned(),
        "/dev/null".to_owned(),
        "--".to_owned(),
    ]
}

/// `original` run under nono with `profile`.
pub fn wrap_args(nono_dir: &str, profile: &ProfileName, original: &[String]) -> Vec<String> {
    let mut args = prefix(nono_dir, profile_path(nono_dir, profile));
    args.extend_from_slice(original);
    args
}

/// The profile `args` run under, if they are exactly the shape
/// [`wrap_args`] produces for some valid profile name, with a program after
/// `--`.
pub fn wrapped_profile(nono_dir: &str, args: &[String]) -> Option<ProfileName> {
    let path = args.get(PROFILE_ARG)?;
    let name = path
        .strip_prefix(&format!("{nono_dir}/{PROFILES_DIR}/"))?
        .strip_suffix(".json")?;
    let profile = ProfileName::parse(name).ok()?;
    let prefix = prefix(nono_dir, path.clone());
    (args.len() > prefix.len() && args[..prefix.len()] == prefix[..]).then_some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> ProfileName {
        ProfileName::parse(name).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn the_exact_argv() {
        assert_eq!(
            wrap_args(
                "/nono",
                &p("web"),
                &s(&["/bin/sh", "-c", "echo --profile x"])
            ),
            s(&[
                "/nono/nono",
                "wrap",
                "--silent",
                "--profile",
                "/nono/profiles/web.json",
                "--allow",
                "/nono/.kubefence-absent",
                "--env-credential",
                "",
                "--log-file",
                "/dev/null",
                "--",
                "/bin/sh",
                "-c",
                "echo --profile x",
            ])
        );
    }

    #[test]
    fn wrapped_profile_recognises_only_our_shape() {
        let wrapped = wrap_args("/nono", &p("web"), &s(&["app"]));
        assert_eq!(wrapped_profile("/nono", &wrapped), Some(p("web")));
        assert_eq!(wrapped_profile("/other", &wrapped), None, "other directory");
        assert_eq!(wrapped_profile("/nono", &wrapped[..12]), None, "no program");
        assert_eq!(wrapped_profile("/nono", &s(&["app"])), None);
        let mut unpinned = wrapped.clone();
        unpinned.drain(5..11);
        assert_eq!(
            wrapped_profile("/nono", &unpinned),
            None,
            "flags not pinned"
        );
        let mut bare = wrapped.clone();
        bare[PROFILE_ARG] = "web".into();
        assert_eq!(wrapped_profile("/nono", &bare), None, "bare profile name");
        let mut dotdot = wrapped.clone();
        dotdot[PROFILE_ARG] = "/nono/profiles/../x.json".into();
        assert_eq!(wrapped_profile("/nono", &dotdot), None);
        let mut binary = wrapped.clone();
        binary[0] = "/usr/bin/nono".into();
        assert_eq!(wrapped_profile("/nono", &binary), None);
        let mut extra = wrapped;
        extra.insert(11, "--allow-cwd".into());
        assert_eq!(wrapped_profile("/nono", &extra), None, "an extra flag");
    }
}
