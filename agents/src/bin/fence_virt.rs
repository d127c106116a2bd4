//! `fence_virt`: drop-in for the C serial/vmchannel/TCP/vsock agent (fence-agents 4.12.1). All logic is in
//! [`fence_agents::fence_virt::flow`]; the flavor is chosen by the basename of argv[0].
fn main() {
    let argv = match fence_agents::cli::utf8_args(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {e}", env!("CARGO_BIN_NAME"));
            std::process::exit(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = fence_agents::fence_virt::flow::run(
        &argv,
        &mut std::io::stdin().lock(),
        &mut out,
        &mut std::io::stderr(),
        &mut fence_agents::fence_virt::client::ClientTransport,
    );
    use std::io::Write;
    let _ = out.flush();
    std::process::exit(code);
}
