//! Plain scalar GEMM, the oracle for every SIMD level (f64 accumulation).

/// `C[m x n] = A[m x k] · B[k x n]`, all row-major.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for kk in 0..k {
                s += a[i * lda + kk] as f64 * b[kk * ldb + j] as f64;
            }
            c[i * ldc + j] = s as f32;
        }
    }
}
