//! CPU feature level: detected once, optionally lowered by `SUPERRES_CPU`, then passed down
//! explicitly to every kernel so tests and benches can force each path.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The SIMD tier a kernel runs at. Ordered within an architecture: a higher level implies the
/// lower ones are usable too (`Portable < Avx2 < Avx512` on x86-64, `Portable < Neon` on aarch64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuLevel {
    /// `wide`-based code compiled for the build's baseline target; runs anywhere.
    Portable,
    /// aarch64 Advanced SIMD (part of the aarch64 baseline).
    Neon,
    /// x86-64 AVX2 + FMA (Haswell, Zen and later).
    Avx2,
    /// x86-64 AVX-512F (Skylake-X, Ice Lake, Zen 4 and later).
    Avx512,
}

impl CpuLevel {
    pub const ALL: [CpuLevel; 4] = [CpuLevel::Portable, CpuLevel::Neon, CpuLevel::Avx2, CpuLevel::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Portable => "portable",
            CpuLevel::Neon => "neon",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512 => "avx512",
        }
    }

    /// Whether this machine can run kernels of this level.
    pub fn is_supported(self) -> bool {
        match self {
            CpuLevel::Portable => true,
            CpuLevel::Neon => cfg!(target_arch = "aarch64"),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512 => CpuLevel::Avx2.is_supported() && is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            CpuLevel::Avx2 | CpuLevel::Avx512 => false,
        }
    }

    /// The best level this machine supports, ignoring `SUPERRES_CPU`.
    pub fn detect() -> CpuLevel {
        static DETECTED: OnceLock<CpuLevel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            [CpuLevel::Avx512, CpuLevel::Avx2, CpuLevel::Neon]
                .into_iter()
                .find(|l| l.is_supported())
                .unwrap_or(CpuLevel::Portable)
        })
    }

    /// Lower `self` to `requested` when that is a level this machine supports and not above
    /// `self`; a request for a higher or foreign level leaves `self` unchanged (the override may
    /// only lower the level, never enable instructions the CPU lacks).
    pub fn lowered_to(self, requested: CpuLevel) -> CpuLevel {
        if requested == CpuLevel::Portable || (requested.is_supported() && requested <= self) {
            requested
        } else {
            self
        }
    }

    /// The level to run at: detected, then lowered by `SUPERRES_CPU` if set to a known name.
    /// An unknown value is ignored (the CLI reports it through [`CpuLevel::env_override`]).
    pub fn effective() -> CpuLevel {
        match CpuLevel::env_override() {
            Some(Ok(req)) => CpuLevel::detect().lowered_to(req),
            _ => CpuLevel::detect(),
        }
    }

    /// The parsed value of `SUPERRES_CPU`, if the variable is set.
    pub fn env_override() -> Option<Result<CpuLevel, String>> {
        let v = std::env::var("SUPERRES_CPU").ok()?;
        if v.trim().is_empty() {
            return None;
        }
        Some(v.parse())
    }

    /// Levels this machine supports, lowest first: what tests iterate over.
    pub fn supported() -> Vec<CpuLevel> {
        CpuLevel::ALL.into_iter().filter(|l| l.is_supported()).collect()
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CpuLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "generic" => Ok(CpuLevel::Portable),
            "neon" => Ok(CpuLevel::Neon),
            "avx2" => Ok(CpuLevel::Avx2),
            "avx512" | "avx-512" => Ok(CpuLevel::Avx512),
            other => Err(format!("unknown CPU level '{other}' (expected portable, avx2, avx512 or neon)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_only_lowers() {
        let d = CpuLevel::detect();
        assert_eq!(d.lowered_to(CpuLevel::Portable), CpuLevel::Portable);
        assert!(d.lowered_to(CpuLevel::Avx512) <= d);
        assert!(d.lowered_to(CpuLevel::Neon) <= d || d == CpuLevel::Neon);
        for l in CpuLevel::supported() {
            assert!(l <= d || l == CpuLevel::Portable, "{l} supported but above detected {d}");
        }
    }

    #[test]
    fn parse_names() {
        for l in CpuLevel::ALL {
            assert_eq!(l.name().parse::<CpuLevel>().unwrap(), l);
        }
        assert!("sse9".parse::<CpuLevel>().is_err());
    }
}
