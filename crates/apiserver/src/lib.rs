//! The krust API server: the HTTPS edge every component and user goes through.
//!
//! [`ApiServer::bind`] prepares the cluster PKI and the admin kubeconfig under the data dir and
//! binds the listener; [`ApiServer::serve`] answers requests until its shutdown token fires.
//! Today it serves the unauthenticated health and version endpoints and authenticates every
//! other request by client certificate; the resource machinery arrives with the catalog.
//!
//! It never reaches into other components: schedulers, controllers and kubelets are its
//! clients, over HTTP, like everyone else.

mod error;
mod health;
pub mod pki;
mod server;
mod status;
mod version;

pub use error::{Error, Result};
pub use server::{ApiServer, Config};
pub use status::Status;
pub use version::{KUBERNETES_MINOR, VersionInfo};
