use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the API server's own lifecycle. Request-level failures never surface here: they
/// become [`crate::Status`] responses at the edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file under the data dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Generating or loading a key or certificate failed.
    #[error("cluster PKI: cannot make the {what}: {source}")]
    Pki {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// The PEM material did not make a usable TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// The store failed while the server was preparing its initial state.
    #[error("store: {0}")]
    Store(#[source] krust_store::Error),
    /// The secure port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
