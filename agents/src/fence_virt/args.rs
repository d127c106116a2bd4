//! Option table, command line and stdin of the C virt agents (`fence_xvm`, `fence_virt`),
//! matching fence-agents 4.12.1 `agents/virt/client/options.c` and `main.c` (their `-h`,
//! metadata and man page are generated from the same table in [`super::docs`]).
//!
//! Matching rules reproduced from the reference (checked against the Debian 4.12.1 binaries by
//! `agents/tests/virt_cli.rs`):
//! * mode by `basename(argv[0])`: exactly `fence_xvm` is the multicast agent, any other name
//!   is `fence_virt`;
//! * argv is scanned like glibc `getopt(3)` with permutation and short options only; an unknown
//!   option or a missing argument prints glibc's message on stderr and then the help, as the
//!   reference's `?` table entry does, but exits 1 where the reference exits 0 (a script
//!   running `fence_virt … -o off -X` must not be told the fence succeeded); `-M` is in the option string but has
//!   no handler, so it is an error (usage, exit 1); `-S` takes an attached optional argument;
//! * stdin (only with no arguments at all): `fgets` chunks of at most 255 bytes, `#` in column 0
//!   is a comment, leading blanks skipped, the line cut at the first blank/CR/LF, split at the
//!   first `=`, keys case-insensitive; unknown keys warn on stderr and are ignored;
//! * every validation message is printed on **stdout** (4.12.1), except the stdin warning;
//! * not in C: a stdin line that is not UTF-8 is an error (message, usage, exit 1), the
//!   reference takes the bytes as they are.
//!
//! Our documented additions (host status, see `man/fence_virt.8`): action `host-status` and the
//! option `--attribute NAME` / stdin `attribute=NAME`. They appear in metadata (`attribute`
//! parameter before `domain`, `host-status` action last), in `-h` (one extra line in each list)
//! and in the man page. Tests compare with the reference binaries' output with exactly those
//! lines removed.

use crate::options::{c_atoi, c_strtol_int, c_strtoul, ArgKind, ContentType, OptSpec, OptTable};
use fence_proto::{Family, HashAlg, Op, DEFAULT_PORT, MAX_DOMAIN_LEN};
use std::io::Write;

/// Default key file of both agents.
pub const DEFAULT_KEY_FILE: &str = "/etc/cluster/fence_xvm.key";
/// Default vmchannel address.
pub const DEFAULT_CHANNEL_IP: &str = "10.0.2.179";
/// Default serial parameters.
pub const DEFAULT_SERIAL_PARAMS: &str = "115200,8N1";
/// The agent/protocol version string both C agents print for `-V`.
pub const XVM_VERSION: &str = "1.9.0";

/// Which of the two C agents is being emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `fence_xvm`: multicast.
    Xvm,
    /// `fence_virt`: serial/vmchannel, TCP (`-T`) or vsock (`-S`).
    Virt,
}

impl Flavor {
    /// Mode selection by `basename(argv[0])`: exactly `fence_xvm` or anything else.
    pub fn from_argv0(argv0: &str) -> Flavor {
        if basename(argv0) == "fence_xvm" {
            Flavor::Xvm
        } else {
            Flavor::Virt
        }
    }
}

/// C `basename(3)` (GNU version: text after the last `/`).
pub fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Parses an action name case-insensitively as `assign_op` does: `monitor` is
/// [`Op::DevStatus`], `list` and `list-status` are [`Op::HostList`], `host-status` is our
/// [`Op::HostStatus`]; `metadata` and `validate-all` are answered locally.
pub fn parse_action(s: &str) -> Option<Op> {
    Some(match s.to_ascii_lowercase().as_str() {
        "null" => Op::Null,
        "on" => Op::On,
        "off" => Op::Off,
        "reboot" => Op::Reboot,
        "status" => Op::Status,
        "monitor" => Op::DevStatus,
        "list" | "list-status" => Op::HostList,
        "metadata" => Op::Metadata,
        "validate-all" => Op::ValidateAll,
        "host-status" => Op::HostStatus,
        _ => return None,
    })
}

