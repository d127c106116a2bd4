//! Process-level helpers of the agent binaries: the command line as UTF-8 text, and stdin
//! read with a bound ([`read_stdin`]).
//!
//! `std::env::args()` panics (exit 101 with a backtrace) on an argument that is not UTF-8.
//! The agents read their arguments with `args_os` instead and refuse such an argument with a
//! message naming it (in lossy form) and the fence-agents failure status 1. `argv[0]` is only
//! used for its basename (flavor, help texts) and is converted lossily.

use std::ffi::OsString;
use thiserror::Error;

/// An argument that is not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("argument {index} is not valid UTF-8: '{lossy}'")]
pub struct NonUtf8Arg {
    /// Position in argv (1 = the first argument after the program name).
    pub index: usize,
    /// The argument with every invalid sequence replaced by U+FFFD.
    pub lossy: String,
}

/// Converts argv (program name first) to strings; `argv[0]` lossily, every other argument
/// must be UTF-8.
pub fn utf8_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, NonUtf8Arg> {
    args.into_iter()
        .enumerate()
        .map(|(index, a)| match a.into_string() {
            Ok(s) => Ok(s),
            Err(a) if index == 0 => Ok(a.to_string_lossy().into_owned()),
            Err(a) => Err(NonUtf8Arg {
                index,
                lossy: a.to_string_lossy().into_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn names_the_bad_argument() {
        let argv = vec![
            OsString::from_vec(b"/x/\xfffence_xvm".to_vec()),
            OsString::from("-o"),
            OsString::from_vec(b"of\xfff".to_vec()),
        ];
        let e = utf8_args(argv).unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(
            e.to_string(),
            "argument 2 is not valid UTF-8: 'of\u{FFFD}f'"
        );
        let ok = utf8_args([
            OsString::from_vec(b"/x/\xfffence_xvm".to_vec()),
            OsString::from("-h"),
        ])
        .unwrap();
        assert_eq!(ok, ["/x/\u{FFFD}fence_xvm", "-h"]);
    }
}

/// Most bytes of `key=value` input an agent reads from stdin (a cluster passes a few hundred).
pub const MAX_STDIN: usize = 1 << 20;

/// Why stdin could not be taken as agent input.
#[derive(Debug, thiserror::Error)]
pub enum StdinError {
    /// Reading failed.
    #[error("cannot read stdin: {0}")]
    Read(#[from] std::io::Error),
    /// More than [`MAX_STDIN`] bytes.
    #[error("stdin is longer than {MAX_STDIN} bytes")]
    TooLong,
}

/// All of stdin, at most [`MAX_STDIN`] bytes (more is an error; nothing beyond the bound is
/// read).
pub fn read_stdin(stdin: &mut dyn std::io::Read) -> Result<Vec<u8>, StdinError> {
    use std::io::Read;
    let mut input = Vec::new();
    Read::take(&mut *stdin, MAX_STDIN as u64 + 1).read_to_end(&mut input)?;
    if input.len() > MAX_STDIN {
        return Err(StdinError::TooLong);
    }
    Ok(input)
}

#[cfg(test)]
mod stdin_tests {
    use super::*;

    #[test]
    fn stdin_is_read_up_to_its_bound() {
        let ok = vec![b'a'; MAX_STDIN];
        assert_eq!(read_stdin(&mut ok.as_slice()).unwrap().len(), MAX_STDIN);
        let long = vec![b'a'; MAX_STDIN + 1];
        assert!(matches!(
            read_stdin(&mut long.as_slice()),
            Err(StdinError::TooLong)
        ));
        // An endless stdin is not read to its end.
        assert!(matches!(
            read_stdin(&mut std::io::repeat(b'x')),
            Err(StdinError::TooLong)
        ));
    }
}
