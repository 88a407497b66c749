//! Generates what the crate cannot write by hand:
//!
//! - the `net` protocol types and the gRPC services from `proto/net.proto`
//!   (2018, v2), `proto/transcoder.proto` (today's orchestrator ↔ transcoder)
//!   and `proto/lp_rpc.proto` (today's broadcaster ↔ orchestrator)
//!   (needs `protoc`: Debian's `protobuf-compiler`, or `PROTOC`);
//! - Rust types for NVIDIA's video codec API from the headers of Debian's
//!   `libffmpeg-nvenc-dev` (`/usr/include/ffnvcodec`, or `LPGPU_NVCODEC_INCLUDE`).
//!   Only types: the libraries themselves are opened at run time;
//! - PTX for `cuda/*.cu` from nvcc where a CUDA toolkit is installed, else
//!   from clang (Debian's clang can, without a toolkit). Without either the
//!   kernels are compiled by NVRTC at run time.
//!
//! Nothing here needs CUDA or a GPU.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=proto/net.proto");
    println!("cargo:rerun-if-changed=proto/transcoder.proto");
    println!("cargo:rerun-if-changed=proto/lp_rpc.proto");
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
        .compile_protos(
            &[
                "proto/net.proto",
                "proto/transcoder.proto",
                "proto/lp_rpc.proto",
            ],
            &["proto"],
        )
        .unwrap_or_else(|e| panic!("compiling proto/*.proto failed: {e}"));

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    generate_nvcodec_bindings(&out_dir);
    compile_kernels_to_ptx(&out_dir);
}

/// bindgen over nv-codec-headers. Enums become plain constants: a value a newer
/// driver returns must never be an invalid Rust enum.
fn generate_nvcodec_bindings(out_dir: &Path) {
    println!("cargo:rerun-if-env-changed=LPGPU_NVCODEC_INCLUDE");
    let include = std::env::var_os("LPGPU_NVCODEC_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include/ffnvcodec"));
    let headers = ["dynlink_cuda.h", "dynlink_nvcuvid.h", "nvEncodeAPI.h"];
    for header in headers {
        let path = include.join(header);
        if !path.is_file() {
            panic!(
                "{} not found: install Debian's `libffmpeg-nvenc-dev` (run .ci/setup) \
                 or set LPGPU_NVCODEC_INCLUDE to a folder of nv-codec-headers",
                path.display()
            );
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let wrapper: String = headers
        .iter()
        .map(|h| format!("#include <{h}>\n"))
        .collect();
    let bindings = bindgen::Builder::default()
        .header_contents("lpgpu_nvcodec.h", &wrapper)
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("CUVID.*|_CUVID.*|cudaVideo.*|CUvideo.*|tcuvid.*")
        .allowlist_type("NV_ENC.*|_NV_ENC.*|NVENCSTATUS|GUID|_GUID|PNVENC.*")
        .allowlist_var("NVENCAPI_.*|NV_ENC_.*|NV_MAX_SEQ_HDR_LEN|MAX_NUM_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over {}: {e}", include.display()));
    bindings
        .write_to_file(out_dir.join("nvcodec.rs"))
        .unwrap_or_else(|e| panic!("writing the codec bindings: {e}"));
}

/// `cuda/*.cu` to PTX: with `nvcc` when a CUDA toolkit is installed (or
/// `LPGPU_NVCC` names one), else with clang, which needs no toolkit (the
/// kernels include no CUDA header). The driver JIT-compiles the PTX for
/// whatever card it finds. When neither can, an empty file tells the crate
/// to use NVRTC at run time instead.
fn compile_kernels_to_ptx(out_dir: &Path) {
    println!("cargo:rerun-if-env-changed=LPGPU_CLANG");
    println!("cargo:rerun-if-env-changed=LPGPU_NVCC");
    let source = Path::new("cuda/resize_nv12.cu");
    println!("cargo:rerun-if-changed={}", source.display());
    let ptx = out_dir.join("resize_nv12.ptx");

    let nvcc = std::env::var_os("LPGPU_NVCC")
        .map(PathBuf::from)
        .or_else(|| which("nvcc"));
    if let Some(nvcc) = nvcc {
        let built = std::process::Command::new(&nvcc)
            .args(["-ptx", "-O3", "-arch=compute_70", "-o"])
            .arg(&ptx)
            .arg(source)
            .status();
        match built {
            Ok(s) if s.success() => return,
            outcome => println!(
                "cargo:warning={} could not compile {} ({outcome:?}); trying clang",
                nvcc.display(),
                source.display()
            ),
        }
    }

    let clang = std::env::var_os("LPGPU_CLANG").unwrap_or_else(|| "clang".into());
    let status = std::process::Command::new(&clang)
        .args(["-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_70"])
        .args([
            "-nocudainc",
            "-nocudalib",
            "-O3",
            "-DLPGPU_CLANG_PTX",
            "-S",
            "-o",
        ])
        .arg(&ptx)
        .arg(source)
        .status();
    match status {
        Ok(s) if s.success() => {}
        outcome => {
            println!(
                "cargo:warning=clang could not compile {} to PTX ({outcome:?}); \
                 the kernels will be compiled by NVRTC at run time",
                source.display()
            );
            std::fs::write(&ptx, "").expect("writing an empty PTX placeholder");
        }
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