/// Transport selected after parsing: multicast for `fence_xvm`; for `fence_virt`, vsock with
/// `-S` (even together with `-T`), else tcp with `-T`, else serial (`-D` device or vmchannel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `fence_xvm`
    Multicast,
    /// `fence_virt` default: serial device or vmchannel TCP
    Serial,
    /// `fence_virt -T`
    Tcp,
    /// `fence_virt -S`
    Vsock,
}

/// Parsed arguments (C `fence_virt_args_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtArgs {
    /// Target VM name or UUID.
    pub domain: Option<String>,
    /// Operation.
    pub op: Op,
    /// Transport.
    pub mode: Mode,
    /// Debug level.
    pub debug: i32,
    /// Timeout in seconds (> 0).
    pub timeout: i32,
    /// Delay in seconds (>= 0).
    pub delay: i32,
    /// Multicast retransmit period in tenths of a second.
    pub retrans: i32,
    /// `-h` / `-?` seen (or a getopt error).
    pub help: bool,
    /// A getopt error (unknown option, missing argument): help is printed as in the
    /// reference, but the exit status is 1, not 0.
    pub bad_option: bool,
    /// `-V` seen.
    pub version: bool,
    /// A parse or validation error happened.
    pub err: bool,
    /// Multicast group.
    pub mcast_addr: Option<String>,
    /// TCP target (`-T`).
    pub ipaddr: Option<String>,
    /// Key file path.
    pub key_file: String,
    /// Whether the key file was given explicitly.
    pub key_file_explicit: bool,
    /// vsock CID (0 = unset).
    pub cid: u32,
    /// Port.
    pub port: u16,
    /// Request hash.
    pub hash: HashAlg,
    /// Challenge/response algorithm.
    pub auth: HashAlg,
    /// Address family (`None`: decide from the group address).
    pub family: Option<Family>,
    /// Serial device (`-D`).
    pub serial_device: Option<String>,
    /// Serial parameters.
    pub serial_params: String,
    /// vmchannel address.
    pub channel_address: String,
    /// RF_UUID flag.
    pub use_uuid: bool,
    /// Host attribute for `host-status` (our addition).
    pub attribute: Option<String>,
}

