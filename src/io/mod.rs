//! File input and output: decoding and encoding images, and atomic writes so that no partial
//! output file is ever left behind.

pub mod atomic;
pub mod color;
pub mod image;
pub mod y4m;

pub use self::atomic::{remove_all_temps, write_atomic};
pub use self::image::{
    decode_bytes, decode_file, encode_to_writer, write_image_atomic, DecodeLimits, DecodedImage,
    EncodeOptions, ImageView, OutFormat, Samples, SamplesRef,
};
