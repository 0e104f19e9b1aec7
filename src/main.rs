/// See `betwixt::alloc`: the system allocator, without `posix_memalign`
/// for tokio's cache-aligned task cells and socket registrations.
#[global_allocator]
static ALLOC: betwixt::alloc::Allocator = betwixt::alloc::Allocator;

fn main() {
    std::process::exit(betwixt::cli::main());
}