impl VirtArgs {
    /// Defaults (C `args_init`).
    pub fn new(flavor: Flavor) -> Self {
        VirtArgs {
            domain: None,
            op: Op::Reboot,
            mode: match flavor {
                Flavor::Xvm => Mode::Multicast,
                Flavor::Virt => Mode::Serial,
            },
            debug: 0,
            timeout: 30,
            delay: 0,
            retrans: 20,
            help: false,
            bad_option: false,
            version: false,
            err: false,
            mcast_addr: None,
            ipaddr: None,
            key_file: DEFAULT_KEY_FILE.to_string(),
            key_file_explicit: false,
            cid: 0,
            port: DEFAULT_PORT,
            hash: HashAlg::Sha256,
            auth: HashAlg::Sha256,
            family: None,
            serial_device: None,
            serial_params: DEFAULT_SERIAL_PARAMS.to_string(),
            channel_address: DEFAULT_CHANNEL_IP.to_string(),
            use_uuid: false,
            attribute: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The option table (C `_arg_info`), one constant per option, arranged per binary below.

const DOMAIN_DESC: &str = "Virtual Machine (domain name) to fence";
const ACTION_DESC: &str = "Fencing action (null, off, on, [reboot], status, list, list-status, monitor, validate-all, metadata)";

const O_DEBUG: OptSpec = OptSpec {
    key: "debug",
    short: Some('d'),
    kind: ArgKind::Counter,
    content: ContentType::Boolean,
    arg_help: "-d",
    shortdesc: "Specify (stdin) or increment (command line) debug level",
    ..OptSpec::EMPTY
};
const O_FAMILY: OptSpec = OptSpec {
    key: "ip_family",
    short: Some('i'),
    default: Some("auto"),
    arg_help: "-i <family>",
    shortdesc: "IP Family ([auto], ipv4, ipv6)",
    ..OptSpec::EMPTY
};
const O_MADDR: OptSpec = OptSpec {
    key: "multicast_address",
    short: Some('a'),
    arg_help: "-a <address>",
    shortdesc: "Multicast address (default=225.0.0.12 / ff05::3:1)",
    ..OptSpec::EMPTY
};
const O_IPADDR: OptSpec = OptSpec {
    key: "ipaddr",
    short: Some('T'),
    default: Some("127.0.0.1"),
    arg_help: "-T <address>",
    shortdesc: "IP address to connect to in TCP mode (default=127.0.0.1 / ::1)",
    ..OptSpec::EMPTY
};
const O_VSOCK: OptSpec = OptSpec {
    key: "vsock",
    short: Some('S'),
    kind: ArgKind::OptionalValue,
    content: ContentType::Integer,
    default: Some("2"),
    arg_help: "-S <cid>",
    shortdesc: "vm socket CID to connect to in vsock mode",
    ..OptSpec::EMPTY
};
const O_CHANNEL: OptSpec = OptSpec {
    key: "channel_address",
    short: Some('A'),
    default: Some("10.0.2.179"),
    arg_help: "-A <address>",
    shortdesc: "VM Channel IP address (default=10.0.2.179)",
    ..OptSpec::EMPTY
};
const O_PORT: OptSpec = OptSpec {
    key: "ipport",
    short: Some('p'),
    default: Some("1229"),
    arg_help: "-p <port>",
    shortdesc: "TCP, Multicast, VMChannel, or VM socket port (default=1229)",
    ..OptSpec::EMPTY
};
const O_RETRANS: OptSpec = OptSpec {
    key: "retrans",
    short: Some('r'),
    default: Some("20"),
    arg_help: "-r <retrans>",
    shortdesc: "Multicast retransmit time (in 1/10sec; default=20)",
    ..OptSpec::EMPTY
};
const O_HASH: OptSpec = OptSpec {
    key: "hash",
    short: Some('c'),
    default: Some("sha256"),
    arg_help: "-c <hash>",
    shortdesc: "Packet hash strength (none, sha1, [sha256], sha512)",
    ..OptSpec::EMPTY
};
const O_AUTH: OptSpec = OptSpec {
    key: "auth",
    short: Some('C'),
    default: Some("sha256"),
    arg_help: "-C <auth>",
    shortdesc: "Authentication (none, sha1, [sha256], sha512)",
    ..OptSpec::EMPTY
};
const O_KEY: OptSpec = OptSpec {
    key: "key_file",
    short: Some('k'),
    default: Some(DEFAULT_KEY_FILE),
    arg_help: "-k <file>",
    shortdesc: "Shared key file (default=/etc/cluster/fence_xvm.key)",
    ..OptSpec::EMPTY
};
const O_DEVICE: OptSpec = OptSpec {
    key: "serial_device",
    short: Some('D'),
    default: Some("/dev/ttyS1"),
    arg_help: "-D <device>",
    shortdesc: "Serial device (default=/dev/ttyS1)",
    ..OptSpec::EMPTY
};
const O_PARAMS: OptSpec = OptSpec {
    key: "serial_params",
    short: Some('P'),
    default: Some(DEFAULT_SERIAL_PARAMS),
    arg_help: "-P <param>",
    shortdesc: "Serial Parameters (default=115200,8N1)",
    ..OptSpec::EMPTY
};
/// `-M`: in both option strings but without a table entry in C (error when used).
const O_M: OptSpec = OptSpec {
    short: Some('M'),
    kind: ArgKind::Unhandled,
    hidden: true,
    ..OptSpec::EMPTY
};
const O_ACTION: OptSpec = OptSpec {
    key: "action",
    short: Some('o'),
    default: Some("reboot"),
    arg_help: "-o <operation>",
    shortdesc: ACTION_DESC,
    // `option` is the deprecated stdin spelling (C table entry without a letter).
    stdin_aliases: &["option"],
    ..OptSpec::EMPTY
};
const O_PLUG: OptSpec = OptSpec {
    key: "plug",
    short: Some('n'),
    required: true,
    arg_help: "-n <domain>",
    shortdesc: DOMAIN_DESC,
    obsoletes: Some("port"),
    ..OptSpec::EMPTY
};
const O_PORT_DOMAIN: OptSpec = OptSpec {
    key: "port",
    short: Some('H'),
    required: true,
    arg_help: "-H <domain>",
    shortdesc: DOMAIN_DESC,
    deprecated: true,
    ..OptSpec::EMPTY
};
const O_UUID: OptSpec = OptSpec {
    key: "use_uuid",
    short: Some('u'),
    kind: ArgKind::Flag,
    default: Some("0"),
    arg_help: "-u",
    shortdesc: "Treat [domain] as UUID instead of domain name. This is provided for compatibility with older fence_xvmd installations.",
    ..OptSpec::EMPTY
};
const O_TIMEOUT: OptSpec = OptSpec {
    key: "timeout",
    short: Some('t'),
    default: Some("30"),
    arg_help: "-t <timeout>",
    shortdesc: "Fencing timeout (in seconds; default=30)",
    ..OptSpec::EMPTY
};
const O_HELP: OptSpec = OptSpec {
    short: Some('h'),
    kind: ArgKind::Flag,
    arg_help: "-h",
    shortdesc: "Help",
    ..OptSpec::EMPTY
};
const O_HELP_ALT: OptSpec = OptSpec {
    short: Some('?'),
    kind: ArgKind::Flag,
    arg_help: "-?",
    shortdesc: "Help (alternate)",
    ..OptSpec::EMPTY
};
const O_VERSION: OptSpec = OptSpec {
    short: Some('V'),
    kind: ArgKind::Flag,
    arg_help: "-V",
    shortdesc: "Display version and exit",
    ..OptSpec::EMPTY
};
const O_DELAY: OptSpec = OptSpec {
    key: "delay",
    short: Some('w'),
    default: Some("0"),
    arg_help: "-w <delay>",
    shortdesc: "Fencing delay (in seconds; default=0)",
    ..OptSpec::EMPTY
};
/// Our addition (host status): long option only, so C getopt never sees it.
pub(super) const O_ATTRIBUTE: OptSpec = OptSpec {
    key: "attribute",
    long: Some("attribute"),
    arg_help: "--attribute <name>",
    shortdesc: "Host attribute to read with action host-status",
    addition: true,
    ..OptSpec::EMPTY
};
/// Older stdin synonym of `plug`, appended to metadata with an empty getopt (C SCHEMA_COMPAT).
const O_DOMAIN: OptSpec = OptSpec {
    key: "domain",
    shortdesc: "Virtual Machine (domain name) to fence (deprecated; use port)",
    deprecated: true,
    ..OptSpec::EMPTY
};
/// Stdin keys accepted and ignored by both agents.
pub const IGNORED_STDIN_KEYS: &[&str] = &["agent", "self", "nodename"];

/// The option table of a flavor, in its C option-string order (`di:a:p:r:C:c:k:M:n:H:uo:t:?hVw:`
/// resp. `dD:P:A:p:M:n:H:o:t:?hVT:S::C:c:k:w:`), then our `attribute`, then `domain`.
/// The C table's `-I`/`interface` entry is in neither option string and is left out.
pub fn table(flavor: Flavor) -> OptTable {
    let specs = match flavor {
        Flavor::Xvm => vec![
            O_DEBUG,
            O_FAMILY,
            O_MADDR,
            O_PORT,
            O_RETRANS,
            O_AUTH,
            O_HASH,
            O_KEY,
            O_M,
            O_PLUG,
            O_PORT_DOMAIN,
            O_UUID,
            O_ACTION,
            O_TIMEOUT,
            O_HELP_ALT,
            O_HELP,
            O_VERSION,
            O_DELAY,
            O_ATTRIBUTE,
            O_DOMAIN,
        ],
        Flavor::Virt => vec![
            O_DEBUG,
            O_DEVICE,
            O_PARAMS,
            O_CHANNEL,
            O_PORT,
            O_M,
            O_PLUG,
            O_PORT_DOMAIN,
            O_ACTION,
            O_TIMEOUT,
            O_HELP_ALT,
            O_HELP,
            O_VERSION,
            O_IPADDR,
            O_VSOCK,
            O_AUTH,
            O_HASH,
            O_KEY,
            O_DELAY,
            O_ATTRIBUTE,
            O_DOMAIN,
        ],
    };
    OptTable::new(specs)
}

// ---------------------------------------------------------------------------------------------
// Assignment (C assign_* functions). `out` receives the messages the reference prints on stdout.

fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// Applies one option (by stdin key) with an optional value, as the C `assign_*` functions do.
pub fn assign(args: &mut VirtArgs, key: &str, value: Option<&str>, out: &mut dyn Write) {
    let mut say = |args: &mut VirtArgs, msg: String| {
        let _ = writeln!(out, "{msg}");
        args.err = true;
    };
    match key {
        "debug" => match value {
            None => args.debug += 1,
            Some(v) => {
                args.debug = c_atoi(v);
                if args.debug < 0 {
                    args.debug = 1;
                }
            }
        },
        "ip_family" => {
            if let Some(v) = value {
                match v.to_ascii_lowercase().as_str() {
                    "ipv4" => args.family = Some(Family::V4),
                    "ipv6" => args.family = Some(Family::V6),
                    "auto" => args.family = None,
                    _ => say(args, format!("Unsupported family: '{v}'")),
                }
            }
        }
        "multicast_address" => {
            if let Some(v) = value {
                args.mcast_addr = Some(v.to_string());
            }
        }
        "ipaddr" => {
            if let Some(v) = value {
                args.ipaddr = Some(v.to_string());
            }
        }
        "channel_address" => {
            if let Some(v) = value {
                args.channel_address = v.to_string();
            }
        }
        "serial_device" => {
            if let Some(v) = value {
                args.serial_device = Some(v.to_string());
            }
        }
        "serial_params" => {
            if let Some(v) = value {
                args.serial_params = v.to_string();
            }
        }
        "ipport" => {
            if let Some(v) = value {
                let (n, whole) = c_strtol_int(v);
                if n <= 0 || n >= 65536 || !whole {
                    say(args, format!("Invalid port: '{v}'"));
                } else {
                    args.port = n as u16;
                }
            }
        }
        "vsock" => match value {
            None => args.cid = 2,
            Some(v) => {
                let (n, whole) = c_strtoul(v);
                if !whole || !(2..0xffff_ffff).contains(&n) {
                    say(args, format!("Invalid CID: '{v}'"));
                } else {
                    args.cid = n as u32;
                }
            }
        },
        "retrans" => {
            if let Some(v) = value {
                let (n, whole) = c_strtol_int(v);
                if n <= 0 || !whole {
                    say(args, format!("Invalid retransmit time: '{v}'"));
                } else {
                    args.retrans = n;
                }
            }
        }
        "hash" => {
            if let Some(v) = value {
                match v.parse::<HashAlg>() {
                    Ok(h) => args.hash = h,
                    Err(_) => say(args, format!("Unsupported hash: {v}")),
                }
            }
        }
        "auth" => {
            if let Some(v) = value {
                match v.parse::<HashAlg>() {
                    Ok(h) => args.auth = h,
                    Err(_) => say(args, format!("Unsupported auth type: {v}")),
                }
            }
        }
        "key_file" => {
            if let Some(v) = value {
                args.key_file = v.to_string();
                args.key_file_explicit = true;
                if let Err(e) = std::fs::metadata(v) {
                    say(args, format!("Invalid key file: '{v}' ({})", strerror(&e)));
                }
            }
        }
        "action" => {
            if let Some(v) = value {
                match parse_action(v) {
                    Some(op) => args.op = op,
                    None => say(args, format!("Unsupported operation: {v}")),
                }
            }
        }
        "plug" | "port" | "domain" => {
            if args.domain.is_some() {
                say(
                    args,
                    "Domain/UUID may not be specified more than once".to_string(),
                );
                return;
            }
            let Some(v) = value else { return };
            args.domain = Some(v.to_string());
            if v.is_empty() {
                say(args, "Invalid domain name".to_string());
            }
            if v.len() > MAX_DOMAIN_LEN {
                say(
                    args,
                    format!("Invalid domain name: '{v}' (File name too long)"),
                );
            }
        }
        "use_uuid" => match value {
            None => args.use_uuid = true,
            Some(v) => {
                if c_atoi(v) != 0 {
                    args.use_uuid = true;
                }
            }
        },
        "timeout" => {
            if let Some(v) = value {
                let (n, whole) = c_strtol_int(v);
                if n <= 0 || !whole {
                    say(args, format!("Invalid timeout: '{v}'"));
                } else {
                    args.timeout = n;
                }
            }
        }
        "delay" => {
            if let Some(v) = value {
                let (n, whole) = c_strtol_int(v);
                if n < 0 || !whole {
                    say(args, format!("Invalid delay: '{v}'"));
                } else {
                    args.delay = n;
                }
            }
        }
        "attribute" => {
            if let Some(v) = value {
                if v.is_empty() || v.len() > MAX_DOMAIN_LEN {
                    say(
                        args,
                        format!("Invalid attribute name: '{v}' (1 to 63 characters)"),
                    );
                } else {
                    args.attribute = Some(v.to_string());
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// argv: a glibc getopt(3) emulation (permuting, short options only) plus our `--attribute`.

/// One result of scanning argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptEvent {
    /// A known option letter with its argument, if any.
    Opt(char, Option<String>),
    /// Our long option `--attribute`.
    Attribute(String),
    /// Unknown letter or missing argument: glibc printed a message and returned `?`.
    Error,
}

/// Scans `args` (without argv[0]) like glibc `getopt(argc, argv, optstring)` with argument
/// permutation. Error messages go to `err` prefixed with `argv0` exactly as glibc does.
pub fn getopt_scan(
    argv0: &str,
    args: &[String],
    table: &OptTable,
    err: &mut dyn Write,
) -> Vec<GetoptEvent> {
    let mut events = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        if let Some(rest) = a.strip_prefix("--attribute") {
            // Our addition; GNU long-option spelling `--attribute=V` or `--attribute V`.
            if let Some(v) = rest.strip_prefix('=') {
                events.push(GetoptEvent::Attribute(v.to_string()));
                continue;
            } else if rest.is_empty() {
                if i < args.len() {
                    events.push(GetoptEvent::Attribute(args[i].clone()));
                    i += 1;
                } else {
                    let _ = writeln!(err, "{argv0}: option '--attribute' requires an argument");
                    events.push(GetoptEvent::Error);
                }
                continue;
            }
        }
        if !a.starts_with('-') || a.len() == 1 {
            // Non-option word: permuted to the end and ignored by the agents.
            continue;
        }
        let chars: Vec<char> = a.chars().skip(1).collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let spec = if c == ':' { None } else { table.by_short(c) };
            let Some(spec) = spec else {
                let _ = writeln!(err, "{argv0}: invalid option -- '{c}'");
                events.push(GetoptEvent::Error);
                continue;
            };
            match spec.kind {
                ArgKind::Flag | ArgKind::Counter => events.push(GetoptEvent::Opt(c, None)),
                ArgKind::OptionalValue => {
                    if j < chars.len() {
                        events.push(GetoptEvent::Opt(c, Some(chars[j..].iter().collect())));
                    } else {
                        events.push(GetoptEvent::Opt(c, None));
                    }
                    j = chars.len();
                }
                ArgKind::Value | ArgKind::Unhandled => {
                    if j < chars.len() {
                        events.push(GetoptEvent::Opt(c, Some(chars[j..].iter().collect())));
                    } else if i < args.len() {
                        events.push(GetoptEvent::Opt(c, Some(args[i].clone())));
                        i += 1;
                    } else {
                        let _ = writeln!(err, "{argv0}: option requires an argument -- '{c}'");
                        events.push(GetoptEvent::Error);
                    }
                    j = chars.len();
                }
            }
        }
    }
    events
}

/// Parses argv (C `args_get_getopt`).
pub fn parse_argv(
    flavor: Flavor,
    argv0: &str,
    rest: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> VirtArgs {
    let table = table(flavor);
    let mut args = VirtArgs::new(flavor);
    for ev in getopt_scan(argv0, rest, &table, err) {
        match ev {
            // glibc returns '?', which the C table maps to "Help (alternate)".
            GetoptEvent::Error => {
                args.help = true;
                args.bad_option = true;
            }
            GetoptEvent::Attribute(v) => assign(&mut args, "attribute", Some(&v), out),
            GetoptEvent::Opt(c, v) => {
                let spec = table.by_short(c).expect("scanned letters are in the table");
                match (c, spec.kind) {
                    (_, ArgKind::Unhandled) => args.err = true,
                    ('h', _) | ('?', _) => args.help = true,
                    ('V', _) => args.version = true,
                    _ => assign(&mut args, spec.key, v.as_deref(), out),
                }
            }
        }
    }
    args
}

/// Splits input the way a `fgets(buf, 256, stdin)` loop sees it: pieces of at most 255 bytes,
/// each ending at (and including) a newline when one comes first.
fn fgets_chunks(input: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let limit = rest.len().min(255);
        let end = match rest[..limit].iter().position(|&b| b == b'\n') {
            Some(p) => p + 1,
            None => limit,
        };
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    chunks
}

/// Parses stdin `key=value` lines (C `args_get_stdin`).
pub fn parse_stdin(
    flavor: Flavor,
    input: &[u8],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> VirtArgs {
    let table = table(flavor);
    let mut args = VirtArgs::new(flavor);
    for chunk in fgets_chunks(input) {
        // fgets stops at a NUL only as a C string: everything after it is invisible.
        let chunk = match chunk.iter().position(|&b| b == 0) {
            Some(p) => &chunk[..p],
            None => chunk,
        };
        if chunk.first() == Some(&b'#') {
            continue;
        }
        let start = chunk
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(chunk.len());
        let line = &chunk[start..];
        if matches!(line.first(), Some(b'\n') | Some(b'\r')) {
            continue;
        }
        let end = line
            .iter()
            .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(line.len());
        let line = match std::str::from_utf8(&line[..end]) {
            Ok(l) => l.to_string(),
            Err(_) => {
                // Not a guess at what was meant (a lossy VM name could name another VM).
                let _ = writeln!(
                    out,
                    "Invalid input: stdin line '{}' is not valid UTF-8",
                    String::from_utf8_lossy(&line[..end])
                );
                args.err = true;
                continue;
            }
        };
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (line.as_str(), None),
        };
        if IGNORED_STDIN_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name))
        {
            continue;
        }
        match table.by_stdin(name, true) {
            Some(spec) if !spec.key.is_empty() => assign(&mut args, spec.key, value, out),
            _ => {
                let _ = writeln!(err, "Parse error: Ignoring unknown option '{name}'");
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(flavor: Flavor, a: &[&str]) -> (VirtArgs, String, String) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let rest: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let args = parse_argv(flavor, "fence_xvm", &rest, &mut o, &mut e);
        (
            args,
            String::from_utf8(o).unwrap(),
            String::from_utf8(e).unwrap(),
        )
    }

    fn stdin(flavor: Flavor, s: &str) -> (VirtArgs, String, String) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let args = parse_stdin(flavor, s.as_bytes(), &mut o, &mut e);
        (
            args,
            String::from_utf8(o).unwrap(),
            String::from_utf8(e).unwrap(),
        )
    }

    #[test]
    fn option_strings_match_reference() {
        assert_eq!(
            table(Flavor::Xvm).getopt_string(),
            "di:a:p:r:C:c:k:M:n:H:uo:t:?hVw:"
        );
        assert_eq!(
            table(Flavor::Virt).getopt_string(),
            "dD:P:A:p:M:n:H:o:t:?hVT:S::C:c:k:w:"
        );
    }

    #[test]
    fn getopt_semantics() {
        let (a, _, _) = argv(Flavor::Xvm, &["-dd", "-d", "-ooff", "-n", "vm1", "extra"]);
        assert_eq!(
            (a.debug, a.op, a.domain.as_deref()),
            (3, Op::Off, Some("vm1"))
        );
        let (a, _, e) = argv(Flavor::Xvm, &["--foo"]);
        assert!(a.help && a.bad_option);
        assert_eq!(
            e,
            "fence_xvm: invalid option -- '-'\nfence_xvm: invalid option -- 'f'\n"
        );
        let (a, _, _) = argv(Flavor::Virt, &["-S", "3"]);
        assert_eq!(a.cid, 2);
        let (a, _, _) = argv(Flavor::Virt, &["-S7"]);
        assert_eq!(a.cid, 7);
        let (a, _, _) = argv(Flavor::Xvm, &["-M", "x"]);
        assert!(a.err && !a.help);
        let (a, _, e) = argv(Flavor::Xvm, &["-o"]);
        assert!(a.help && a.bad_option);
        assert_eq!(e, "fence_xvm: option requires an argument -- 'o'\n");
        let (a, _, _) = argv(Flavor::Xvm, &["--", "-o", "off"]);
        assert_eq!(a.op, Op::Reboot);
        let (a, _, _) = argv(Flavor::Xvm, &["--attribute", "pingd", "-o", "host-status"]);
        assert_eq!(
            (a.attribute.as_deref(), a.op),
            (Some("pingd"), Op::HostStatus)
        );
    }

    #[test]
    fn stdin_semantics() {
        let (a, o, e) = stdin(
            Flavor::Xvm,
            "# c\n  ACTION=Off trailing\n\nplug=my vm\nvsock=3\nnodename=n1\nport=x\n",
        );
        assert_eq!(a.op, Op::Off);
        assert_eq!(a.domain.as_deref(), Some("my"));
        assert!(a.err);
        assert_eq!(o, "Domain/UUID may not be specified more than once\n");
        assert_eq!(e, "Parse error: Ignoring unknown option 'vsock'\n");
        let (a, _, _) = stdin(Flavor::Virt, "option=status\ndebug\ndebug\nvsock\n");
        assert_eq!((a.op, a.debug, a.cid), (Op::Status, 2, 2));
        // Lines longer than 255 bytes are read in pieces like fgets does.
        let long = format!("plug=vm\n{}action=off\n", "x".repeat(255));
        let (a, _, e) = stdin(Flavor::Xvm, &long);
        assert_eq!(a.op, Op::Off);
        assert!(e.starts_with("Parse error: Ignoring unknown option 'xxx"));
    }

    #[test]
    fn number_rules() {
        let (a, _, _) = argv(Flavor::Xvm, &["-p", "0x10", "-t", "010"]);
        assert_eq!((a.port, a.timeout), (16, 8));
        let (a, o, _) = argv(Flavor::Xvm, &["-p", "65536"]);
        assert!(a.err);
        assert_eq!(o, "Invalid port: '65536'\n");
        let (a, o, _) = argv(Flavor::Xvm, &["-w", "-1", "-r", "0"]);
        assert!(a.err);
        assert_eq!(o, "Invalid delay: '-1'\nInvalid retransmit time: '0'\n");
    }
}
