use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KINSPECT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    kinspect::cli::run(kinspect::cli::Cli::parse())
}
