//! The configuration shipped in the manifests is one this binary accepts: a
//! renamed or mistyped field there would crash-loop every replica of a real
//! deployment.

use std::path::Path;

use kubefence_shared::profile::Catalog;
use kubefence_webhook::config::ConfigFile;

#[test]
fn the_manifest_config_is_valid_with_the_shipped_catalog() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("manifests/base/webhook-config.toml");
    let file = ConfigFile::read(&path).unwrap();
    let catalog = Catalog::load(&root.join("profiles")).unwrap();
    let config = file.validate(catalog).unwrap();
    assert_eq!(config.policy.required_plugin, "kubefence");
    assert_eq!(config.policy.runtime_classes[0].name, "nono-runc");
}
