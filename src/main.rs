//! The `lpgpu` binary: everything is in the library; see `lpgpu --help`.

fn main() -> std::process::ExitCode {
    match lpgpu::cli::run(std::env::args_os().collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lpgpu: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
