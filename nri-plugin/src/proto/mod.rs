//! Generated NRI messages (`api`) and ttrpc services (`api_ttrpc`).

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_results,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    renamed_and_removed_lints,
    unused_mut,
    dead_code,
    trivial_casts,
    unsafe_code,
    unused_attributes,
    unknown_lints
)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_results,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    renamed_and_removed_lints,
    unused_mut,
    dead_code,
    trivial_casts,
    unsafe_code,
    unused_attributes,
    unknown_lints
)]
pub mod api_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/api_ttrpc.rs"));
}

/// Wire bytes computed by hand from the protobuf encoding rules and the
/// upstream field numbers: a wrong field number or type fails here.
#[cfg(test)]
mod tests {
    use super::api;
    use protobuf::Message;

    fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: &M, wire: &[u8]) {
        assert_eq!(msg.write_to_bytes().unwrap(), wire, "encoding");
        assert_eq!(&M::parse_from_bytes(wire).unwrap(), msg, "decoding");
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn register_plugin_request() {
        let mut m = api::RegisterPluginRequest::new();
        m.plugin_name = "kubefence".into();
        m.plugin_idx = "10".into();
        m.NRI_version = "v0.12.2".into();
        round_trip(&m, b"\x0a\x09kubefence\x12\x0210\x1a\x07v0.12.2");
    }

    #[test]
    fn configure_request_and_response() {
        let mut m = api::ConfigureRequest::new();
        m.runtime_name = "containerd".into();
        m.runtime_version = "v2.2.0".into();
        m.registration_timeout = 5000;
        m.request_timeout = 2000;
        m.NRI_version = "v0.12.2".into();
        // 5000 = varint 88 27, 2000 = varint d0 0f.
        round_trip(
            &m,
            b"\x12\x0acontainerd\x1a\x06v2.2.0\x20\x88\x27\x28\xd0\x0f\x32\x07v0.12.2",
        );
        // A pre-v0.12 runtime sends no field 6.
        let old = api::ConfigureRequest::parse_from_bytes(b"\x12\x0acontainerd").unwrap();
        assert_eq!(old.NRI_version, "");

        let mut r = api::ConfigureResponse::new();
        r.events = 0x8 | 0x200 | 0x400 | 0x2000;
        // Field 2 (there is no field 1), 0x2608 = varint 88 4c.
        round_trip(&r, b"\x10\x88\x4c");
    }

    fn pod() -> api::PodSandbox {
        let mut p = api::PodSandbox::new();
        p.id = "p1".into();
        p.name = "web".into();
        p.namespace = "ns".into();
        p.annotations.insert("k".into(), "v".into());
        p.runtime_handler = "nono-runc".into();
        p
    }

    #[test]
    fn create_container_request() {
        let mut c = api::Container::new();
        c.id = "c1".into();
        c.name = "app".into();
        c.args = strings(&["/app"]);
        c.env = strings(&["NONO_ALLOW=/"]);
        let mut m = api::CreateContainerRequest::new();
        m.pod = protobuf::MessageField::some(pod());
        m.container = protobuf::MessageField::some(c);
        let pod_bytes: &[u8] =
            b"\x0a\x02p1\x12\x03web\x22\x02ns\x32\x06\x0a\x01k\x12\x01v\x3a\x09nono-runc";
        let ctr_bytes: &[u8] = b"\x0a\x02c1\x1a\x03app\x3a\x04/app\x42\x0cNONO_ALLOW=/";
        let mut wire = vec![0x0a, pod_bytes.len() as u8];
        wire.extend_from_slice(pod_bytes);
        wire.extend_from_slice(&[0x12, ctr_bytes.len() as u8]);
        wire.extend_from_slice(ctr_bytes);
        assert_eq!(pod_bytes.len(), 0x20);
        round_trip(&m, &wire);
    }

    #[test]
    fn create_container_response_with_adjustment() {
        let mut mount = api::Mount::new();
        mount.destination = "/nono".into();
        mount.type_ = "bind".into();
        mount.source = "/opt/kubefence".into();
        mount.options = strings(&["bind", "ro"]);
        let mut kv = api::KeyValue::new();
        kv.key = "-NONO_ALLOW".into();
        let mut adj = api::ContainerAdjustment::new();
        adj.mounts.push(mount);
        adj.env.push(kv);
        adj.args = strings(&["/nono/nono", "--", "/app"]);
        let mut m = api::CreateContainerResponse::new();
        m.adjust = protobuf::MessageField::some(adj);
        let wire: &[u8] = b"\x0a\x4e\
            \x1a\x27\x0a\x05/nono\x12\x04bind\x1a\x0e/opt/kubefence\x22\x04bind\x22\x02ro\
            \x22\x0d\x0a\x0b-NONO_ALLOW\
            \x4a\x0a/nono/nono\x4a\x02--\x4a\x04/app";
        round_trip(&m, wire);
        // An empty response (skip) is zero bytes.
        round_trip(&api::CreateContainerResponse::new(), b"");
    }

    #[test]
    fn synchronize_request_and_response() {
        let mut p = api::PodSandbox::new();
        p.id = "p1".into();
        let mut c = api::Container::new();
        c.id = "c1".into();
        c.state = api::ContainerState::CONTAINER_RUNNING.into();
        let mut m = api::SynchronizeRequest::new();
        m.pods.push(p);
        m.containers.push(c);
        m.more = true;
        round_trip(&m, b"\x0a\x04\x0a\x02p1\x12\x06\x0a\x02c1\x20\x03\x18\x01");

        let mut r = api::SynchronizeResponse::new();
        r.more = true;
        round_trip(&r, b"\x10\x01");
        round_trip(&api::SynchronizeResponse::new(), b"");
    }

    #[test]
    fn validate_container_adjustment() {
        let mut p = api::PodSandbox::new();
        p.id = "p1".into();
        let mut c = api::Container::new();
        c.id = "c1".into();
        let mut adj = api::ContainerAdjustment::new();
        adj.args = strings(&["x"]);
        let mut fo = api::FieldOwners::new();
        fo.simple.insert(7, "10-kubefence".into());
        let mut owners = api::OwningPlugins::new();
        owners.owners.insert("c1".into(), fo);
        let mut inst = api::PluginInstance::new();
        inst.name = "kubefence".into();
        inst.index = "10".into();
        let mut m = api::ValidateContainerAdjustmentRequest::new();
        m.pod = protobuf::MessageField::some(p);
        m.container = protobuf::MessageField::some(c);
        m.adjust = protobuf::MessageField::some(adj);
        m.owners = protobuf::MessageField::some(owners);
        m.plugins.push(inst);
        let wire: &[u8] = b"\x0a\x04\x0a\x02p1\
            \x12\x04\x0a\x02c1\
            \x1a\x03\x4a\x01x\
            \x2a\x1a\x0a\x18\x0a\x02c1\x12\x12\x0a\x10\x08\x07\x12\x0c10-kubefence\
            \x32\x0f\x0a\x09kubefence\x12\x0210";
        round_trip(&m, wire);

        let mut r = api::ValidateContainerAdjustmentResponse::new();
        r.reject = true;
        r.reason = "no".into();
        round_trip(&r, b"\x08\x01\x12\x02no");
    }

    #[test]
    fn state_change_event() {
        let mut p = api::PodSandbox::new();
        p.id = "p1".into();
        let mut c = api::Container::new();
        c.id = "c1".into();
        let mut m = api::StateChangeEvent::new();
        m.event = api::Event::REMOVE_CONTAINER.into();
        m.pod = protobuf::MessageField::some(p);
        m.container = protobuf::MessageField::some(c);
        round_trip(&m, b"\x08\x0b\x12\x04\x0a\x02p1\x1a\x04\x0a\x02c1");
    }

    #[test]
    fn fields_outside_the_subset_are_skipped() {
        // Container with linux (11, a message) and image (22, a message)
        // as a v0.12.2 runtime sends them.
        let wire: &[u8] = b"\x0a\x02c1\x5a\x02\x0a\x00\xb2\x01\x03\x0a\x01i\x1a\x03app";
        let c = api::Container::parse_from_bytes(wire).unwrap();
        assert_eq!(c.id, "c1");
        assert_eq!(c.name, "app");
    }
}
