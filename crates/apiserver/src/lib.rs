//! The krust API server: the HTTPS edge every component and user goes through.
//!
//! [`ApiServer::bind`] prepares the cluster PKI and the admin kubeconfig under the data dir and
//! binds the listener; [`ApiServer::serve`] answers requests until its shutdown token fires.
//! Health and version are public; every other request is authenticated by client certificate
//! and served by one generic REST machine driven by the resource catalog (`krust-api`) over
//! the store (`krust-store`).
//!
//! It never reaches into other components: schedulers, controllers and kubelets are its
//! clients, over HTTP, like everyone else.

mod crd;
mod discovery;
mod error;
mod health;
mod managed;
mod metrics;
mod openapi;
pub mod pki;
mod protobuf;
mod request;
mod rest;
mod server;
mod status;
mod table;
mod version;
mod watch_cache;

pub use error::{Error, Result};
/// Decodes a protobuf request body (`k8s\0` + `runtime.Unknown`) into the object's JSON.
pub use protobuf::{Error as ProtobufError, decode_object as decode_protobuf_object};
pub use rest::ApiState;
pub use server::{ApiServer, Config};
pub use status::Status;
pub use version::{KUBERNETES_MINOR, VersionInfo};
