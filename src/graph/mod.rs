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
