//! kubefence admission webhook: puts the pods of opted-in namespaces under
//! a sandbox RuntimeClass and signs the decision the node plugin enforces.

pub mod admission;
pub mod config;
pub mod idle;
pub mod keyfiles;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod pods;
pub mod policy;
pub mod review;
pub mod server;
pub mod tls;
