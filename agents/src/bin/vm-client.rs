//! `vm-client`: OCF resource agent publishing the hypervisor host's Pacemaker status in a guest
//! cluster. All logic is in [`fence_agents::vm_client`].
fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(fence_agents::vm_client::main_with(&args));
}
