//! `fence_virtd` with an argument that is not UTF-8: a clear error and exit 1 (like its other
//! bad-option exits), not a panic (exit 101) from `std::env::args()`.

use std::os::unix::ffi::OsStringExt;

#[test]
fn non_utf8_argument_is_a_clear_error() {
    let out = assert_cmd::Command::cargo_bin("fence_virtd")
        .unwrap()
        .arg("-f")
        .arg(std::ffi::OsString::from_vec(
            b"/etc/fence\xff.conf".to_vec(),
        ))
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("fence_virtd: argument '/etc/fence\u{FFFD}.conf' is not valid UTF-8\nUsage: fence_virtd"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
