//! Pacemaker's fencing history as the proof that a lost host was fenced, the way
//! `dlm_controld` waits for a failed node: it asks the fencer when the node was last fenced and
//! trusts the node dead only if that fencing completed after the node failed. Here the host
//! cluster's `stonith_admin --history NODE --verbose --output-as=xml` (Debian
//! `pacemaker-cli-utils`; the `fence_event` elements of Pacemaker's `fence-event` API schema)
//! gives the node's fencing operations; the latest successful `off` or `reboot` counts (`on`,
//! unfencing, proves nothing), and it proves the host off only if it completed after the host's
//! current incarnation was first seen in the CPG group and not long before that incarnation
//! was seen leave ([`judge`]; see [`super::core::Core::fence_candidates`]). It proves the host
//! powered off only if every fencing device of the host cluster powers hosts off: storage
//! fencing (fence_scsi, fence_mpath) leaves them running, which is why this is opt-in
//! (`fence_history = "pacemaker"`). Without `--verbose` (and with `--quiet`) Pacemaker
//! 2.1.5 shows a single success, in our tests the oldest rather than the latest: every event is
//! read instead.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::process::{run_process, AfterExit};
use crate::DriverError;

/// The fencer's command line tool.
pub const STONITH_ADMIN: &str = "/usr/sbin/stonith_admin";
/// Deadline of one history query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The tool could not be run or did not finish in time.
    #[error("{0}")]
    Run(#[from] DriverError),
    /// It ran and failed (fencer not running, not a cluster node, …).
    #[error("stonith_admin --history failed (exit {code:?}): {stderr}")]
    Failed {
        /// Its exit code.
        code: Option<i32>,
        /// The first line of what it said.
        stderr: String,
    },
    /// Its output is not a timestamp.
    #[error("stonith_admin --history printed {0:?}, not a time")]
    Garbled(String),
}

/// Most elements read from one history answer (each fencing is one element).
const MAX_ELEMENTS: usize = 10_000;

/// When `node` was last fenced successfully (off or reboot), per the fencer reached by
/// `program` (seconds since the epoch); `None` when never.
pub fn last_fenced(
    program: &Path,
    node: &str,
    timeout: Duration,
) -> Result<Option<u64>, HistoryError> {
    let out = run_process(
        program,
        &["--history", node, "--verbose", "--output-as=xml"],
        b"",
        timeout,
        "stonith_admin --history",
        AfterExit::KillGroup,
    )?;
    if out.code != Some(0) {
        return Err(HistoryError::Failed {
            code: out.code,
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        });
    }
    if out.stdout_truncated {
        return Err(HistoryError::Garbled("an answer over 1 MiB".into()));
    }
    latest_fencing(&String::from_utf8_lossy(&out.stdout), node)
}

/// The latest successful `off` or `reboot` of `node` in a `stonith_admin --history NODE
/// --verbose --output-as=xml` answer.
pub fn latest_fencing(doc: &str, node: &str) -> Result<Option<u64>, HistoryError> {
    let root = crate::xml::parse_bounded(doc, MAX_ELEMENTS)
        .map_err(|e| HistoryError::Garbled(e.to_string()))?;
    if root.name != "pacemaker-result" {
        return Err(HistoryError::Garbled(format!("a <{}> document", root.name)));
    }
    let mut latest = None;
    for list in root.children_named("list") {
        for ev in list.children_named("fence_event") {
            let counts = ev.attr("target") == Some(node)
                && ev.attr("status") == Some("success")
                && matches!(ev.attr("action"), Some("off" | "reboot"));
            if !counts {
                continue;
            }
            let text = ev.attr("completed").unwrap_or("");
            let when = parse_completed(text).ok_or_else(|| {
                HistoryError::Garbled(format!("completed={text:?} is not a time"))
            })?;
            latest = latest.max(Some(when));
        }
    }
    Ok(latest)
}

/// A `completed` time as Pacemaker writes it: `2026-12-02 07:39:03Z` (UTC) or
/// `2026-12-02 09:39:03 +02:00`, optionally with fractional seconds; whole seconds since the
/// epoch (fractions cut).
pub fn parse_completed(text: &str) -> Option<u64> {
    use chrono::{DateTime, NaiveDateTime};
    let t = text.trim();
    let secs = if let Some(utc) = t.strip_suffix('Z') {
        NaiveDateTime::parse_from_str(utc.trim_end(), "%Y-%m-%d %H:%M:%S%.f")
            .ok()?
            .and_utc()
            .timestamp()
    } else {
        DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f %:z")
            .ok()?
            .timestamp()
    };
    u64::try_from(secs).ok()
}

/// How much earlier than the moment we saw a host leave its fencing may have completed and
/// still be what cut it off (the fencing is usually why it left: the loss is seen a token
/// timeout or so after the power went; this also covers clock skew between hosts).
pub const LEAVE_MARGIN: Duration = Duration::from_secs(30);

/// What a host's fencing history says about its lost incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fenced: its VMs are off.
    Fenced,
    /// Never fenced (successfully, by off or reboot).
    Never,
    /// The last fencing completed before (or in the second of) its incarnation's join.
    BeforeIncarnation,
    /// The last fencing completed more than [`LEAVE_MARGIN`] before it left: not what cut
    /// it off (a late-recorded fencing of an earlier incarnation, or a host that outlived it).
    LongBeforeLeave,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Fenced => "fenced",
            Verdict::Never => "never fenced",
            Verdict::BeforeIncarnation => "its last fencing is older than its last join",
            Verdict::LongBeforeLeave => "its last fencing is long before it left",
        })
    }
}

