//! kvs-core's integration tests, one binary (one link) for all: each
//! module is an area, `common` the setup they share. Run one area with
//! `cargo test -p kvs-core --all-features --test integration <module>::`.

mod archive_timeline;
mod aws_config_chain;
mod bad_input;
mod client_faults;
mod codec_quirks;
mod common;
mod error_surface;
mod fragments;
mod fuzz_corpus;
mod local_archived;
mod local_auth;
mod local_control;
mod local_faults;
mod local_fragment_metadata;
mod local_media;
mod local_official_clients;
mod local_persist;
mod local_playback;
mod local_retention;
mod local_robustness;
mod merge;
mod moto;
mod mux_leading;
mod producer_core;
mod producer_faults;
mod producer_uploads;
mod readme_defaults;
mod runtime_edges;
mod sigv4_botocore;
mod split_invariance;
mod support;
mod vectors;
mod vectors_path;
mod wan;
