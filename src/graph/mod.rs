//! Static graphs: a model is built once into a list of nodes over SSA values ([`ir`]); for a
//! concrete input size a [`plan`] fixes every value's layout and assigns buffers by liveness; the
//! executor ([`exec`]) runs the nodes over an [`exec::Arena`] that is reused across tiles and images.

pub mod exec;
pub mod ir;
pub mod plan;
pub mod profile;
pub mod split;
pub mod stream;

pub use exec::Arena;
pub use ir::{Graph, Node, ShuffleOrder, ValueId};
pub use plan::Plan;

/// Run `f` on a worker thread of the current rayon pool (the global one when the caller is not a
/// worker), and wait for it. The executors run a network's whole layer loop this way: a parallel
/// loop started from outside the pool hands its work to the workers and puts the caller to
/// sleep until they finish, two thread switches per layer, while one started on a worker runs
/// its share there at once. With one thread, EDSR-baseline streamed down 320x180 spent 10% of
/// its `perf` samples in the kernel's wake-ups that way.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    /// The closure moved to the worker: it borrows the caller's data (raw pointers, `dyn FnMut`
    /// callbacks) that is not `Send`, which is sound because the caller blocks until the worker
    /// has run it, so only one thread ever touches that data at a time.
    struct Handoff<F>(F);
    // SAFETY: see above; the caller waits inside `rayon::scope` for the closure to finish.
    unsafe impl<F> Send for Handoff<F> {}
    impl<F> Handoff<F> {
        fn take(self) -> F {
            self.0
        }
    }
    let h = Handoff(f);
    rayon::scope(move |_| (h.take())())
}

#[cfg(test)]
mod tests {
    #[test]
    fn on_pool_runs_on_a_worker_and_returns_its_value() {
        let outside = rayon::current_thread_index();
        assert!(outside.is_none(), "test threads are not rayon workers");
        let local = std::cell::Cell::new(1); // not Sync: only one thread may touch it
        let r = super::on_pool(|| {
            local.set(local.get() + 1);
            rayon::current_thread_index()
        });
        assert!(r.is_some(), "the closure ran on a worker");
        assert_eq!(local.get(), 2);
        // Already on a worker: run in place, on that same thread.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (before, inside) = pool.install(|| {
            let t = rayon::current_thread_index();
            (t, super::on_pool(rayon::current_thread_index))
        });
        assert_eq!(before, inside);
    }
}