/// Judge a host that joined the group at `joined` (its current incarnation) and left at
/// `left`, whose last successful fencing completed at `fenced` (whole seconds since the epoch,
/// as the history gives it). Fenced only if that fencing completed in a later second than the
/// join (a fencing in the same second may have preceded it) and at most [`LEAVE_MARGIN`]
/// before the leave.
pub fn judge(fenced: Option<u64>, joined: SystemTime, left: SystemTime) -> Verdict {
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX)
    };
    let Some(fenced) = fenced else {
        return Verdict::Never;
    };
    if fenced <= secs(joined) {
        Verdict::BeforeIncarnation
    } else if fenced.saturating_add(LEAVE_MARGIN.as_secs()) < secs(left) {
        Verdict::LongBeforeLeave
    } else {
        Verdict::Fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `stonith_admin --history n3 --verbose --output-as=xml` of Pacemaker 2.1.5 printed it
    /// in tests/system/cpg.rs (two fencings of n3, newest first), with an unfencing, a failure
    /// and another node's fencing added by hand.
    const HISTORY: &str = r#"<pacemaker-result api-version="2.25" request="/usr/sbin/stonith_admin --history n3 --verbose --output-as=xml">
  <list name="fencing history" count="5">
    <fence_event action="on" target="n3" client="pacemaker-controld.1" origin="n1" status="success" delegate="n1" completed="2026-12-02 07:40:00Z"/>
    <fence_event action="off" target="n3" client="stonith_admin.7223" origin="n1" status="failed" delegate="n1" completed="2026-12-02 07:39:30Z"/>
    <fence_event action="off" target="n3" client="stonith_admin.7223" origin="n1" status="success" delegate="n1" completed="2026-12-02 07:39:17Z"/>
    <fence_event action="off" target="n30" client="stonith_admin.7000" origin="n1" status="success" delegate="n1" completed="2026-12-02 07:45:00Z"/>
    <fence_event action="reboot" target="n3" client="stonith_admin.6558" origin="n1" status="success" delegate="n1" completed="2026-12-02 07:39:03Z"/>
  </list>
  <status code="0" message="OK"/>
</pacemaker-result>"#;

    #[test]
    fn the_latest_successful_off_or_reboot_of_the_node_counts() {
        let t = parse_completed("2026-12-02 07:39:17Z").unwrap();
        assert_eq!(latest_fencing(HISTORY, "n3").unwrap(), Some(t));
        assert_eq!(latest_fencing(HISTORY, "n9").unwrap(), None);
        let empty = r#"<pacemaker-result api-version="2.25" request="x">
  <list name="fencing history" count="0"/>
  <status code="0" message="OK"/>
</pacemaker-result>"#;
        assert_eq!(latest_fencing(empty, "n3").unwrap(), None);
        assert!(matches!(
            latest_fencing("<html>nope</html>", "n3"),
            Err(HistoryError::Garbled(_))
        ));
        let bad = HISTORY.replace("2026-12-02 07:39:17Z", "yesterday");
        assert!(matches!(
            latest_fencing(&bad, "n3"),
            Err(HistoryError::Garbled(_))
        ));
    }

    #[test]
    fn completed_times_in_utc_and_with_an_offset() {
        let utc = parse_completed("2026-12-02 07:39:03Z").unwrap();
        assert_eq!(utc, 1_796_197_143);
        assert_eq!(parse_completed("2026-12-02 09:39:03 +02:00"), Some(utc));
        assert_eq!(parse_completed("2026-12-02 07:39:03.250Z"), Some(utc));
        assert_eq!(parse_completed("2026-12-02"), None);
    }

    #[test]
    fn only_a_fencing_of_this_incarnation_near_its_loss_counts() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let joined = at(100_500);
        let left = at(200_000);
        assert_eq!(judge(None, joined, left), Verdict::Never);
        assert_eq!(judge(Some(99), joined, left), Verdict::BeforeIncarnation);
        // The same second as the join: may have been before it.
        assert_eq!(judge(Some(100), joined, left), Verdict::BeforeIncarnation);
        // Long before the loss: did not cut this incarnation off.
        assert_eq!(judge(Some(101), joined, left), Verdict::LongBeforeLeave);
        assert_eq!(judge(Some(169), joined, left), Verdict::LongBeforeLeave);
        // Just before the loss (what cut it off), or after it.
        assert_eq!(judge(Some(170), joined, left), Verdict::Fenced);
        assert_eq!(judge(Some(199), joined, left), Verdict::Fenced);
        assert_eq!(judge(Some(260), joined, left), Verdict::Fenced);
    }

    #[test]
    fn a_missing_tool_or_a_failing_one_is_an_error() {
        let e = last_fenced(Path::new("/nonexistent/stonith_admin"), "n1", QUERY_TIMEOUT);
        assert!(matches!(e, Err(HistoryError::Run(_))), "{e:?}");
        let e = last_fenced(Path::new("/bin/false"), "n1", QUERY_TIMEOUT);
        assert!(
            matches!(e, Err(HistoryError::Failed { code: Some(1), .. })),
            "{e:?}"
        );
    }
}
