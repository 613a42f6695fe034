//! What the runtime on the other end of the socket can do, learnt from
//! `ConfigureRequest`, and the event subscription that follows from it.
//!
//! Upstream facts (containerd/nri `pkg/api/api.proto`, `pkg/adaptation`):
//! - `ConfigureRequest.NRI_version` (field 6) exists from v0.12.0 on; older
//!   runtimes send only `runtime_name` / `runtime_version`.
//! - The runtime refuses a subscription with a bit it does not know
//!   (`events &^ ValidEvents`), and `ValidEvents` covers events 1..LAST-1:
//!   v0.8/v0.9 know 1..11 (up to REMOVE_CONTAINER), v0.10+ know 1..14 (up to
//!   VALIDATE_CONTAINER_ADJUSTMENT).
//! - `ContainerAdjustment.args` (field 9) exists from v0.10 on: an older
//!   runtime silently drops it, and the container would run unwrapped.

use std::fmt;

/// An NRI module version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NriVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NriVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// First version with args adjustment and validation.
    pub const V0_10: NriVersion = NriVersion::new(0, 10, 0);
    /// First version that sends `NRI_version` and has dedicated pod/container RPCs.
    pub const V0_12: NriVersion = NriVersion::new(0, 12, 0);
    /// Stand-in for any runtime older than v0.10.
    pub const V0_8: NriVersion = NriVersion::new(0, 8, 0);

    /// Parses `v1.2.3`, `1.2`, `v2.2.0-rc.1+dirty`: the leading numbers.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+', '~', ' ']).next().unwrap_or("");
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for NriVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl std::str::FromStr for NriVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| format!("{s:?} is not a version like v0.11.0"))
    }
}

/// How the NRI version was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// `ConfigureRequest.NRI_version`.
    Reported,
    /// Mapped from the runtime's name and version.
    RuntimeRelease,
    /// The `assume_nri_version` setting.
    Configured,
}

/// The runtime, as told by Configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub name: String,
    pub version: String,
    /// `None`: not reported and not recognisable.
    pub nri: Option<(NriVersion, VersionSource)>,
}

/// Event numbers (`api.Event`) used here.
pub mod event {
    pub const CREATE_CONTAINER: i32 = 4;
    pub const STOP_CONTAINER: i32 = 10;
    pub const REMOVE_CONTAINER: i32 = 11;
    pub const VALIDATE_CONTAINER_ADJUSTMENT: i32 = 14;

    /// The subscription bit of an event.
    pub const fn bit(event: i32) -> i32 {
        1 << (event - 1)
    }
}

impl RuntimeInfo {
    /// Works out the runtime's NRI version: `assume` wins, then the reported
    /// `NRI_version`, then a table of runtime releases.
    pub fn new(name: &str, version: &str, reported: &str, assume: Option<NriVersion>) -> Self {
        let nri = if let Some(v) = assume {
            Some((v, VersionSource::Configured))
        } else if !reported.is_empty() {
            // Only v0.12+ has the field at all, whatever it says.
            let v = NriVersion::parse(reported)
                .filter(|v| *v >= NriVersion::V0_12)
                .unwrap_or(NriVersion::V0_12);
            Some((v, VersionSource::Reported))
        } else {
            from_release(name, version).map(|v| (v, VersionSource::RuntimeRelease))
        };
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            nri,
        }
    }

    pub fn nri_version(&self) -> Option<NriVersion> {
        self.nri.map(|(v, _)| v)
    }

    /// Whether the runtime applies `ContainerAdjustment.args`. Unknown
    /// runtimes count as not: wrapping must never silently not happen.
    pub fn supports_args(&self) -> bool {
        self.nri_version().is_some_and(|v| v >= NriVersion::V0_10)
    }

    /// Whether the runtime knows VALIDATE_CONTAINER_ADJUSTMENT.
    pub fn supports_validation(&self) -> bool {
        self.supports_args()
    }

    /// The events to subscribe to: only bits this runtime knows, and only
    /// what decides something. Every subscribed event is a round trip the
    /// runtime waits for (a stop or remove would block on us just to be
    /// logged), so lifecycle events are left out.
    pub fn events(&self, validator: bool) -> i32 {
        let mut events = event::bit(event::CREATE_CONTAINER);
        if validator && self.supports_validation() {
            events |= event::bit(event::VALIDATE_CONTAINER_ADJUSTMENT);
        }
        events
    }

    /// For messages: `containerd v2.2.0 (NRI v0.10.0, from the runtime release)`.
    pub fn describe(&self) -> String {
        let nri = match self.nri {
            Some((v, VersionSource::Reported)) => format!("NRI {v}"),
            Some((v, VersionSource::RuntimeRelease)) if v < NriVersion::V0_10 => {
                "NRI older than v0.10, from the runtime release".to_owned()
            }
            Some((v, VersionSource::RuntimeRelease)) => {
                format!("NRI {v}, from the runtime release")
            }
            Some((v, VersionSource::Configured)) => format!("NRI {v}, from assume_nri_version"),
            None => "NRI version unknown".to_owned(),
        };
        format!("{} {} ({nri})", self.name, self.version)
    }
}

