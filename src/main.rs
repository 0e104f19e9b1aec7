fn main() {
    std::process::exit(betwixt::cli::main());
}
