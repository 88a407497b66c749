//! The `lpgpu` binary: everything is in the library; see `lpgpu --help`.

/// The exit status of a transcoder whose orchestrator refused its
/// registration (`invalid secret`, `zero capacity`): retrying cannot help,
/// so service managers are told apart from other failures (status 1).
const EXIT_REFUSED: u8 = 3;

fn main() -> std::process::ExitCode {
    match lpgpu::cli::run(std::env::args_os().collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lpgpu: error: {error:#}");
            match error.downcast_ref::<lpgpu::transcoder::remote::RemoteError>() {
                Some(lpgpu::transcoder::remote::RemoteError::Refused(_)) => {
                    std::process::ExitCode::from(EXIT_REFUSED)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
