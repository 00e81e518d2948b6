//! Helpers shared by the bench targets (each bench is its own crate and includes this module).

/// `n` values in [-0.5, 0.5) from a fixed xorshift sequence, so every run times the same data.
pub fn rand_vec(n: usize) -> Vec<f32> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// A comma-separated list of numbers from the environment variable `name`, else `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}
