//! File input and output: atomic writes so that no partial output file is ever left behind.

pub mod atomic;

pub use self::atomic::{remove_all_temps, write_atomic};
