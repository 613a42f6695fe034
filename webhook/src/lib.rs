//! kubefence admission webhook.
