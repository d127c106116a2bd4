//! libvirt driver (placeholder; see drivers helper).
