//! One error type for the library, carrying the file, tensor or frame it is about. The library
//! returns these for anything a user can get wrong; it does not panic on user data.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the OS level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not in the format it claims, or is truncated or corrupt.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A weight file lacks a tensor, or has one of the wrong shape or type.
    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    Tensor { path: PathBuf, tensor: String, reason: String },
    /// The weights do not match any architecture we support.
    #[error("{}: {reason}", path.display())]
    UnknownArch { path: PathBuf, reason: String },
    /// A model cannot do what was asked (a scale it does not have, a bad parameter override).
    #[error("{0}")]
    Model(String),
    /// An input image or video that cannot be processed.
    #[error("{}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    /// A configured limit was exceeded.
    #[error("{what} ({value}) exceeds the limit of {limit}; raise it with {flag}")]
    Limit { what: String, value: u64, limit: u64, flag: String },
    /// Invalid options or arguments.
    #[error("{0}")]
    Usage(String),
    /// The run was cancelled (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn format(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }

    pub fn tensor(path: impl AsRef<Path>, tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor { path: path.as_ref().to_path_buf(), tensor: tensor.into(), reason: reason.into() }
    }

    pub fn input(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Input { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }

    /// Process exit status for the CLI: 2 usage, 3 input data, 4 model/weights, 5 resource
    /// limits, 130 interrupted, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Input { .. } => 3,
            Error::Format { .. } | Error::Tensor { .. } | Error::UnknownArch { .. } | Error::Model(_) => 4,
            Error::Limit { .. } => 5,
            Error::Interrupted => 130,
            Error::Io { .. } => 1,
        }
    }
}
