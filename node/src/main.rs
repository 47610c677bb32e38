//! The `clawnet` command.

fn main() -> std::process::ExitCode {
    clawnet_node::cli::main()
}
