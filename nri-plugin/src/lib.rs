//! kubefence NRI plugin.

pub mod proto;
