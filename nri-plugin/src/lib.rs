//! kubefence NRI plugin: puts every container of a sandbox RuntimeClass
//! handler under nono, as decided and signed by the kubefence webhook.

pub mod audit;
pub mod connection;
pub mod decide;
pub mod mux;
pub mod nono;
pub mod plugin;
pub mod proto;
pub mod runtime;
pub mod validate;
