//! `fence_virtd -c`: the interactive configuration wizard. Compatible with fence-agents 4.12.1
//! `agents/virt/server/config.c` `do_configure`: the same questions, in the same order, with
//! the same prompt and default formats (`Question [default]: `, `Question [y/N]? `), so a script
//! that answers the C wizard line by line answers this one too. Yes/no answers look at the first
//! character only (`y`/`Y`/`n`/`N`, anything else is the default); an empty answer or the end of
//! input takes the default. The result is printed between `=== Begin Configuration ===` and
//! `=== End Configuration ===` and written (atomically, mode 0600) only after a yes to
//! `Replace <file> with the above [y/N]?`.
//!
//! Deliberate differences from the C wizard:
//! * The module search path is asked (so scripted answers line up) but not used or stored: our
//!   listeners and backends are built in. An existing `module_path` is kept in the file.
//! * The tcp address defaults to the tcp listener's own default (`127.0.0.1`, or `::1` with
//!   `family = "ipv6"`); the C wizard offers the multicast group `225.0.0.12` (a bug).
//! * The serial listener's libvirt URI answer is stored as `uri` (the C wizard reads it and
//!   drops it).
//! * `vsock` is configured (port and key file); the C wizard cannot.
//! * Backends `sim` (nothing to ask) and `vmware_soap` (address, login, password or password
//!   script, TLS mode, CA file) and `xenapi` (URL, login, password or password script, TLS
//!   mode, CA file) and `vmrun` (executable, type; for the server types host, login, password or
//!   password script; for this host's types the VM directories) are configured; `cpg` questions are asked when it is chosen anyway.
//! * Answers our daemon would reject at load time are asked again instead of being written:
//!   a multicast address that is not a multicast group, a port outside 1–65535 or not in
//!   decimal (the C wizard takes `0x4cd`), a serial mode that is neither `serial`, `vmchannel`
//!   nor an integer, and any value containing `"` (which cannot be written in the file format).
//! * When the input ends and the default answer is not acceptable, the wizard stops with an
//!   error (exit 1) instead of asking forever.
//! * A missing interface is reported as a note without a question: the C wizard's check never
//!   fires (`if_nametoindex` returns 0, not a negative value), and the interface (`virbr0`)
//!   often only exists once libvirt runs.
//! * The result is dumped in file order ([`ConfigTree::dump_file_order`]): the C wizard dumps
//!   its reversed storage order, which flips which of two duplicate keys or sections wins.

use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::backends;
use crate::config::schema::{self, LISTENERS};
use crate::config::types::{IPV6_MCAST_DEFAULT, IPV6_TCP_DEFAULT};
use crate::config::{parse_int, write_config_file, ConfigTree, SetError};

/// How many times one question is asked again after an unusable answer before giving up.
const MAX_ATTEMPTS: usize = 100;

/// How a wizard run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The configuration file was replaced.
    Written,
    /// The user said no (to starting from scratch or to replacing the file); nothing written.
    Declined,
}

impl Outcome {
    /// The process exit code for this outcome (as the C daemon: declined is 1).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Written => 0,
            Outcome::Declined => 1,
        }
    }
}

/// Why the wizard stopped before finishing.
#[derive(Debug, thiserror::Error)]
pub enum WizardError {
    /// Reading answers or writing questions failed.
    #[error("cannot read answers or print questions")]
    Terminal(#[source] io::Error),
    /// The input ended (or too many answers were refused) and the default is not usable.
    #[error("no usable answer to \"{question}\" (input ended or too many refused answers)")]
    NoAnswer {
        /// The question.
        question: String,
    },
    /// The new configuration could not be written.
    #[error("failed to write configuration file {}", path.display())]
    Write {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An answer could not be stored in the tree (should not happen: answers are checked).
    #[error("cannot store an answer")]
    Store(#[from] SetError),
}

/// Run the wizard on `config_file` with the process's stdin and stdout and return the exit
/// code: 0 written, 1 declined or failed (errors are printed to stderr).
pub fn run_interactive(config_file: &Path) -> u8 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    match configure(config_file, stdin.lock(), stdout.lock()) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                cur = c.source();
            }
            eprintln!("fence_virtd: {msg}");
            1
        }
    }
}

/// Ask the questions on `output`, read the answers from `input`, and (on a final yes) write
/// `config_file`.
pub fn configure(
    config_file: &Path,
    input: impl BufRead,
    output: impl Write,
) -> Result<Outcome, WizardError> {
    let mut w = Wizard {
        io: Prompter {
            input,
            output,
            eof: false,
        },
        tree: ConfigTree::empty(config_file.display().to_string()),
    };
    w.run(config_file)
}

/// Questions and answers: prompt formats and default handling of the reference's `text_input`
/// and `yesno`.
struct Prompter<R, W> {
    input: R,
    output: W,
    eof: bool,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    fn say(&mut self, text: &str) -> Result<(), WizardError> {
        self.output
            .write_all(text.as_bytes())
            .and_then(|()| self.output.flush())
            .map_err(WizardError::Terminal)
    }

