//! Aligned f32 storage and the activation layout used by every kernel.
//!
//! Activations are NHWC (channels last) with a zero border of `pad` pixels on every side, so a
//! 3x3 or 5x5 convolution reads its neighbourhood without bounds checks and a convolution's
//! implicit im2col is a set of pointer offsets. Channels are innermost so a GEMM microkernel
//! vectorises over output channels and stores straight into the next layer's input.

/// One cache line of f32s: the unit of allocation, so every buffer starts 64-byte aligned.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised, 64-byte aligned f32 buffer.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// An empty buffer (usable in `const` contexts such as thread-local initialisers).
    pub const fn new_empty() -> Self {
        AlignedVec { lines: Vec::new(), len: 0 }
    }

    pub fn zeros(len: usize) -> Self {
        AlignedVec { lines: vec![Line::default(); len.div_ceil(16)], len }
    }

    pub fn from_slice(data: &[f32]) -> Self {
        let mut v = AlignedVec::zeros(data.len());
        v.as_mut_slice().copy_from_slice(data);
        v
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }

    pub fn as_ptr(&self) -> *const f32 {
        self.lines.as_ptr() as *const f32
    }

    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.lines.as_mut_ptr() as *mut f32
    }

    /// Grow (never shrink) to at least `len` elements; new elements are zero.
    pub fn ensure_len(&mut self, len: usize) {
        if len > self.len {
            self.lines.resize(len.div_ceil(16), Line::default());
            self.len = len;
        }
    }

    /// Bytes actually reserved.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedVec(len={})", self.len)
    }
}

/// Geometry of an NHWC activation with a zero border: `h x w` pixels of `c` channels, stored in a
/// `(h + 2 pad) x (w + 2 pad)` grid whose pixels are `cs` floats apart (`cs >= c`; a view of some
/// channels of a wider buffer has `cs` > `c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub cs: usize,
    pub pad: usize,
}

impl Layout {
    pub fn new(h: usize, w: usize, c: usize, pad: usize) -> Self {
        Layout { h, w, c, cs: c, pad }
    }

    /// Width of the stored grid, border included.
    pub fn wp(&self) -> usize {
        self.w + 2 * self.pad
    }

    pub fn hp(&self) -> usize {
        self.h + 2 * self.pad
    }

    /// Floats the whole grid occupies.
    pub fn len(&self) -> usize {
        self.hp() * self.wp() * self.cs
    }

    pub fn is_empty(&self) -> bool {
        self.h == 0 || self.w == 0
    }

    /// Float offset of channel 0 of interior pixel (y, x); y and x may reach into the border.
    #[inline]
    pub fn offset(&self, y: isize, x: isize) -> isize {
        ((y + self.pad as isize) * self.wp() as isize + x + self.pad as isize) * self.cs as isize
    }

    /// Float offset between vertically adjacent pixels.
    pub fn row_stride(&self) -> usize {
        self.wp() * self.cs
    }
}

/// Zero the border of an NHWC grid (all `cs` channels), leaving the interior alone.
pub fn clear_border(data: &mut [f32], l: &Layout) {
    if l.pad == 0 {
        return;
    }
    let rs = l.row_stride();
    let (p, cs) = (l.pad, l.cs);
    for y in 0..l.hp() {
        let row = &mut data[y * rs..(y + 1) * rs];
        if y < p || y >= p + l.h {
            row.fill(0.0);
        } else {
            row[..p * cs].fill(0.0);
            row[(p + l.w) * cs..].fill(0.0);
        }
    }
}

/// An owned NHWC tensor with its layout; used at the edges of the engine (tests, I/O).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub layout: Layout,
    pub data: AlignedVec,
}

impl Tensor {
    pub fn zeros(h: usize, w: usize, c: usize, pad: usize) -> Self {
        let layout = Layout::new(h, w, c, pad);
        Tensor { data: AlignedVec::zeros(layout.len()), layout }
    }

    /// Build from dense HWC data (no border).
    pub fn from_hwc(h: usize, w: usize, c: usize, pad: usize, hwc: &[f32]) -> Self {
        assert_eq!(hwc.len(), h * w * c);
        let mut t = Tensor::zeros(h, w, c, pad);
        for y in 0..h {
            for x in 0..w {
                let o = t.layout.offset(y as isize, x as isize) as usize;
                t.data.as_mut_slice()[o..o + c].copy_from_slice(&hwc[(y * w + x) * c..][..c]);
            }
        }
        t
    }

    /// Dense HWC copy of the interior (channels `0..c`).
    pub fn to_hwc(&self) -> Vec<f32> {
        let l = &self.layout;
        let mut out = Vec::with_capacity(l.h * l.w * l.c);
        for y in 0..l.h {
            for x in 0..l.w {
                let o = l.offset(y as isize, x as isize) as usize;
                out.extend_from_slice(&self.data.as_slice()[o..o + l.c]);
            }
        }
        out
    }

    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data.as_slice()[self.layout.offset(y as isize, x as isize) as usize + c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned() {
        for n in [0, 1, 15, 16, 17, 1000] {
            let v = AlignedVec::zeros(n);
            assert_eq!(v.as_ptr() as usize % 64, 0);
            assert_eq!(v.len(), n);
        }
    }

    #[test]
    fn hwc_round_trip_and_border() {
        let hwc: Vec<f32> = (0..5 * 3 * 2).map(|i| i as f32 + 1.0).collect();
        let mut t = Tensor::from_hwc(5, 3, 2, 2, &hwc);
        assert_eq!(t.to_hwc(), hwc);
        let l = t.layout;
        t.data.as_mut_slice().fill(7.0);
        clear_border(t.data.as_mut_slice(), &l);
        let interior: usize = t.data.as_slice().iter().filter(|&&v| v == 7.0).count();
        assert_eq!(interior, 5 * 3 * 2);
    }
}