/// The NRI version of known runtime releases, as in upstream's own table
/// (`api.InferVersionFromRuntime`, NRI v0.12.2): containerd 2.2.0 has v0.10,
/// 2.2.1 v0.11; CRI-O 1.34 v0.10, 1.35 v0.11. Older releases map to
/// [`NriVersion::V0_8`] (or older, which changes nothing here).
fn from_release(name: &str, version: &str) -> Option<NriVersion> {
    let v = NriVersion::parse(version)?;
    let at = |major, minor, patch| v >= NriVersion::new(major, minor, patch);
    let nri = match name {
        "containerd" if at(2, 2, 1) => NriVersion::new(0, 11, 0),
        "containerd" if at(2, 2, 0) => NriVersion::V0_10,
        "containerd" => NriVersion::V0_8,
        "cri-o" if at(1, 35, 0) => NriVersion::new(0, 11, 0),
        "cri-o" if at(1, 34, 0) => NriVersion::V0_10,
        "cri-o" => NriVersion::V0_8,
        _ => return None,
    };
    Some(nri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bits_match_upstream() {
        assert_eq!(event::bit(event::CREATE_CONTAINER), 0x8);
        assert_eq!(event::bit(event::STOP_CONTAINER), 0x200);
        assert_eq!(event::bit(event::REMOVE_CONTAINER), 0x400);
        assert_eq!(event::bit(event::VALIDATE_CONTAINER_ADJUSTMENT), 0x2000);
    }

    #[test]
    fn parse_versions() {
        assert_eq!(
            NriVersion::parse("v0.11.0"),
            Some(NriVersion::new(0, 11, 0))
        );
        assert_eq!(NriVersion::parse("2.2"), Some(NriVersion::new(2, 2, 0)));
        assert_eq!(
            NriVersion::parse("v2.2.0-rc.1-12-gabcdef"),
            Some(NriVersion::new(2, 2, 0))
        );
        assert_eq!(
            NriVersion::parse("1.34.1~dfsg"),
            Some(NriVersion::new(1, 34, 1))
        );
        for bad in ["", "unknown", "(devel)", "v2", "a.b.c"] {
            assert_eq!(NriVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn v012_reports_its_version_and_gets_validation() {
        let r = RuntimeInfo::new("containerd", "v2.3.0", "v0.12.2", None);
        assert_eq!(
            r.nri,
            Some((NriVersion::new(0, 12, 2), VersionSource::Reported))
        );
        assert_eq!(r.events(true), 0x8 | 0x2000);
        assert_eq!(r.events(false), 0x8);
        // The field exists only from v0.12, so anything in it means v0.12+.
        for odd in ["(devel)", "0.0.0-unknown"] {
            let r = RuntimeInfo::new("containerd", "v2.3.0", odd, None);
            assert_eq!(r.nri_version(), Some(NriVersion::V0_12), "{odd}");
        }
    }

    #[test]
    fn older_runtimes_by_release() {
        let c22 = RuntimeInfo::new("containerd", "v2.2.1", "", None);
        assert_eq!(c22.nri_version(), Some(NriVersion::new(0, 11, 0)));
        assert!(c22.supports_args());
        // containerd's version.Version without ldflags.
        let c220 = RuntimeInfo::new("containerd", "2.2.0+unknown", "", None);
        assert_eq!(c220.nri_version(), Some(NriVersion::V0_10));
        assert_eq!(c22.events(true) & 0x2000, 0x2000);
        let c21 = RuntimeInfo::new("containerd", "v2.1.4", "", None);
        assert!(!c21.supports_args());
        assert_eq!(
            c21.describe(),
            "containerd v2.1.4 (NRI older than v0.10, from the runtime release)"
        );
        assert_eq!(c21.events(true), 0x8, "v0.8 knows no bit 14");
        let crio = RuntimeInfo::new("cri-o", "1.34.0", "", None);
        assert!(crio.supports_args());
        let old_crio = RuntimeInfo::new("cri-o", "1.33.8", "", None);
        assert!(!old_crio.supports_args());
    }

    #[test]
    fn unknown_runtime_is_treated_as_unable_unless_configured() {
        let r = RuntimeInfo::new("other", "9.9", "", None);
        assert_eq!(r.nri, None);
        assert!(!r.supports_args());
        assert_eq!(r.events(true), 0x8);
        assert!(r.describe().contains("unknown"), "{}", r.describe());
        let forced = RuntimeInfo::new("other", "9.9", "", Some(NriVersion::new(0, 11, 0)));
        assert!(forced.supports_args());
        assert_eq!(forced.nri.map(|n| n.1), Some(VersionSource::Configured));
    }
}