    /// One line of input without its line end; `None` at end of input.
    fn read_line(&mut self) -> Result<Option<String>, WizardError> {
        if self.eof {
            return Ok(None);
        }
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .map_err(WizardError::Terminal)?;
        if n == 0 {
            self.eof = true;
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// `Question [default]: `; an empty answer or the end of input gives `default`. Answers
    /// containing `"` are refused and the question is asked again.
    fn ask(&mut self, question: &str, default: &str) -> Result<String, WizardError> {
        self.ask_shown(question, default, default)
    }

    /// Like [`ask`](Self::ask) but shows `shown` between the brackets (used to hide a stored
    /// password).
    fn ask_shown(
        &mut self,
        question: &str,
        shown: &str,
        default: &str,
    ) -> Result<String, WizardError> {
        for _ in 0..MAX_ATTEMPTS {
            self.say(&format!("{question} [{shown}]: "))?;
            let answer = match self.read_line()? {
                None => return Ok(default.to_string()),
                Some(a) => a.trim().to_string(),
            };
            if answer.is_empty() {
                return Ok(default.to_string());
            }
            if answer.contains('"') {
                self.say("Values cannot contain '\"'.\n")?;
                continue;
            }
            return Ok(answer);
        }
        Err(self.no_answer(question))
    }

    /// `Question [Y/n]? ` or `Question [y/N]? `: the first character decides; anything else,
    /// an empty line or the end of input gives `default`.
    fn yes_no(&mut self, question: &str, default: bool) -> Result<bool, WizardError> {
        let choices = if default { "Y/n" } else { "y/N" };
        self.say(&format!("{question} [{choices}]? "))?;
        Ok(match self.read_line()?.and_then(|a| a.chars().next()) {
            Some('y' | 'Y') => true,
            Some('n' | 'N') => false,
            _ => default,
        })
    }

    /// Ask until `check` accepts the answer (it returns the value to store, or a message to
    /// print before asking again). Stops with [`WizardError::NoAnswer`] when the input has ended
    /// (the same refused default would come back forever).
    fn ask_checked<T>(
        &mut self,
        question: &str,
        default: &str,
        mut check: impl FnMut(&mut Self, &str) -> Result<Result<T, String>, WizardError>,
    ) -> Result<T, WizardError> {
        for _ in 0..MAX_ATTEMPTS {
            let answer = self.ask(question, default)?;
            match check(self, &answer)? {
                Ok(v) => return Ok(v),
                Err(msg) => {
                    self.say(&msg)?;
                    if self.eof {
                        break;
                    }
                }
            }
        }
        Err(self.no_answer(question))
    }

    fn no_answer(&self, question: &str) -> WizardError {
        WizardError::NoAnswer {
            question: question.to_string(),
        }
    }
}

struct Wizard<R, W> {
    io: Prompter<R, W>,
    tree: ConfigTree,
}

/// `none` (any case) means "remove this setting".
fn is_none(answer: &str) -> bool {
    answer.eq_ignore_ascii_case("none")
}

/// A port answer: decimal 1–65535, as our configuration reader requires.
fn check_port(answer: &str) -> Result<String, String> {
    match parse_int(answer) {
        Some(n) if (1..=65535).contains(&n) => Ok(n.to_string()),
        _ => Err(format!("Port value '{answer}' is out of range\n")),
    }
}

impl<R: BufRead, W: Write> Wizard<R, W> {
    fn get(&self, path: &str) -> Option<String> {
        self.tree.get(path).map(str::to_string)
    }

    /// The file's value of `path` (`block/@key`), or the answer the schema offers.
    fn current(&self, path: &str) -> String {
        self.get(path).unwrap_or_else(|| {
            let (block, key) = path.rsplit_once("/@").expect("a key path");
            schema::suggestion(block, key).to_string()
        })
    }

    fn set(&mut self, path: &str, value: Option<&str>) -> Result<(), WizardError> {
        Ok(self.tree.set(path, value)?)
    }

    fn run(&mut self, config_file: &Path) -> Result<Outcome, WizardError> {
        match ConfigTree::load(config_file) {
            Ok(t) => self.tree = t,
            Err(e) => {
                let mut msg = e.to_string();
                if let Some(s) = std::error::Error::source(&e) {
                    msg.push_str(&format!(": {s}"));
                }
                self.io.say(&format!(
                    "{msg}\nParsing of {} failed.\n",
                    config_file.display()
                ))?;
                if !self.io.yes_no("Start from scratch", false)? {
                    return Ok(Outcome::Declined);
                }
            }
        }

        self.module_path()?;
        self.listener()?;
        self.backend()?;

        let text = self.tree.dump_file_order();
        self.io.say(&format!(
            "\nConfiguration complete.\n\n=== Begin Configuration ===\n{text}=== End Configuration ===\n"
        ))?;
        let question = format!("Replace {} with the above", config_file.display());
        if !self.io.yes_no(&question, false)? {
            return Ok(Outcome::Declined);
        }
        write_config_file(config_file, &text).map_err(|source| {
            let _ = self.io.say("Failed to write configuration file!\n");
            WizardError::Write {
                path: config_file.to_path_buf(),
                source,
            }
        })?;
        Ok(Outcome::Written)
    }

    fn module_path(&mut self) -> Result<(), WizardError> {
        let current = self.current("fence_virtd/@module_path");
        // Asked only so that scripted answers stay in step with the C wizard.
        self.io.ask("Module search path", &current)?;
        let mut text = String::from(
            "\nThis fence_virtd has its modules built in; the search path is not used.\n\n\
             Available backends:\n",
        );
        for b in backends::built() {
            text.push_str(&format!("    {b}\n"));
        }
        text.push_str("Available listeners:\n");
        for l in LISTENERS {
            text.push_str(&format!("    {l}\n"));
        }
        self.io.say(&text)
    }

    fn listener(&mut self) -> Result<(), WizardError> {
        self.io.say(
            "\nA listener module receives fence requests from the agents in the guests\n\
             (fence_xvm, fence_virt).\n\n",
        )?;
        let current = self.current("fence_virtd/@listener");
        let name = self.io.ask_checked("Listener module", &current, |io, a| {
            if let Some(l) = LISTENERS.iter().find(|l| l.eq_ignore_ascii_case(a)) {
                return Ok(Ok(l.to_string()));
            }
            io.say(&format!("No listener module named {a} found!\n"))?;
            Ok(if io.yes_no("Use this value anyway", false)? {
                Ok(a.to_string())
            } else {
                Err(String::new())
            })
        })?;
        self.set("fence_virtd/@listener", Some(&name))?;
        match name.as_str() {
            "multicast" => self.multicast(),
            "tcp" => self.tcp(),
            "vsock" => self.vsock(),
            "serial" => self.serial(),
            other => self.io.say(&format!(
                "Unable to configure unknown listener module '{other}'\n"
            )),
        }
    }

    /// Ask for an IP address literal, print and return the family derived from it.
    fn ip_address(
        &mut self,
        question: &str,
        default: &str,
        multicast_only: bool,
    ) -> Result<(IpAddr, &'static str), WizardError> {
        self.io.ask_checked(question, default, |io, a| {
            let Ok(ip) = a.parse::<IpAddr>() else {
                return Ok(Err(format!("'{a}' is not a valid IP address!\n")));
            };
            if multicast_only && !ip.is_multicast() {
                return Ok(Err(format!(
                    "'{a}' is not a multicast group address (224.0.0.0/4 or ff00::/8)!\n"
                )));
            }
            let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            io.say(&format!("\nUsing {family} as family.\n\n"))?;
            Ok(Ok((ip, family)))
        })
    }

    fn port(&mut self, question: &str, path: &str) -> Result<(), WizardError> {
        let current = self.current(path);
        let port = self
            .io
            .ask_checked(question, &current, |_, a| Ok(check_port(a)))?;
        self.set(path, Some(&port))
    }

    fn key_file(&mut self, section: &str) -> Result<(), WizardError> {
        self.io.say(
            "\nThe key file holds the secret shared by this host and the guests allowed to\n\
             fence; copy the same file to every host and guest of the cluster.\n\n",
        )?;
        let path = format!("{section}/@key_file");
        let current = self.current(&path);
        let answer = self.io.ask_checked("Key File", &current, |io, a| {
            if is_none(a) || a.starts_with('/') {
                return Ok(Ok(a.to_string()));
            }
            io.say(&format!("Invalid key file: {a}\n"))?;
            Ok(if io.yes_no("Use anyway", true)? {
                Ok(a.to_string())
            } else {
                Err(String::new())
            })
        })?;
        self.set(&path, (!is_none(&answer)).then_some(answer.as_str()))
    }

    fn multicast(&mut self) -> Result<(), WizardError> {
        const S: &str = "listeners/multicast";
        self.io.say(
            "\nThe multicast listener receives requests that guests send to a multicast\n\
             group; fence_xvm in the guests must use the same group and port.\n\n",
        )?;
        let current = self.get(&format!("{S}/@address")).unwrap_or_else(|| {
            match self.get(&format!("{S}/@family")) {
                Some(f) if f.eq_ignore_ascii_case("ipv6") => IPV6_MCAST_DEFAULT,
                _ => schema::suggestion(S, "address"),
            }
            .to_string()
        });
        let (ip, family) = self.ip_address("Multicast IP Address", &current, true)?;
        self.set(&format!("{S}/@family"), Some(family))?;
        self.set(&format!("{S}/@address"), Some(&ip.to_string()))?;

        self.port("Multicast IP Port", &format!("{S}/@port"))?;

        self.io.say(
            "\nWith an interface set, fence_virtd joins the group on that interface only.\n\
             When the guests reach the host through a bridge such as virbr0 (the host is\n\
             their gateway) it must be set to that bridge. 'none' joins on the default\n\
             interface.\n\n",
        )?;
        let path = format!("{S}/@interface");
        let current = self.current(&path);
        let iface = self.io.ask("Interface", &current)?;
        if is_none(&iface) {
            self.set(&path, None)?;
        } else {
            if crate::listener::multicast::interface_index(&iface).is_err() {
                self.io.say(&format!(
                    "\nNote: there is no interface {iface} now; fence_virtd will fail to start \
                     until it exists.\n"
                ))?;
            }
            self.set(&path, Some(&iface))?;
        }

        self.key_file(S)
    }

    fn tcp(&mut self) -> Result<(), WizardError> {
        const S: &str = "listeners/tcp";
        self.io.say(
            "\nThe TCP listener accepts connections from fence_virt -T, typically forwarded\n\
             from the guests to the host by a proxy.\n\n",
        )?;
        let current = self.get(&format!("{S}/@address")).unwrap_or_else(|| {
            match self.get(&format!("{S}/@family")) {
                Some(f) if f.eq_ignore_ascii_case("ipv6") => IPV6_TCP_DEFAULT,
                _ => schema::suggestion(S, "address"),
            }
            .to_string()
        });
        let (ip, family) = self.ip_address("TCP Listen IP Address", &current, false)?;
        self.set(&format!("{S}/@family"), Some(family))?;
        self.set(&format!("{S}/@address"), Some(&ip.to_string()))?;
        self.port("TCP Listen Port", &format!("{S}/@port"))?;
        self.key_file(S)
    }

    fn vsock(&mut self) -> Result<(), WizardError> {
        const S: &str = "listeners/vsock";
        self.io.say(
            "\nThe vsock listener accepts connections from fence_virt -S in guests over\n\
             virtio-vsock; no guest networking is needed.\n\n",
        )?;
        let path = format!("{S}/@port");
        let current = self.current(&path);
        let port = self.io.ask_checked("vsock Port", &current, |_, a| {
            Ok(match parse_int(a) {
                Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Ok(n.to_string()),
                _ => Err(format!("Port value '{a}' is out of range\n")),
            })
        })?;
        self.set(&path, Some(&port))?;
        self.key_file(S)
    }

    fn serial(&mut self) -> Result<(), WizardError> {
        const S: &str = "listeners/serial";
        self.io.say(
            "\nThe serial listener talks to guests over a serial port or a VMChannel\n\
             device backed by a Unix socket on the host; the guests need matching devices\n\
             (see fence_virt.conf(5)).\n\n",
        )?;
        let path = format!("{S}/@uri");
        let current = self.current(&path);
        let uri = self.io.ask("Libvirt URI", &current)?;
        // The C wizard drops this answer; we store it.
        self.set(&path, Some(&uri))?;

        self.io.say(
            "\nWith a socket directory set, only guest sockets under that directory are\n\
             used (for example /var/run/cluster/fence; create it first). 'none' uses every\n\
             socket of every guest.\n\n",
        )?;
        let path = format!("{S}/@path");
        let current = self.current(&path);
        let dir = self.io.ask("Socket directory", &current)?;
        self.set(&path, (!is_none(&dir)).then_some(dir.as_str()))?;

        self.io.say(
            "\nGuests reach the host either through a serial port or through a VMChannel\n\
             (guest forwarding) device.\n\n",
        )?;
        let path = format!("{S}/@mode");
        let current = self.current(&path);
        let mode = self
            .io
            .ask_checked("Mode (serial or vmchannel)", &current, |_, a| {
                Ok(
                    if a.eq_ignore_ascii_case("serial")
                        || a.eq_ignore_ascii_case("vmchannel")
                        || parse_int(a).is_some()
                    {
                        Ok(a.to_string())
                    } else {
                        Err(format!("Invalid mode: {a} (serial or vmchannel)\n"))
                    },
                )
            })?;
        self.set(&path, Some(&mode))
    }

    fn backend(&mut self) -> Result<(), WizardError> {
        self.io.say(
            "\nA backend module carries out the requests: it finds the VM and powers it\n\
             off, on or reports its state.\n\n",
        )?;
        let current = self.current("fence_virtd/@backend");
        let name = self.io.ask_checked("Backend module", &current, |io, a| {
            if let Some(b) = backends::built().find(|b| b.eq_ignore_ascii_case(a)) {
                return Ok(Ok(b.to_string()));
            }
            io.say(&format!("No backend module named {a} found!\n"))?;
            Ok(if io.yes_no("Use this value anyway", false)? {
                Ok(a.to_string())
            } else {
                Err(String::new())
            })
        })?;
        self.set("fence_virtd/@backend", Some(&name))?;
        match name.as_str() {
            "libvirt" => self.libvirt(),
            "cpg" => self.cpg(),
            "sim" => self.io.say(
                "\nThe sim backend fences simulated VMs held in memory (for tests and demos);\n\
                 backends/sim/vms lists their names.\n",
            ),
            "vmware_soap" => self.vmware_soap(),
            "xenapi" => self.xenapi(),
            "vmrun" => self.vmrun(),
            _ => Ok(()),
        }
    }

    fn libvirt(&mut self) -> Result<(), WizardError> {
        self.io.say(
            "\nThe libvirt backend fences the VMs of the hypervisors it connects to. It\n\
             only knows VMs running here: do not use it where VMs migrate between hosts.\n\n",
        )?;
        let path = "backends/libvirt/@uri";
        let current = self.current(path);
        let uri = self.io.ask("Libvirt URI", &current)?;
        self.set(path, Some(&uri))
    }

    fn cpg(&mut self) -> Result<(), WizardError> {
        self.io.say(
            "\nThe cpg backend is not built into this fence_virtd; its settings are kept\n\
             for the C daemon.\n\n",
        )?;
        let path = "backends/cpg/@uri";
        let current = self.current(path);
        let uri = self.io.ask("Libvirt URI", &current)?;
        self.set(path, Some(&uri))?;
        self.io.say(
            "\nVMs can be tracked by UUID or by name; names are only safe when they are\n\
             unique across the whole cluster.\n\n",
        )?;
        let path = "backends/cpg/@name_mode";
        let current = self.current(path);
        let mode = self.io.ask_checked(
            "VM naming/tracking mode (name or uuid)",
            &current,
            |io, a| {
                if a.eq_ignore_ascii_case("uuid") {
                    Ok(Ok(a.to_string()))
                } else if a.eq_ignore_ascii_case("name") {
                    io.say("Name mode is dangerous unless VM names are unique cluster-wide.\n")?;
                    Ok(if io.yes_no("Use name mode anyway", true)? {
                        Ok(a.to_string())
                    } else {
                        Err(String::new())
                    })
                } else {
                    Ok(Err(String::new()))
                }
            },
        )?;
        self.set(path, Some(&mode))
    }

    /// Ask for each `(key, question, what)` of `block`, none of which may be empty or `none`;
    /// `refuse(key, answer)` may refuse an answer with a message.
    fn required(
        &mut self,
        block: &str,
        fields: &[(&str, &str, &str)],
        refuse: impl Fn(&str, &str) -> Option<String>,
    ) -> Result<(), WizardError> {
        for &(key, question, what) in fields {
            let path = format!("{block}/@{key}");
            let current = self.get(&path).unwrap_or_default();
            let v = self.io.ask_checked(question, &current, |_, a| {
                Ok(if a.is_empty() || is_none(a) {
                    Err(format!("Please give {what}.\n"))
                } else if let Some(msg) = refuse(key, a) {
                    Err(msg)
                } else {
                    Ok(a.to_string())
                })
            })?;
            self.set(&path, Some(&v))?;
        }
        Ok(())
    }

    /// Ask for one of `choices` (any case; stored lower-case) at `path`.
    fn choice(
        &mut self,
        path: &str,
        question: &str,
        choices: &[&str],
        what: &str,
    ) -> Result<String, WizardError> {
        let current = self.current(path);
        let v = self.io.ask_checked(question, &current, |_, a| {
            let a = a.to_ascii_lowercase();
            Ok(if choices.contains(&a.as_str()) {
                Ok(a)
            } else {
                Err(format!("Invalid {what}: {a}\n"))
            })
        })?;
        self.set(path, Some(&v))?;
        Ok(v)
    }

    fn vmware_soap(&mut self) -> Result<(), WizardError> {
        const S: &str = "backends/vmware_soap";
        self.io.say(
            "\nThe vmware_soap backend fences VMs through the SOAP API of a vCenter or\n\
             ESXi host.\n\n",
        )?;
        self.required(
            S,
            &[
                ("address", "vCenter or ESXi address", "an address"),
                ("login", "Login", "a login"),
            ],
            |_, _| None,
        )?;
        self.password(S)?;
        let ssl = self.choice(
            &format!("{S}/@ssl"),
            "TLS mode (secure, insecure or none)",
            &["secure", "insecure", "none"],
            "TLS mode",
        )?;
        self.ca_file(S, &ssl)
    }

    /// `password_script`, or with `none` the `password` itself, of backend block `s`.
    fn password(&mut self, s: &str) -> Result<(), WizardError> {
        self.io.say(
            "\nThe password can come from a command that prints it (recommended) or be\n\
             stored in this file. 'none' stores the password instead.\n\n",
        )?;
        let path = format!("{s}/@password_script");
        let current = self.current(&path);
        let script = self.io.ask("Password script", &current)?;
        if is_none(&script) {
            self.set(&path, None)?;
            let path = format!("{s}/@password");
            let current = self.get(&path).unwrap_or_default();
            let shown = if current.is_empty() { "" } else { "********" };
            let mut password = None;
            for _ in 0..MAX_ATTEMPTS {
                let p = self.io.ask_shown("Password", shown, &current)?;
                if !p.is_empty() {
                    password = Some(p);
                    break;
                }
                self.io.say("Please give a password.\n")?;
                if self.io.eof {
                    break;
                }
            }
            let password = password.ok_or_else(|| self.io.no_answer("Password"))?;
            self.set(&path, Some(&password))?;
        } else {
            self.set(&path, Some(&script))?;
            self.set(&format!("{s}/@password"), None)?;
        }
        Ok(())
    }

    /// `ca_file` of backend block `s` (only with `ssl = "secure"`).
    fn ca_file(&mut self, s: &str, ssl: &str) -> Result<(), WizardError> {
        // A CA file only means something when certificates are checked.
        let path = format!("{s}/@ca_file");
        if ssl != "secure" {
            return self.set(&path, None);
        }
        let current = self.current(&path);
        let ca = self.io.ask_checked(
            "CA certificates file (PEM; none: the system store)",
            &current,
            |_, a| {
                Ok(if is_none(a) || Path::new(a).is_file() {
                    Ok(a.to_string())
                } else {
                    Err(format!("No such file: {a}\n"))
                })
            },
        )?;
        self.set(&path, (!is_none(&ca)).then_some(ca.as_str()))
    }

    fn xenapi(&mut self) -> Result<(), WizardError> {
        const S: &str = "backends/xenapi";
        self.io.say(
            "\nThe xenapi backend fences the VMs of a XenServer or XCP-ng pool through\n\
             XenAPI. Any pool host will do: the daemon finds the pool master.\n\n",
        )?;
        self.required(
            S,
            &[
                ("url", "Pool host URL (https://host)", "a URL"),
                ("login", "Login", "a login"),
            ],
            |key, a| {
                (key == "url" && !(a.starts_with("http://") || a.starts_with("https://")))
                    .then(|| "The URL starts with http:// or https://.\n".to_string())
            },
        )?;
        self.password(S)?;
        let ssl = self.choice(
            &format!("{S}/@ssl"),
            "TLS mode (secure or insecure)",
            &["secure", "insecure"],
            "TLS mode",
        )?;
        self.ca_file(S, &ssl)
    }

    fn vmrun(&mut self) -> Result<(), WizardError> {
        const S: &str = "backends/vmrun";
        const TYPES: [&str; 6] = ["ws", "fusion", "player", "server", "server1", "esx"];
        self.io.say(
            "\nThe vmrun backend fences VMware Workstation, Fusion or Player VMs of this\n\
             host (or the VMs of a VMware Server or ESX host) through VMware's vmrun.\n\n",
        )?;
        let path = format!("{S}/@vmrun");
        let current = self.current(&path);
        let exe = self.io.ask("vmrun executable", &current)?;
        self.set(&path, Some(&exe))?;
        let ty = self.choice(
            &format!("{S}/@type"),
            "Type (ws, fusion, player, server, server1 or esx)",
            &TYPES,
            "vmrun type",
        )?;
        if ["server", "server1", "esx"].contains(&ty.as_str()) {
            self.set(&format!("{S}/@vm_dir"), None)?;
            self.required(
                S,
                &[
                    ("host", "Host (vmrun -h, e.g. https://esx1/sdk)", "a host"),
                    ("login", "Login", "a login"),
                ],
                |_, _| None,
            )?;
            self.password(S)?;
        } else {
            for key in ["host", "port", "login", "password", "password_script"] {
                self.set(&format!("{S}/@{key}"), None)?;
            }
            let path = format!("{S}/@vm_dir");
            let current = self.current(&path);
            let dirs = self.io.ask(
                "Directories holding the .vmx files (none: running VMs only)",
                &current,
            )?;
            self.set(
                &path,
                (!is_none(&dirs) && !dirs.is_empty()).then_some(dirs.as_str()),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::libvirt::LibvirtConfig;
    use crate::backends::sim::SimConfig;
    use crate::backends::vmware_soap::{TlsMode, VmwareSoapConfig};
    use crate::config::{Config, ListenerConfig, DEFAULT_KEY_FILE};

    /// Run the wizard on a file holding `initial` (or no file) with `answers`; return the
    /// outcome, the printed text and the file afterwards.
    fn run(
        initial: Option<&str>,
        answers: &str,
    ) -> (Result<Outcome, WizardError>, String, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fence_virt.conf");
        if let Some(text) = initial {
            std::fs::write(&path, text).unwrap();
        }
        let mut out = Vec::new();
        let r = configure(&path, answers.as_bytes(), &mut out);
        let after = std::fs::read_to_string(&path).ok();
        (r, String::from_utf8(out).unwrap(), after)
    }

    fn load(text: &str) -> Config {
        Config::from_tree(&ConfigTree::parse("t", text).unwrap()).unwrap()
    }

    const DEBIAN: &str =
        "fence_virtd {\n\tlistener = \"multicast\";\n\tbackend = \"libvirt\";\n}\n\
        listeners {\n\tmulticast {\n\t\tkey_file = \"/etc/fence_virt.key\";\n\
        \t\taddress = \"225.0.0.12\";\n\t\tinterface = \"virbr0\";\n\t}\n}\n\
        backends {\n\tlibvirt {\n\t\turi = \"qemu:///system\";\n\t}\n}\n";

    #[test]
    fn defaults_keep_the_existing_settings() {
        let (r, out, after) = run(Some(DEBIAN), "\n\n\n\n\n\n\n\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written);
        assert!(out.contains("Interface [virbr0]: "), "{out}");
        assert!(out.contains("Key File [/etc/fence_virt.key]: "), "{out}");
        let text = after.unwrap();
        let c = load(&text);
        let ListenerConfig::Multicast(m) = &c.listener else {
            panic!("{c:?}")
        };
        assert_eq!(m.interface.as_deref(), Some("virbr0"));
        assert_eq!(m.key_file, Path::new("/etc/fence_virt.key"));
        assert_eq!(m.port, 1229);
        let t = ConfigTree::parse("t", &text).unwrap();
        assert_eq!(t.get("listeners/multicast/@family"), Some("ipv4"));
        assert_eq!(
            c.backend,
            LibvirtConfig {
                uris: vec!["qemu:///system".into()]
            }
        );
        // The printed block is what was written.
        let begin = out.find("=== Begin Configuration ===\n").unwrap() + 28;
        let end = out.find("=== End Configuration ===").unwrap();
        assert_eq!(&out[begin..end], text);
    }

    #[test]
    fn declining_writes_nothing_and_exits_1() {
        let (r, out, after) = run(Some(DEBIAN), "\n\n\n\n\n\n\n\nn\n");
        assert_eq!(r.unwrap(), Outcome::Declined);
        assert_eq!(Outcome::Declined.exit_code(), 1);
        assert!(out.contains("Replace "), "{out}");
        assert_eq!(after.as_deref(), Some(DEBIAN));
        // End of input: every default, and the final question defaults to no.
        let (r, _, after) = run(Some(DEBIAN), "");
        assert_eq!(r.unwrap(), Outcome::Declined);
        assert_eq!(after.as_deref(), Some(DEBIAN));
    }

    #[test]
    fn unparsable_file_asks_to_start_from_scratch() {
        let (r, out, after) = run(Some("x = ;"), "n\n");
        assert_eq!(r.unwrap(), Outcome::Declined);
        assert!(out.contains("Start from scratch [y/N]? "), "{out}");
        assert_eq!(after.as_deref(), Some("x = ;"));
        let (r, out, after) = run(None, "y\n\n\n\n\n\n\n\n\nyes\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        let c = load(&after.unwrap());
        assert_eq!(c.listener.key_file(), Path::new(DEFAULT_KEY_FILE));
    }

    #[test]
    fn ipv6_group_none_removes_interface_and_key_file() {
        let (r, out, after) = run(Some(DEBIAN), "\n\nff05::3:1\n1230\nnone\nNONE\n\n\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("Using ipv6 as family."));
        let text = after.unwrap();
        let t = ConfigTree::parse("t", &text).unwrap();
        assert_eq!(t.get("listeners/multicast/@family"), Some("ipv6"));
        assert_eq!(t.get("listeners/multicast/@interface"), None);
        assert_eq!(t.get("listeners/multicast/@key_file"), None);
        assert_eq!(t.get("listeners/multicast/@port"), Some("1230"));
        load(&text);
    }

    #[test]
    fn refused_answers_are_asked_again() {
        // Not an IP, not a multicast group, then a group; a hex and an out-of-range port.
        let (r, out, after) = run(
            Some(DEBIAN),
            "\n\nnot-an-ip\n10.0.0.1\n239.1.2.3\n0x4cd\n70000\n2000\n\n\n\n\ny\n",
        );
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("'not-an-ip' is not a valid IP address!"));
        assert!(out.contains("'10.0.0.1' is not a multicast group address"));
        assert!(out.contains("Port value '0x4cd' is out of range"));
        assert!(out.contains("Port value '70000' is out of range"));
        let t = ConfigTree::parse("t", &after.unwrap()).unwrap();
        assert_eq!(t.get("listeners/multicast/@address"), Some("239.1.2.3"));
        assert_eq!(t.get("listeners/multicast/@port"), Some("2000"));
    }

    #[test]
    fn end_of_input_with_a_refused_default_is_an_error() {
        // The file's address is not a multicast group: the default is refused and there is
        // nothing more to read.
        let text = DEBIAN.replace("225.0.0.12", "10.1.1.1");
        let (r, _, after) = run(Some(&text), "\n\n");
        assert!(matches!(r, Err(WizardError::NoAnswer { .. })), "{r:?}");
        assert_eq!(after.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn tcp_defaults_to_loopback() {
        let (r, out, after) = run(None, "y\n\ntcp\n\n\n\n\n\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("TCP Listen IP Address [127.0.0.1]: "), "{out}");
        let c = load(&after.unwrap());
        let ListenerConfig::Tcp(t) = &c.listener else {
            panic!("{c:?}")
        };
        assert_eq!(t.address, "127.0.0.1");
        assert_eq!(t.port, 1229);
    }

    #[test]
    fn vsock_serial_sim_and_vmware() {
        let (r, out, after) = run(None, "y\n\nvsock\n4000\n/etc/k\nsim\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        let c = load(&after.unwrap());
        let ListenerConfig::Vsock(v) = &c.listener else {
            panic!("{c:?}")
        };
        assert_eq!((v.port, v.key_file.as_path()), (4000, Path::new("/etc/k")));
        assert!(c.backend.settings::<SimConfig>().is_some());

        let (r, out, after) = run(
            None,
            "y\n\nserial\ntest:///default\n/run/fence\nbogus\nvmchannel\nvmware_soap\nvc.example\n\
             fence\nnone\nsecret\ninsecure\ny\n",
        );
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("Invalid mode: bogus"));
        let text = after.unwrap();
        let c = load(&text);
        let ListenerConfig::Serial(s) = &c.listener else {
            panic!("{c:?}")
        };
        assert_eq!(s.uri.as_deref(), Some("test:///default"));
        assert_eq!(s.path.as_deref(), Some(Path::new("/run/fence")));
        assert_eq!(s.mode, crate::config::SerialMode::VmChannel);
        let Some(v) = c.backend.settings::<VmwareSoapConfig>() else {
            panic!("{c:?}")
        };
        assert_eq!(v.address, "vc.example");
        assert_eq!(v.login, "fence");
        assert_eq!(v.password.as_deref(), Some("secret"));
        assert_eq!(v.ssl, TlsMode::Insecure);

        // Again on that file: the stored password is not shown, Enter keeps it; a script
        // replaces it.
        let (r, out, after) = run(Some(&text), "\n\n\n\n\n\n\n\n/usr/bin/pw\n\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(!out.contains("Password [secret]"));
        let c = load(&after.unwrap());
        let Some(v) = c.backend.settings::<VmwareSoapConfig>() else {
            panic!("{c:?}")
        };
        assert_eq!(v.password, None);
        assert_eq!(v.password_script.as_deref(), Some("/usr/bin/pw"));
    }

    #[test]
    fn xenapi_backend() {
        use crate::backends::xenapi::XenApiConfig;
        // vsock listener, then xenapi: a URL without a scheme and a bad TLS mode are asked
        // again; a CA file with ssl = "secure".
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca_path = ca.path().display().to_string();
        let (r, out, after) = run(
            None,
            &format!(
                "y\n\nvsock\n4000\n/etc/k\nxenapi\nxen1\nhttps://xen1.example\nroot\n\
                 /usr/bin/pw\nmaybe\nsecure\n{ca_path}\ny\n"
            ),
        );
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(
            out.contains("The URL starts with http:// or https://."),
            "{out}"
        );
        assert!(out.contains("Invalid TLS mode: maybe"), "{out}");
        let c = load(&after.unwrap());
        let Some(x) = c.backend.settings::<XenApiConfig>() else {
            panic!("{c:?}")
        };
        assert_eq!(
            x,
            &XenApiConfig {
                url: "https://xen1.example".into(),
                login: "root".into(),
                password: None,
                password_script: Some("/usr/bin/pw".into()),
                verify: true,
                ca_file: Some(ca.path().to_path_buf()),
                timeout_secs: 10,
            }
        );
    }

    #[test]
    fn vmrun_backend() {
        use crate::backends::vmrun::VmrunConfig;
        // A bad type is asked again; a server type asks host, login and password script.
        let (r, out, after) = run(
            None,
            "y\n\nvsock\n4000\n/etc/k\nvmrun\n/opt/vix/vmrun\nvbox\nserver\n\
             https://esx1/sdk\nroot\n/usr/bin/pw\ny\n",
        );
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("Invalid vmrun type: vbox"), "{out}");
        let c = load(&after.unwrap());
        let Some(v) = c.backend.settings::<VmrunConfig>() else {
            panic!("{c:?}")
        };
        assert_eq!(
            v,
            &VmrunConfig {
                vmrun: "/opt/vix/vmrun".into(),
                host_type: "server".into(),
                host: Some("https://esx1/sdk".into()),
                port: None,
                login: Some("root".into()),
                password: None,
                password_script: Some("/usr/bin/pw".into()),
                vm_dirs: vec![],
                timeout_secs: 30,
            }
        );
        // This host's Workstation: VM directories, nothing else.
        let (r, out, after) = run(
            None,
            "y\n\nvsock\n4000\n/etc/k\nvmrun\n\nws\n/srv/vmware /home/vm\ny\n",
        );
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        let c = load(&after.unwrap());
        let v = c.backend.settings::<VmrunConfig>().unwrap();
        assert_eq!(v.vmrun, std::path::PathBuf::from("/usr/bin/vmrun"));
        assert_eq!(v.host_type, "ws");
        assert_eq!(
            v.vm_dirs,
            ["/srv/vmware", "/home/vm"].map(std::path::PathBuf::from)
        );
    }

    #[test]
    fn unknown_modules_need_confirmation() {
        let (r, out, after) = run(Some(DEBIAN), "\nfoo\nn\nmulticast\n\n\n\n\nbar\ny\ny\n");
        assert_eq!(r.unwrap(), Outcome::Written, "{out}");
        assert!(out.contains("No listener module named foo found!"));
        assert!(out.contains("No backend module named bar found!"));
        let t = ConfigTree::parse("t", &after.unwrap()).unwrap();
        assert_eq!(t.get("fence_virtd/@listener"), Some("multicast"));
        assert_eq!(t.get("fence_virtd/@backend"), Some("bar"));
    }

    #[test]
    fn yes_no_reads_the_first_character() {
        for (answer, default, want) in [
            ("y\n", false, true),
            ("Yes\n", false, true),
            ("n\n", true, false),
            ("Nope\n", true, false),
            ("x\n", true, true),
            ("x\n", false, false),
            ("\n", true, true),
            ("", false, false),
        ] {
            let mut p = Prompter {
                input: answer.as_bytes(),
                output: Vec::new(),
                eof: false,
            };
            assert_eq!(p.yes_no("Q", default).unwrap(), want, "{answer:?}");
            let shown = if default { "Q [Y/n]? " } else { "Q [y/N]? " };
            assert_eq!(String::from_utf8(p.output).unwrap(), shown);
        }
    }

    #[test]
    fn quotes_are_refused() {
        let mut p = Prompter {
            input: "a\"b\nab\n".as_bytes(),
            output: Vec::new(),
            eof: false,
        };
        assert_eq!(p.ask("Q", "d").unwrap(), "ab");
        let out = String::from_utf8(p.output).unwrap();
        assert_eq!(out.matches("Q [d]: ").count(), 2);
    }
}
