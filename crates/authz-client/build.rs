//! Compiles `proto/authz/v1/*.proto` (client stubs only) with the vendored protoc, so building
//! the crate needs no system protoc. `proto` links to the repository's `proto/` directory; a
//! packaged crate carries a copy of the files.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto/authz/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto/authz/v1");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &protos, &includes)?;
    Ok(())
}
