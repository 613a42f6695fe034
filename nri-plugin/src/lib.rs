//! kubefence NRI plugin: puts every container of a sandbox RuntimeClass
//! handler under nono, as decided and signed by the kubefence webhook.
//!
//! - [`mux`], [`proto`], [`connection`]: the NRI wire protocol.
//! - [`plugin`]: the Plugin service, thin over [`decide`] and [`validate`].
//! - [`decide`], [`validate`], [`nono`], [`runtime`]: pure decisions.
//! - [`config`], [`checks`], [`landlock`]: settings and startup checks.
//! - [`install`]: copying nono and the catalog to the host.

pub mod audit;
pub mod checks;
pub mod config;
pub mod connection;
pub mod decide;
pub mod install;
pub mod landlock;
pub mod mux;
pub mod nono;
pub mod plugin;
pub mod proto;
pub mod runtime;
pub mod validate;
