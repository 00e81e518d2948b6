//! PSNR with a peak of 255, over one or several planes jointly, in f64.

/// `10·log10(255² / MSE)` with the MSE taken over every sample of every plane (all three
/// channels jointly in RGB mode, as BasicSR does). Identical inputs give `+inf`.
///
/// Panics if the planes differ in number or size (callers check sizes first).
pub fn psnr(a: &[super::Plane], b: &[super::Plane]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (pa, pb) in a.iter().zip(b) {
        assert_eq!((pa.width, pa.height), (pb.width, pb.height));
        // Row partial sums keep the rounding error far below the 1e-6 dB we promise.
        for (ra, rb) in pa.data.chunks(pa.width.max(1)).zip(pb.data.chunks(pb.width.max(1))) {
            let row: f64 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
            sum += row;
        }
        n += pa.data.len();
    }
    let mse = sum / n as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Plane;
    use super::*;

    #[test]
    fn known_values() {
        let a = Plane { width: 2, height: 2, data: vec![0.0, 10.0, 20.0, 30.0] };
        let mut b = a.clone();
        assert_eq!(psnr(std::slice::from_ref(&a), std::slice::from_ref(&b)), f64::INFINITY);
        b.data[0] = 1.0; // MSE = 1/4
        let want = 10.0 * (255.0f64 * 255.0 * 4.0).log10();
        assert!((psnr(std::slice::from_ref(&a), std::slice::from_ref(&b)) - want).abs() < 1e-12);
        // Joint MSE over two planes: (1/4 + 0)/2 = 1/8.
        let want2 = 10.0 * (255.0f64 * 255.0 * 8.0).log10();
        assert!((psnr(&[a.clone(), a.clone()], &[b, a]) - want2).abs() < 1e-12);
    }
}
