//! kubefence NRI plugin.

pub mod mux;
pub mod proto;
