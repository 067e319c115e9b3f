use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KINSPECT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match kinspect::cli::run(kinspect::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once: most messages already quote their cause.
            let mut text = error.to_string();
            for cause in error.chain().skip(1).map(ToString::to_string) {
                if !text.contains(&cause) {
                    text = format!("{text}: {cause}");
                }
            }
            eprintln!("kinspect: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}
