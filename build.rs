//! Generates the `net` protocol types and the gRPC service from `proto/net.proto`.
//!
//! Needs `protoc`: Debian's `protobuf-compiler` (installed by `.ci/setup`), or any
//! protoc named by the `PROTOC` environment variable.

fn main() {
    println!("cargo:rerun-if-changed=proto/net.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");

    if std::env::var_os("PROTOC").is_none() && which("protoc").is_none() {
        panic!(
            "protoc not found: install Debian's `protobuf-compiler` (run .ci/setup) \
             or set PROTOC to a protoc binary"
        );
    }

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/net.proto"], &["proto"])
        .unwrap_or_else(|e| panic!("compiling proto/net.proto failed: {e}"));
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
