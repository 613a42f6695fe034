//! kubefence NRI plugin.
