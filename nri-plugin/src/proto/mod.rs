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
