//! kubefence NRI plugin.

pub mod decide;
pub mod mux;
pub mod nono;
pub mod proto;
pub mod runtime;
