//! Requests of every kind through a real tcp listener, with the metrics scraped over HTTP
//! before and after and parsed with a Prometheus text parser; the fence journal holds
//! exactly the power actions performed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::fence::FenceOptions;
use fence_drivers::sim::{SimDriver, SimVm};
use fence_proto::{HashAlg, Op, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{http, Journal, Telemetry};
use crate::backend::Backend;
use crate::config::{Group, Groups, MetricsAddr};
use crate::dispatch::Dispatcher;
use crate::listener::ratelimit::Reason;
use crate::listener::{tcp, test_agent, test_handshake, AuthSettings, ListenerContext};

const KEY: &[u8] = b"fence-virt-metrics-test-key\n";

/// Every sample of a scrape by `name{label=value,…}` (labels sorted), histograms by their
/// `_count`.
fn parse(text: &str) -> HashMap<String, f64> {
    let body = text.split("\r\n\r\n").nth(1).expect("HTTP body");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    out
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let text = http::scrape(TcpStream::connect(addr).await.unwrap()).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    parse(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_kind_of_request_and_the_journal_holds_the_power_actions() {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.jsonl");
    let telemetry = Arc::new(Telemetry::new(
        "tcp",
        Some(Journal::open(&journal_path, 1 << 20).unwrap()),
    ));
    let d = SimDriver::new(vec![
        SimVm::running("vm1", 1),
        SimVm::running("vm2", 2),
        SimVm::running("vm3", 3),
    ]);
    let backend = Backend::new(
        Arc::new(d),
        FenceOptions {
            confirm_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(10),
        },
        Duration::from_secs(5),
    )
    .with_telemetry(telemetry.clone());
    // 127.0.0.1 may act on vm1, vm2 and the unknown "nosuch", not on vm3.
    let groups = Groups::new(vec![Group {
        name: None,
        ips: vec!["127.0.0.1".into()],
        uuids: vec!["vm1".into(), "vm2".into(), "nosuch".into()],
    }]);
    let disp = Dispatcher::new(Arc::new(backend), groups).with_telemetry(telemetry.clone());
    telemetry.metrics().watch_rejections(disp.rejects().clone());
    let ctx = ListenerContext::new(
        Arc::new(disp),
        AuthSettings::new(Some(KEY.to_vec()), HashAlg::Sha256, HashAlg::Sha256),
    );
    let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tcp::serve(l, ctx.clone(), async {
        let _ = stopped.await;
    }));
    let ep = http::bind(&MetricsAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let maddr = ep.local_addr().unwrap();
    let (_mstop, mstopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(ep, telemetry.metrics().clone(), mstopped));

    let before = scrape(maddr).await;

    let ask = |op: Op, vm: &'static str, seqno: u32, key: &'static [u8]| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(20),
            test_agent(&mut s, op, vm, seqno, key),
        )
        .await
        .expect("hang guard")
    };
    assert_eq!(ask(Op::Status, "vm1", 1, KEY).await, [0]);
    assert_eq!(ask(Op::Status, "nosuch", 2, KEY).await, [1]);
    assert_eq!(ask(Op::Off, "vm1", 3, KEY).await, [0]);
    assert_eq!(ask(Op::Off, "vm1", 4, KEY).await, [0], "already off");
    assert_eq!(ask(Op::On, "vm1", 5, KEY).await, [0]);
    assert_eq!(ask(Op::Reboot, "vm2", 6, KEY).await, [0]);
    assert_eq!(ask(Op::Off, "nosuch", 7, KEY).await, [1]);
    assert!(ask(Op::HostList, "", 8, KEY).await.len() > 1);
    assert_eq!(ask(Op::DevStatus, "", 9, KEY).await, [0]);
    assert_eq!(ask(Op::Null, "", 10, KEY).await, [1]);
    assert_eq!(ask(Op::Off, "vm3", 11, KEY).await, [3], "groups deny vm3");
    assert!(ask(Op::Off, "vm2", 12, b"wrong key").await.is_empty());
    assert!(ask(Op::Status, "vm1", 1, KEY).await.is_empty(), "replay");
    // Right request key, wrong challenge-response key: the agent gives up mid-handshake.
    {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut r = Request::new(Op::Off, "vm2", 13).unwrap();
        r.sign(HashAlg::Sha256, KEY, [1, 2, 3, 4, 5, 6]);
        s.write_all(&r.encode()).await.unwrap();
        assert!(test_handshake(&mut s, b"wrong key").await.is_empty());
    }
    // The daemon notices the closed handshake on its own time: wait for it (bounded).
    for _ in 0..1000 {
        if ctx.rejects.stats().get(Reason::HandshakeAborted) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ctx.rejects.stats().get(Reason::HandshakeAborted), 1);

    let after = scrape(maddr).await;
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let req = |op: &str, result: &str| {
        delta(&format!(
            "fence_virtd_requests_total{{listener=tcp,op={op},result={result}}}"
        ))
    };
    let expected_requests = [
        ("status", "success", 1.0),
        ("status", "failure", 1.0),
        ("off", "success", 2.0),
        ("off", "failure", 1.0),
        ("off", "denied", 1.0),
        ("on", "success", 1.0),
        ("reboot", "success", 1.0),
        ("hostlist", "success", 1.0),
        ("devstatus", "success", 1.0),
        ("null", "failure", 1.0),
    ];
    for (op, result, n) in expected_requests {
        assert_eq!(req(op, result), n, "{op} {result}: {after:#?}");
    }
    let total: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("fence_virtd_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 11.0, "no other request was counted");
    assert_eq!(
        delta("fence_virtd_request_duration_seconds_count{listener=tcp,op=off}"),
        4.0
    );
    assert_eq!(after["fence_virtd_requests_in_flight{listener=tcp}"], 0.0);
    for reason in super::metrics::rejection_reasons() {
        let want = match reason {
            "key_mismatch" | "duplicate" | "groups_denied" | "handshake_aborted" => 1.0,
            _ => 0.0,
        };
        assert_eq!(
            delta(&format!("fence_virtd_rejected_total{{reason={reason}}}")),
            want,
            "{reason}"
        );
    }
    let call = |call: &str, result: &str| {
        delta(&format!(
            "fence_virtd_backend_calls_total{{backend=sim,call={call},result={result}}}"
        ))
    };
    assert_eq!(call("status", "ok"), 1.0);
    assert_eq!(call("status", "not_found"), 1.0);
    assert_eq!(call("power_off", "ok"), 2.0);
    assert_eq!(call("power_off", "not_found"), 1.0);
    assert_eq!(call("power_on", "ok"), 1.0);
    assert_eq!(call("reboot", "ok"), 1.0);
    assert_eq!(call("list", "ok"), 1.0);
    assert_eq!(call("check", "ok"), 1.0);
    assert_eq!(
        delta("fence_virtd_backend_call_duration_seconds_count{backend=sim,call=power_off}"),
        3.0
    );
    assert_eq!(after["fence_virtd_backend_up{backend=sim}"], 1.0);
    assert_eq!(delta("fence_virtd_journal_writes_total{result=ok}"), 5.0);

    // The journal: exactly the five power actions that reached the backend, in order.
    let entries: Vec<super::Entry> = super::journal::tail(&journal_path, 100)
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.op.as_str(),
                e.vm.as_str(),
                e.result.as_str(),
                e.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(got[0], ("off", "vm1", "success", "done"));
    assert_eq!(got[1], ("off", "vm1", "success", "already"));
    assert_eq!(got[2], ("on", "vm1", "success", "done"));
    assert_eq!(got[3], ("reboot", "vm2", "success", "done"));
    assert_eq!((got[4].0, got[4].1, got[4].2), ("off", "nosuch", "failure"));
    assert_eq!(got.len(), 5, "{got:?}");
    for e in &entries {
        assert_eq!(e.listener, "tcp");
        assert_eq!(e.requester, "127.0.0.1");
        assert_eq!(e.backend, "sim");
        humantime::parse_rfc3339(&e.time).expect("RFC 3339 time");
    }
    assert!(
        entries[0].polls >= 1,
        "the power-off was confirmed by a poll"
    );
    assert_eq!(entries[1].polls, 0, "nothing to confirm");
    let _ = stop.send(());
}

/// The three keys: metrics off unless set (a port alone is loopback), the journal on at its
/// default place unless "none", the bound in KiB.
#[test]
fn telemetry_keys() {
    use crate::config::{Config, ConfigTree, DEFAULT_JOURNAL};
    let cfg = |extra: &str| {
        Config::from_tree(
            &ConfigTree::parse(
                "/etc/fence_virt.conf",
                &format!(
                    "fence_virtd {{ listener = \"tcp\"; backend = \"sim\"; {extra} }}\n\
                     backends {{ sim {{ }} }}\n"
                ),
            )
            .unwrap(),
        )
    };
    let t = cfg("").unwrap().telemetry;
    assert_eq!(t.metrics, None);
    assert_eq!(
        t.journal.as_deref(),
        Some(std::path::Path::new(DEFAULT_JOURNAL))
    );
    assert_eq!(t.journal_max_bytes, 1024 * 1024);
    let t = cfg("metrics = \"9229\"; journal = \"none\"; journal_max_kb = \"8\";")
        .unwrap()
        .telemetry;
    assert_eq!(
        t.metrics,
        Some(MetricsAddr::Tcp("127.0.0.1:9229".parse().unwrap()))
    );
    assert_eq!(t.journal, None);
    assert_eq!(t.journal_max_bytes, 8192);
    let t = cfg("metrics = \"[::1]:9300\";").unwrap().telemetry;
    assert_eq!(
        t.metrics,
        Some(MetricsAddr::Tcp("[::1]:9300".parse().unwrap()))
    );
    let t = cfg("metrics = \"/run/fence_virtd/metrics.sock\";")
        .unwrap()
        .telemetry;
    assert_eq!(
        t.metrics,
        Some(MetricsAddr::Unix("/run/fence_virtd/metrics.sock".into()))
    );
    for bad in [
        "metrics = \"yes\";",
        "metrics = \"0\";",
        "journal_max_kb = \"1\";",
    ] {
        let e = cfg(bad).expect_err(bad).to_string();
        assert!(e.contains("fence_virtd/@"), "{bad}: {e}");
    }
}

/// A driver whose platform cannot be reached.
struct Down;

impl fence_drivers::Driver for Down {
    fn kind(&self) -> &'static str {
        "down"
    }
    fn status(
        &self,
        _: &fence_drivers::VmRef,
    ) -> Result<fence_drivers::PowerState, fence_drivers::DriverError> {
        Err(fence_drivers::DriverError::Unreachable {
            what: "hypervisor".into(),
            source: "connection refused".into(),
        })
    }
    fn power_off(&self, vm: &fence_drivers::VmRef) -> Result<(), fence_drivers::DriverError> {
        self.status(vm).map(|_| ())
    }
    fn power_on(&self, vm: &fence_drivers::VmRef) -> Result<(), fence_drivers::DriverError> {
        self.status(vm).map(|_| ())
    }
    fn list(&self) -> Result<Vec<fence_drivers::VmInfo>, fence_drivers::DriverError> {
        Err(fence_drivers::DriverError::Timeout("list".into()))
    }
    fn check(&self) -> Result<(), fence_drivers::DriverError> {
        Ok(())
    }
}

/// Backend errors are counted by kind, and the session state follows whether the platform
/// was reached; a failed power action is journalled as a failure with the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_and_session_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let telemetry = Arc::new(Telemetry::new(
        "vsock",
        Some(Journal::open(&path, 1 << 20).unwrap()),
    ));
    let backend = Arc::new(
        Backend::new(
            Arc::new(Down),
            FenceOptions::default(),
            Duration::from_secs(5),
        )
        .with_telemetry(telemetry.clone()),
    );
    let disp =
        Dispatcher::new(backend.clone(), Groups::new(vec![])).with_telemetry(telemetry.clone());
    assert_eq!(backend.devstatus().await, fence_proto::RESP_SUCCESS);
    assert!(telemetry
        .metrics()
        .encode()
        .contains("fence_virtd_backend_up{backend=\"down\"} 1"));
    let a = disp.dispatch(Op::Off as u8, "vm1", "3").await;
    assert_eq!(a, crate::dispatch::Answer::Code(fence_proto::RESP_FAIL));
    assert!(backend.list().await.is_err());
    let text = telemetry.metrics().encode();
    let m = parse(&format!("HTTP/1.1 200 OK\r\n\r\n{text}"));
    assert_eq!(m["fence_virtd_backend_up{backend=down}"], 0.0, "{text}");
    assert_eq!(
        m["fence_virtd_backend_calls_total{backend=down,call=power_off,result=unreachable}"],
        1.0
    );
    assert_eq!(
        m["fence_virtd_backend_calls_total{backend=down,call=list,result=timeout}"],
        1.0
    );
    assert_eq!(
        m["fence_virtd_requests_total{listener=vsock,op=off,result=failure}"],
        1.0
    );
    let e: Vec<super::Entry> = super::journal::tail(&path, 10)
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].result.as_str(), e[0].requester.as_str()),
        ("failure", "3")
    );
    assert!(e[0].detail.contains("cannot reach"), "{}", e[0].detail);
}
