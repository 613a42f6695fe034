//! What the kubefence webhook and node plugin must agree on.
//!
//! - [`keys`]: annotation and label keys.
//! - [`profile`]: the profile grammar ([`ProfileName`]) and the catalog.
//! - [`decision`]: what a decision says and binds ([`Claims`]).
//! - [`envelope`]: signing ([`Signer`]) and verifying ([`TrustSet`]) the JWS
//!   that carries it; only verification yields a [`VerifiedDecision`].
//! - [`wrap`]: the nono command line a sandboxed process runs under.
//! - [`audit`]: the audit record both components write.

pub mod audit;
pub mod decision;
pub mod envelope;
pub mod keys;
pub mod profile;
pub mod wrap;

pub use decision::{Claims, Freshness, NodeView, PodBinding};
pub use envelope::{KeyId, ParsedToken, Signer, TrustSet, VerifiedDecision, VerifyError};
pub use profile::{Catalog, ProfileName};
