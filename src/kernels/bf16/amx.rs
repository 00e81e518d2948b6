//! Intel AMX (AMX-TILE + AMX-BF16) for the bf16 convolution: detection, the Linux permission
//! request, the tile configuration and the 32x32 block kernel, in inline assembly (the AMX
//! intrinsics are not stable Rust). Also the fp32 -> bf16 row conversion with AVX512-BF16, which
//! every CPU with AMX-BF16 has.

use super::{KC, TILE_FLOATS, TILE_U16};
use core::arch::asm;
use core::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether this process can run the AMX kernels: the CPU has AMX-TILE, AMX-BF16, AVX-512F and
/// AVX512-BF16, the OS saves the tile state (XCR0 bits 17 and 18), and Linux granted this process
/// the tile data (arch_prctl `ARCH_REQ_XCOMP_PERM`; without it the first tile instruction faults).
/// Asked once.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let cpu = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("xsave")
            && {
                let l7 = __cpuid_count(7, 0);
                l7.edx & (1 << 22) != 0 && l7.edx & (1 << 24) != 0
            };
        // SAFETY: XGETBV(0) is valid once XSAVE is enabled by the OS, implied by AVX-512F detection.
        cpu && unsafe { xcr0() } & (3 << 17) == 3 << 17 && request_tile_data()
    })
}

#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    _xgetbv(0)
}

/// Ask Linux for the AMX tile data state (XFEATURE 18) for this process, all threads included.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: arch_prctl only changes this process's permitted XSAVE features; the syscall
    // clobbers rcx and r11 and returns in rax, as declared.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
             in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Palette 1 with the eight tiles used as 16 rows of 64 bytes: tmm0-3 the fp32 accumulators
/// (16 pixels x 16 channels), tmm4-5 A (16 pixels x 32 bf16 of K), tmm6-7 B (16 K pairs x 16
/// channels, pairs interleaved).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// Load the tile configuration on this thread (tile state is per thread).
///
/// # Safety
/// [`available`] must have returned true.
pub(super) unsafe fn configure() {
    asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
}

/// Return the tiles to their initial state, so that context switches stop saving 8 KiB of them.
///
/// # Safety
/// [`available`] must have returned true.
pub(super) unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// `c[t] = Σ_s A_i(s) · B_j(s)` for the four tiles t = 2i + j: A_0 and A_1 are 16 pixels read at
/// `a0 + offs[s]` and `a1 + offs[s]` (u16 units) with `a_stride` bytes from pixel to pixel, B_j(s)
/// the j-th 16x32 tile of step s at `b + s·2·TILE_U16`. `c` receives the four 16x16 fp32 tiles one
/// after the other.
///
/// # Safety
/// [`configure`] ran on this thread; every A row (32 u16 at each pixel and step), every B tile and
/// the 4·TILE_FLOATS floats at `c` are valid.
pub(super) unsafe fn block(
    a0: *const u16,
    a1: *const u16,
    offs: &[isize],
    a_stride: usize,
    b: *const u16,
    c: *mut f32,
) {
    debug_assert_eq!(KC * 2, 64);
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    let mut bp = b;
    for &o in offs {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0.offset(o),
            a1 = in(reg) a1.offset(o),
            sa = in(reg) a_stride,
            b0 = in(reg) bp,
            b1 = in(reg) bp.add(TILE_U16),
            sb = in(reg) 64usize,
            options(nostack, readonly),
        );
        bp = bp.add(2 * TILE_U16);
    }
    asm!(
        "tilestored [{c0} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(TILE_FLOATS),
        c2 = in(reg) c.add(2 * TILE_FLOATS),
        c3 = in(reg) c.add(3 * TILE_FLOATS),
        s = in(reg) 64usize,
        options(nostack),
    );
}

/// Convert `pixels` pixels of `cin` floats (`xs` floats apart) to bf16 rounded to nearest even,
/// `cin_p` values per pixel at `dst` (the channels from `cin` on are zero).
///
/// # Safety
/// AVX-512F and AVX512-BF16 present; `src` valid for the reads, `dst` for `pixels·cin_p` writes;
/// `cin_p` a multiple of 16.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
pub(super) unsafe fn convert_pixels(
    src: *const f32,
    xs: usize,
    cin: usize,
    pixels: usize,
    dst: *mut u16,
    cin_p: usize,
) {
    for p in 0..pixels {
        let s = src.add(p * xs);
        let d = dst.add(p * cin_p);
        let mut c0 = 0;
        while c0 < cin_p {
            let n = cin.saturating_sub(c0).min(16);
            let m: __mmask16 = ((1u32 << n) - 1) as __mmask16;
            let v = _mm512_maskz_loadu_ps(m, s.add(c0.min(cin)));
            let h: __m256bh = _mm512_cvtneps_pbh(v);
            _mm256_storeu_si256(d.add(c0) as *mut __m256i, std::mem::transmute::<__m256bh, __m256i>(h));
            c0 += 16;
        }
    }
}
