//! The configuration the node DaemonSet ships is one this binary accepts.

use std::path::Path;

use kubefence_nri::config::{self, Config};

#[test]
fn the_daemonset_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = config::read_file(&root.join("manifests/base/nri-config.toml"), true).unwrap();
    let c = Config::from_file(file).unwrap();
    assert_eq!(c.plugin_name, kubefence_shared::keys::DEFAULT_PLUGIN_NAME);
    assert_eq!(c.layout.container_dir(), "/nono");
    assert!(c.sandbox_handlers.iter().any(|h| h == "nono-runc"));
}
