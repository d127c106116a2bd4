//! VMware vSphere SOAP driver (placeholder).
