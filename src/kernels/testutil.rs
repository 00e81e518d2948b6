//! Helpers shared by the kernels' unit tests.

use super::gemm::Activation;

/// `n` deterministic values uniform in `[-scale, scale)` (xorshift64 from `seed`).
pub fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The activation of one value, `slope` being its channel's PReLU slope.
pub fn act_ref(v: f32, act: Activation, slope: f32) -> f32 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu(a) if v <= 0.0 => a * v,
        Activation::PRelu if v <= 0.0 => slope * v,
        _ => v,
    }
}
