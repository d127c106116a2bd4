//! One test per row of the semantics (module docs of `core`).

use super::*;

const RUN: i32 = 1;
const OFF: i32 = STATE_SHUTOFF;
const U1: &str = "11111111-1111-1111-1111-111111111111";
const U2: &str = "22222222-2222-2222-2222-222222222222";

fn t0() -> Instant {
    Instant::now()
}

/// A node `me` in a quorate group of `members`, joined.
fn node(me: u32, members: &[u32]) -> Core {
    let mut c = Core::new(CoreConfig::default(), 100);
    c.connected(me);
    c.set_quorate(true);
    let _ = c.confchg(members, &[], members, t0());
    c.corosync_members(members);
    c
}

fn store(name: &str, uuid: &str, state: i32) -> [u8; CPG_MSG_LEN] {
    encode_store_vm(&VmState {
        name: name.into(),
        uuid: uuid.into(),
        owner: 0,
        state,
    })
}

fn fence_req(name: &str, op: CpgOp) -> FenceReq {
    FenceReq {
        vm_name: name.into(),
        op,
        client_seqno: 0,
        response: 0,
    }
}

fn request(seqno: u32, name: &str, op: CpgOp) -> [u8; CPG_MSG_LEN] {
    encode_request(seqno, &fence_req(name, op)).unwrap()
}

fn reply(seqno: u32, target: u32, name: &str, op: CpgOp, code: u32) -> [u8; CPG_MSG_LEN] {
    encode_reply(seqno, target, &fence_req(name, op), code).unwrap()
}

fn sends(a: &[Action]) -> Vec<CpgMessage> {
    a.iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(decode(b).unwrap()),
            _ => None,
        })
        .collect()
}

fn replies(a: &[Action]) -> Vec<(u32, u32, u32)> {
    sends(a)
        .into_iter()
        .filter_map(|m| match m {
            CpgMessage::Reply { seqno, target, req } => Some((seqno, target, req.response)),
            _ => None,
        })
        .collect()
}

fn jobs(a: &[Action]) -> Vec<Job> {
    a.iter()
        .filter_map(|a| match a {
            Action::Execute(j) => Some(j.clone()),
            _ => None,
        })
        .collect()
}

fn completes(a: &[Action]) -> Vec<(u32, Outcome)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Complete { seqno, outcome } => Some((*seqno, *outcome)),
            _ => None,
        })
        .collect()
}

/// Our request from `c`: submit, deliver to ourselves, return (seqno, actions of delivery).
fn ask(c: &mut Core, name: &str, op: CpgOp) -> (u32, Vec<Action>) {
    let (seqno, a) = c.submit(op, name, 0, t0()).unwrap();
    let [Action::Send(b)] = a.as_slice() else {
        panic!("submit sends one request: {a:?}")
    };
    let me = c.me();
    (seqno, c.deliver(me, b, t0()))
}

/// Three nodes: 1 runs vm-a, 2 runs vm-b, 3 runs vm-c (3 is highest).
fn cluster(me: u32) -> Core {
    let mut c = node(me, &[1, 2, 3]);
    let _ = c.deliver(1, &store("vm-a", U1, RUN), t0());
    let _ = c.deliver(2, &store("vm-b", U2, RUN), t0());
    let _ = c.deliver(3, &store("vm-c", "", RUN), t0());
    c
}

#[test]
fn owner_executes_a_c_requesters_request_and_others_arm_watchdogs() {
    // A C requester (node 1, seqno 7) asks for vm-b.
    let mut owner = cluster(2);
    let a = owner.deliver(1, &request(7, "vm-b", CpgOp::Off), t0());
    let j = jobs(&a);
    assert_eq!(j.len(), 1);
    assert_eq!((j[0].requester, j[0].seqno, j[0].uuid.as_str()), (1, 7, U2));
    assert!(j[0].may_start);
    let r = owner.local_result(&j[0], 0);
    assert_eq!(replies(&r), vec![(7, 1, 0)]);
    // The reply copies the request payload.
    let CpgMessage::Reply { req, .. } = &sends(&r)[0] else {
        panic!()
    };
    assert_eq!(req.vm_name, "vm-b");
    assert_eq!(req.op, CpgOp::Off);

    let mut other = cluster(3);
    let a = other.deliver(1, &request(7, "vm-b", CpgOp::Off), t0());
    assert!(
        a.is_empty(),
        "not the owner, not highest for a known VM: {a:?}"
    );
    assert!(other.next_deadline().is_some(), "watchdog armed");
    // The owner's reply disarms it.
    let _ = other.deliver(2, &reply(7, 1, "vm-b", CpgOp::Off, 0), t0());
    assert_eq!(other.next_deadline(), None);
}

#[test]
fn our_request_completes_with_the_owners_answer() {
    let mut c = cluster(1);
    let (seqno, a) = ask(&mut c, "vm-b", CpgOp::Status);
    assert!(completes(&a).is_empty() && jobs(&a).is_empty());
    let a = c.deliver(2, &reply(seqno, 1, "vm-b", CpgOp::Status, 2), t0());
    assert_eq!(completes(&a), vec![(seqno, Ok(2))]);
}

#[test]
fn our_request_for_our_own_vm_goes_round_the_group() {
    let mut c = cluster(1);
    let (seqno, a) = ask(&mut c, "vm-a", CpgOp::Off);
    let j = jobs(&a);
    assert_eq!(j.len(), 1);
    let r = c.local_result(&j[0], 0);
    let [Action::Send(b)] = r.as_slice() else {
        panic!()
    };
    let a = c.deliver(1, b, t0());
    assert_eq!(completes(&a), vec![(seqno, Ok(0))]);
}

#[test]
fn unknown_vm_fails_at_once_and_the_highest_answers_failure() {
    let mut req = cluster(1);
    let (seqno, a) = ask(&mut req, "nosuch", CpgOp::Off);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Unknown))]);

    let mut highest = cluster(3);
    for op in [CpgOp::Status, CpgOp::Off, CpgOp::On, CpgOp::Reboot] {
        let a = highest.deliver(1, &request(9, "nosuch", op), t0());
        assert_eq!(
            replies(&a),
            vec![(9, 1, 1)],
            "{op:?}: C says 2/0/1/0, we say 1"
        );
    }
    let mut middle = cluster(2);
    assert!(replies(&middle.deliver(1, &request(9, "nosuch", CpgOp::Off), t0())).is_empty());
}

#[test]
fn a_c_highest_nodes_unknown_answer_is_ignored_by_our_requester() {
    let mut c = cluster(1);
    let (seqno, a) = ask(&mut c, "vm-b", CpgOp::Status);
    assert!(completes(&a).is_empty());
    // Node 3 (not the owner) answers "off": not an expected responder.
    let a = c.deliver(3, &reply(seqno, 1, "vm-b", CpgOp::Status, 2), t0());
    assert!(completes(&a).is_empty());
    assert_eq!(c.dropped().unmatched_replies, 1);
    let a = c.deliver(2, &reply(seqno, 1, "vm-b", CpgOp::Status, 0), t0());
    assert_eq!(completes(&a), vec![(seqno, Ok(0))]);
}

#[test]
fn owner_that_left_makes_its_vms_lost_not_off() {
    for reason in [2u32, 3, 5] {
        let mut c = cluster(3);
        let _ = c.confchg(&[1, 3], &[(2, reason)], &[], t0());
        // As highest, node 3 answers failure for the lost VM (C: off / success).
        let a = c.deliver(1, &request(4, "vm-b", CpgOp::Status), t0());
        assert_eq!(replies(&a), vec![(4, 1, 1)]);
        let a = c.deliver(1, &request(5, "vm-b", CpgOp::Off), t0());
        assert_eq!(replies(&a), vec![(5, 1, 1)]);
        let lost = c.map().into_iter().find(|e| e.name == "vm-b").unwrap();
        assert!(!lost.live);
        assert_eq!(lost.lost.unwrap().reason, LeaveReason::from_code(reason));
        // Our own request fails at once, without waiting.
        let (seqno, a) = ask(&mut c, "vm-b", CpgOp::Off);
        assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);
        // Node 2 comes back and re-announces: fresh again, routed to it.
        let _ = c.confchg(&[1, 2, 3], &[], &[2], t0());
        let _ = c.deliver(2, &store("vm-b", U2, RUN), t0());
        let (_, a) = ask(&mut c, "vm-b", CpgOp::Status);
        assert!(completes(&a).is_empty(), "waits for node 2 now");
        assert!(c.map().iter().all(|e| e.lost.is_none()));
    }
}

#[test]
fn a_second_process_on_a_live_nodeid_leaving_loses_nothing() {
    let mut c = cluster(3);
    // Node 2 is still in the member list: a sniffer with nodeid 2 left (B17).
    let _ = c.confchg(&[1, 2, 3], &[(2, 2)], &[], t0());
    assert!(c.map().iter().all(|e| e.lost.is_none()));
}

#[test]
fn responder_leaving_fails_our_waiting_request() {
    let mut c = cluster(1);
    let (seqno, _) = ask(&mut c, "vm-b", CpgOp::Off);
    let a = c.confchg(&[1, 3], &[(2, 3)], &[], t0());
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::ResponderLeft))]);
    // Every membership change with a leave re-announces our domains.
    assert!(a.contains(&Action::Refresh));
}

#[test]
fn inactive_copy_is_silent_while_another_host_runs_the_vm() {
    // vm-d: shut off on 1, running on 2.
    let mut n1 = node(1, &[1, 2, 3]);
    let _ = n1.deliver(1, &store("vm-d", U1, OFF), t0());
    let _ = n1.deliver(2, &store("vm-d", U1, RUN), t0());
    for op in [CpgOp::Status, CpgOp::On, CpgOp::Off, CpgOp::Reboot] {
        let a = n1.deliver(3, &request(1, "vm-d", op), t0());
        assert!(jobs(&a).is_empty() && replies(&a).is_empty(), "{op:?}");
    }
    let mut n2 = node(2, &[1, 2, 3]);
    let _ = n2.deliver(1, &store("vm-d", U1, OFF), t0());
    let _ = n2.deliver(2, &store("vm-d", U1, RUN), t0());
    let j = jobs(&n2.deliver(3, &request(1, "vm-d", CpgOp::Status), t0()));
    assert_eq!(j.len(), 1);
    // Our requester waits for node 2 only: node 1's C-style "off" does not count.
    let mut n3 = node(3, &[1, 2, 3]);
    let _ = n3.deliver(1, &store("vm-d", U1, OFF), t0());
    let _ = n3.deliver(2, &store("vm-d", U1, RUN), t0());
    let (seqno, _) = ask(&mut n3, "vm-d", CpgOp::Status);
    assert!(completes(&n3.deliver(1, &reply(seqno, 3, "vm-d", CpgOp::Status, 2), t0())).is_empty());
    let a = n3.deliver(2, &reply(seqno, 3, "vm-d", CpgOp::Status, 0), t0());
    assert_eq!(completes(&a), vec![(seqno, Ok(0))]);
}

#[test]
fn inactive_copies_only_lowest_holder_answers_and_starts_only_a_single_copy() {
    let setup = |me| {
        let mut c = node(me, &[1, 2, 3]);
        let _ = c.deliver(1, &store("vm-d", U1, OFF), t0());
        let _ = c.deliver(2, &store("vm-d", U1, OFF), t0());
        c
    };
    let mut n1 = setup(1);
    let j = jobs(&n1.deliver(3, &request(1, "vm-d", CpgOp::On), t0()));
    assert_eq!(j.len(), 1);
    assert!(
        !j[0].may_start,
        "defined on two hosts: never start one of them"
    );
    let mut n2 = setup(2);
    assert!(jobs(&n2.deliver(3, &request(1, "vm-d", CpgOp::On), t0())).is_empty());
    // Only one live holder: it may start it.
    let mut single = node(1, &[1, 2, 3]);
    let _ = single.deliver(1, &store("vm-d", U1, OFF), t0());
    let j = jobs(&single.deliver(3, &request(1, "vm-d", CpgOp::On), t0()));
    assert!(j[0].may_start);
}

#[test]
fn inactive_copy_needs_quorum_and_no_lost_holder() {
    let mut c = node(1, &[1, 2, 3]);
    let _ = c.deliver(1, &store("vm-d", U1, OFF), t0());
    let _ = c.deliver(2, &store("vm-d", U1, RUN), t0());
    // Node 2 (which ran it) is lost: nobody may answer from the shut-off copy.
    let _ = c.confchg(&[1, 3], &[(2, 3)], &[], t0());
    let a = c.deliver(3, &request(1, "vm-d", CpgOp::Status), t0());
    assert!(jobs(&a).is_empty() && replies(&a).is_empty());
    let (seqno, a) = ask(&mut c, "vm-d", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);

    let mut q = node(1, &[1, 3]);
    let _ = q.deliver(1, &store("vm-e", U2, OFF), t0());
    q.set_quorate(false);
    let (seqno, a) = ask(&mut q, "vm-e", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::NoQuorum))]);
    assert!(jobs(&a).is_empty());
}

#[test]
fn two_active_copies_both_act_and_our_requester_needs_every_answer() {
    let setup = |me| {
        let mut c = node(me, &[1, 2, 3]);
        let _ = c.deliver(1, &store("vm-m", U1, RUN), t0());
        let _ = c.deliver(2, &store("vm-m", U1, 3), t0()); // paused copy (migration target)
        c
    };
    assert_eq!(
        jobs(&setup(1).deliver(3, &request(1, "vm-m", CpgOp::Off), t0())).len(),
        1
    );
    assert_eq!(
        jobs(&setup(2).deliver(3, &request(1, "vm-m", CpgOp::Off), t0())).len(),
        1
    );

    let mut r = setup(3);
    let (s, _) = ask(&mut r, "vm-m", CpgOp::Off);
    assert!(completes(&r.deliver(1, &reply(s, 3, "vm-m", CpgOp::Off, 0), t0())).is_empty());
    let a = r.deliver(2, &reply(s, 3, "vm-m", CpgOp::Off, 0), t0());
    assert_eq!(completes(&a), vec![(s, Ok(0))]);
    // One failure fails an off at once.
    let (s, _) = ask(&mut r, "vm-m", CpgOp::Off);
    let a = r.deliver(2, &reply(s, 3, "vm-m", CpgOp::Off, 1), t0());
    assert_eq!(completes(&a), vec![(s, Err(Failure::Refused))]);
    // Status: "on" from either wins; "off" needs both.
    let (s, _) = ask(&mut r, "vm-m", CpgOp::Status);
    assert!(completes(&r.deliver(1, &reply(s, 3, "vm-m", CpgOp::Status, 2), t0())).is_empty());
    let a = r.deliver(2, &reply(s, 3, "vm-m", CpgOp::Status, 0), t0());
    assert_eq!(completes(&a), vec![(s, Ok(0))]);
    let (s, _) = ask(&mut r, "vm-m", CpgOp::Status);
    let _ = r.deliver(1, &reply(s, 3, "vm-m", CpgOp::Status, 2), t0());
    let a = r.deliver(2, &reply(s, 3, "vm-m", CpgOp::Status, 2), t0());
    assert_eq!(completes(&a), vec![(s, Ok(2))]);
    // A second reply from the same node does not count twice.
    let (s, _) = ask(&mut r, "vm-m", CpgOp::Status);
    let _ = r.deliver(1, &reply(s, 3, "vm-m", CpgOp::Status, 2), t0());
    let a = r.deliver(1, &reply(s, 3, "vm-m", CpgOp::Status, 2), t0());
    assert!(completes(&a).is_empty());
}

#[test]
fn partition_loses_the_other_side_and_quorum_loss_fails_unknowns() {
    let mut c = cluster(3);
    let _ = c.confchg(&[3], &[(1, 3), (2, 3)], &[], t0());
    c.set_quorate(false);
    // vm-c is ours and active: still served without quorum.
    assert_eq!(
        jobs(&c.deliver(3, &request(1, "vm-c", CpgOp::Status), t0())).len(),
        1
    );
    // The other side's VMs are lost: failure, never off.
    let (s, a) = ask(&mut c, "vm-a", CpgOp::Status);
    assert_eq!(completes(&a), vec![(s, Err(Failure::Lost))]);
    let (s, a) = ask(&mut c, "nosuch", CpgOp::Status);
    assert_eq!(completes(&a), vec![(s, Err(Failure::NoQuorum))]);
}

#[test]
fn tombstone_removes_the_entry_for_us() {
    let mut c = cluster(3);
    let _ = c.deliver(2, &store("vm-b", U2, STATE_TOMBSTONE), t0());
    assert!(c.map().iter().all(|e| e.name != "vm-b"));
    let (s, a) = ask(&mut c, "vm-b", CpgOp::Off);
    assert_eq!(completes(&a), vec![(s, Err(Failure::Unknown))]);
}

#[test]
fn local_list_announces_changes_and_tombstones_once() {
    let mut c = node(1, &[1]);
    let vm = |n: &str, u: &str, s| LocalVm {
        name: n.into(),
        uuid: u.into(),
        state: s,
    };
    let a = c.local_list(vec![vm("a", U1, RUN), vm("Domain-0", "", RUN)]);
    let s = sends(&a);
    assert_eq!(s.len(), 1, "Domain-0 is never announced: {s:?}");
    // Unchanged: nothing.
    assert!(c.local_list(vec![vm("a", U1, RUN)]).is_empty());
    // Changed state: one message; new domain: one message.
    let a = c.local_list(vec![vm("a", U1, OFF), vm("b", U2, RUN)]);
    assert_eq!(sends(&a).len(), 2);
    // Missing from one listing only (a state read that failed once): nothing is said.
    assert!(c.local_list(vec![vm("b", U2, RUN)]).is_empty());
    assert!(c
        .local_list(vec![vm("a", U1, OFF), vm("b", U2, RUN)])
        .is_empty());
    // Vanished (missing from two listings in a row): one tombstone, then nothing.
    assert!(c.local_list(vec![vm("b", U2, RUN)]).is_empty());
    let a = c.local_list(vec![vm("b", U2, RUN)]);
    assert_eq!(
        sends(&a),
        vec![CpgMessage::StoreVm(VmState {
            name: "a".into(),
            uuid: U1.into(),
            owner: 1,
            state: STATE_TOMBSTONE
        })]
    );
    assert!(c.local_list(vec![vm("b", U2, RUN)]).is_empty());
    // A membership change with a join re-announces everything.
    let a = c.confchg(&[1, 2], &[], &[2], t0());
    assert_eq!(sends(&a).len(), 2, "the list and the end marker");
    assert!(a.contains(&Action::Refresh));
    // A change with neither joins nor leaves does not.
    assert!(c.confchg(&[1, 2], &[], &[], t0()).is_empty());
}

#[test]
fn nothing_is_announced_before_joining() {
    let mut c = Core::new(CoreConfig::default(), 5);
    c.connected(1);
    let a = c.local_list(vec![LocalVm {
        name: "a".into(),
        uuid: U1.into(),
        state: RUN,
    }]);
    assert!(a.is_empty());
    assert_eq!(
        c.submit(CpgOp::Status, "a", 0, t0()),
        Err(Failure::Disconnected)
    );
    let a = c.confchg(&[1], &[], &[1], t0());
    assert_eq!(
        sends(&a).len(),
        2,
        "own join announces the list and its end"
    );
}

#[test]
fn replays_and_mismatched_replies_are_ignored() {
    let mut c = cluster(1);
    let (s, _) = ask(&mut c, "vm-b", CpgOp::Off);
    // Same seqno, other VM (a late reply of an earlier incarnation).
    let a = c.deliver(2, &reply(s, 1, "vm-x", CpgOp::Off, 0), t0());
    assert!(completes(&a).is_empty());
    // Same seqno and VM, other request code.
    let a = c.deliver(2, &reply(s, 1, "vm-b", CpgOp::On, 0), t0());
    assert!(completes(&a).is_empty());
    // Wrong target.
    let a = c.deliver(2, &reply(s, 3, "vm-b", CpgOp::Off, 0), t0());
    assert!(completes(&a).is_empty());
    // Seqno not outstanding.
    let a = c.deliver(
        2,
        &reply(s.wrapping_add(50), 1, "vm-b", CpgOp::Off, 0),
        t0(),
    );
    assert!(completes(&a).is_empty());
    assert_eq!(c.dropped().unmatched_replies, 3);
    let a = c.deliver(2, &reply(s, 1, "vm-b", CpgOp::Off, 0), t0());
    assert_eq!(completes(&a), vec![(s, Ok(0))]);
    // The same reply again: no longer outstanding.
    let a = c.deliver(2, &reply(s, 1, "vm-b", CpgOp::Off, 0), t0());
    assert!(completes(&a).is_empty());
}

#[test]
fn a_replayed_request_of_ours_does_not_reset_expectations() {
    let mut c = cluster(1);
    let (s, _) = ask(&mut c, "vm-b", CpgOp::Off);
    // An old REQUEST with the same seqno but another VM, delivered again.
    let a = c.deliver(1, &request(s, "nosuch", CpgOp::Off), t0());
    assert!(completes(&a).is_empty());
    let a = c.deliver(2, &reply(s, 1, "vm-b", CpgOp::Off, 0), t0());
    assert_eq!(completes(&a), vec![(s, Ok(0))]);
}

#[test]
fn deadline_fails_our_request_and_watchdog_answers_for_a_silent_owner() {
    let start = t0();
    let cfg = CoreConfig::default();
    let mut c = cluster(1);
    let (s, _) = c.submit(CpgOp::Off, "vm-b", 0, start).unwrap();
    assert!(c.tick(start + cfg.request_timeout / 2).is_empty());
    let a = c.tick(start + cfg.request_timeout);
    assert_eq!(completes(&a), vec![(s, Err(Failure::Timeout))]);

    // Node 3 sees C requester 1's request for vm-b; node 2 never answers.
    let mut w = cluster(3);
    let _ = w.deliver(1, &request(8, "vm-b", CpgOp::Off), start);
    assert!(w
        .tick(start + cfg.watchdog - Duration::from_millis(1))
        .is_empty());
    let a = w.tick(start + cfg.watchdog);
    assert_eq!(replies(&a), vec![(8, 1, 1)]);
    assert!(w.tick(start + cfg.watchdog * 2).is_empty(), "once");
}

#[test]
fn watchdogs_are_staggered_by_rank() {
    let start = t0();
    let cfg = CoreConfig::default();
    let mut n3 = node(3, &[1, 2, 3, 4]);
    let mut n4 = node(4, &[1, 2, 3, 4]);
    for c in [&mut n3, &mut n4] {
        let _ = c.deliver(2, &store("vm-b", U2, RUN), start);
        let _ = c.deliver(1, &request(8, "vm-b", CpgOp::Status), start);
    }
    assert_eq!(n3.next_deadline(), Some(start + cfg.watchdog));
    assert_eq!(
        n4.next_deadline(),
        Some(start + cfg.watchdog + cfg.watchdog_stagger)
    );
    // The requester leaving drops them.
    let _ = n3.confchg(&[2, 3, 4], &[(1, 2)], &[], start);
    assert_eq!(n3.next_deadline(), None);
}

#[test]
fn matching_by_uuid_form_and_exact_names() {
    let mut c = cluster(1);
    // UUID form, any case: matches vm-b's UUID although name_mode would say "name".
    let (_, a) = ask(&mut c, &U2.to_uppercase(), CpgOp::Status);
    assert!(completes(&a).is_empty(), "routed to node 2");
    // Names are case-sensitive.
    let (s, a) = ask(&mut c, "VM-B", CpgOp::Status);
    assert_eq!(completes(&a), vec![(s, Err(Failure::Unknown))]);
    let (s, a) = ask(&mut c, "", CpgOp::Status);
    assert_eq!(completes(&a), vec![(s, Err(Failure::Unknown))]);
}

#[test]
fn disconnect_fails_everything_and_loses_every_entry() {
    let mut c = cluster(1);
    let (s, _) = ask(&mut c, "vm-b", CpgOp::Off);
    let a = c.disconnected(t0());
    assert_eq!(completes(&a), vec![(s, Err(Failure::Disconnected))]);
    assert!(c.map().iter().all(|e| e.lost.is_some() && !e.live));
    assert_eq!(
        c.submit(CpgOp::Off, "vm-b", 0, t0()),
        Err(Failure::Disconnected)
    );
}

#[test]
fn seqnos_skip_zero_and_wrap() {
    let mut c = Core::new(CoreConfig::default(), u32::MAX);
    c.connected(1);
    let _ = c.confchg(&[1], &[], &[1], t0());
    let (a, _) = c.submit(CpgOp::Status, "x", 0, t0()).unwrap();
    let (b, _) = c.submit(CpgOp::Status, "x", 0, t0()).unwrap();
    assert_eq!((a, b), (u32::MAX, 1));
    let c0 = Core::new(CoreConfig::default(), 0);
    assert_eq!(c0.next_seqno, 1);
}

#[test]
fn malformed_messages_are_counted_and_dropped() {
    let mut c = cluster(1);
    assert!(c.deliver(2, &[0u8; 20], t0()).is_empty());
    let mut b = request(1, "vm-b", CpgOp::Off);
    b[0] = 9;
    assert!(c.deliver(2, &b, t0()).is_empty());
    assert_eq!(c.dropped().malformed, 2);
}

#[test]
fn unknown_request_codes_get_failure_from_the_owner() {
    let mut owner = cluster(2);
    let j = jobs(&owner.deliver(1, &request(3, "vm-b", CpgOp::Other(7)), t0()));
    assert_eq!(j.len(), 1, "the driver answers 1 for unknown codes");
    assert_eq!(j[0].req.op, CpgOp::Other(7));
}

#[test]
fn too_long_names_are_refused_before_sending() {
    let mut c = cluster(1);
    assert_eq!(
        c.submit(CpgOp::Off, &"x".repeat(128), 0, t0()),
        Err(Failure::BadName)
    );
}

#[test]
fn a_watchdog_fires_early_when_the_designated_responder_leaves() {
    let start = t0();
    let cfg = CoreConfig::default();
    let mut n3 = node(3, &[1, 2, 3, 4]);
    let mut n4 = node(4, &[1, 2, 3, 4]);
    for c in [&mut n3, &mut n4] {
        let _ = c.deliver(2, &store("vm-b", U2, RUN), start);
        let _ = c.deliver(1, &request(8, "vm-b", CpgOp::Off), start);
        // The owner dies before answering.
        let _ = c.confchg(&[1, 3, 4], &[(2, 3)], &[], start);
    }
    assert_eq!(replies(&n3.tick(start)), vec![(8, 1, 1)], "rank 0 at once");
    assert!(n4.tick(start).is_empty());
    assert_eq!(
        replies(&n4.tick(start + cfg.watchdog_stagger)),
        vec![(8, 1, 1)]
    );
}

#[test]
fn requests_carry_the_form_name_mode_says() {
    let by = |send_uuid, asked: &str| {
        let mut c = Core::new(
            CoreConfig {
                send_uuid,
                ..CoreConfig::default()
            },
            1,
        );
        c.connected(1);
        c.set_quorate(true);
        let _ = c.confchg(&[1, 2], &[], &[1, 2], t0());
        let _ = c.deliver(2, &store("vm-b", U2, RUN), t0());
        let (_, a) = c.submit(CpgOp::Status, asked, 0, t0()).unwrap();
        match &sends(&a)[0] {
            CpgMessage::Request { req, .. } => req.vm_name.clone(),
            m => panic!("{m:?}"),
        }
    };
    assert_eq!(by(true, "vm-b"), U2);
    assert_eq!(by(true, &U2.to_uppercase()), U2);
    assert_eq!(by(false, U2), "vm-b");
    assert_eq!(by(false, "vm-b"), "vm-b");
    // Unknown: as given.
    assert_eq!(by(true, "nosuch"), "nosuch");
}

#[test]
fn rejoining_withdraws_what_vanished_while_disconnected() {
    let vm = |n: &str, u: &str| LocalVm {
        name: n.into(),
        uuid: u.into(),
        state: RUN,
    };
    let mut c = node(1, &[1, 2]);
    let _ = c.local_list(vec![vm("a", U1), vm("b", U2)]);
    // Our own announcements come back to us.
    let _ = c.deliver(1, &store("a", U1, RUN), t0());
    let _ = c.deliver(1, &store("b", U2, RUN), t0());
    let _ = c.disconnected(t0());
    // "b" goes away while corosync is down (missing from two listings).
    let _ = c.local_list(vec![vm("a", U1)]);
    let _ = c.local_list(vec![vm("a", U1)]);
    let a = c.confchg(&[1, 2], &[], &[1], t0());
    let s = sends(&a);
    assert!(s.contains(&CpgMessage::StoreVm(VmState {
        name: "b".into(),
        uuid: U2.into(),
        owner: 1,
        state: STATE_TOMBSTONE
    })));
    assert_eq!(
        s.len(),
        3,
        "one tombstone, one announcement, the end: {s:?}"
    );
}

/// A daemon restarted on another host knows nothing of the past: members relay the lost entries
/// they hold for absent nodes after a join, so it learns them as lost (never unknown, never
/// answerable by a shut-off copy), and a rejoined node's end marker drops what it no longer has.
#[test]
fn relays_teach_a_newcomer_lost_entries_and_the_end_marker_drops_stale_ones() {
    // Node 1 held node 2's running "x" when node 2 left; node 3 (re)joins.
    let mut n1 = node(1, &[1, 2]);
    let _ = n1.deliver(2, &store("x", U1, RUN), t0());
    let _ = n1.confchg(&[1], &[(2, 3)], &[], t0());
    let a = n1.confchg(&[1, 3], &[], &[3], t0());
    let relays: Vec<VmState> = sends(&a)
        .into_iter()
        .filter_map(|m| match m {
            CpgMessage::StoreVm(v) if v.owner == 2 => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(relays.len(), 1, "{relays:?}");
    // The newcomer, fresh, with a shut-off copy of "x": without the relay it would answer a
    // status of "x" with "off" as the only holder; with it, "x" is lost on node 2.
    let mut n3 = node(3, &[1, 3]);
    let _ = n3.deliver(3, &store("x", U1, OFF), t0());
    let a = n3.deliver(1, &request(7, "x", CpgOp::Status), t0());
    assert!(
        !jobs(&a).is_empty(),
        "without the relay the shut-off copy answers"
    );
    let mut n3 = node(3, &[1, 3]);
    let _ = n3.deliver(3, &store("x", U1, OFF), t0());
    for v in &relays {
        let _ = n3.deliver(1, &encode_store_vm(v), t0());
    }
    assert!(n3
        .map()
        .iter()
        .any(|e| e.nodeid == 2 && e.name == "x" && e.lost.is_some()));
    let a = n3.deliver(1, &request(8, "x", CpgOp::Status), t0());
    assert!(jobs(&a).is_empty(), "the shut-off copy must not answer");
    assert!(replies(&a).iter().all(|&(_, _, code)| code != 2));
    let (seqno, a) = ask(&mut n3, "x", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);
    // A relay about a node that is here is ignored: it speaks for itself.
    let mut n4 = node(3, &[1, 2, 3]);
    for v in &relays {
        let _ = n4.deliver(1, &encode_store_vm(v), t0());
    }
    assert!(n4.map().is_empty());

    // Node 2 comes back without "x": its list and end marker drop the stale lost entry.
    let _ = n1.confchg(&[1, 2, 3], &[], &[2], t0());
    let _ = n1.deliver(2, &store("y", U2, RUN), t0());
    assert!(n1.map().iter().any(|e| e.nodeid == 2 && e.name == "x"));
    let end = encode_store_vm(&VmState {
        name: String::new(),
        uuid: String::new(),
        owner: 2,
        state: fence_proto::cpg::STATE_BURST_END,
    });
    let _ = n1.deliver(2, &end, t0());
    let m = n1.map();
    assert!(!m.iter().any(|e| e.nodeid == 2 && e.name == "x"), "{m:?}");
    assert!(m
        .iter()
        .any(|e| e.nodeid == 2 && e.name == "y" && e.lost.is_none()));
}

/// Delivers every message `a` sends, as from `sender`, to each core of `to`.
fn deliver_all(a: &[Action], sender: u32, to: &mut [&mut Core]) {
    for act in a {
        if let Action::Send(b) = act {
            for c in to.iter_mut() {
                let _ = c.deliver(sender, b, t0());
            }
        }
    }
}

/// `node` leaves the group and corosync: `members` remain in both.
fn lose(c: &mut Core, node: u32, members: &[u32]) {
    let _ = c.confchg(members, &[(node, 3)], &[], t0());
    c.corosync_members(members);
}

/// The end markers of `from`'s full announcements, delivered to `c`.
fn bursts_from(c: &mut Core, from: &[u32]) {
    for &m in from {
        let end = encode_store_vm(&VmState {
            name: fence_proto::cpg::BURST_END_NAME.into(),
            uuid: String::new(),
            owner: m,
            state: fence_proto::cpg::STATE_BURST_END,
        });
        let _ = c.deliver(m, &end, t0());
    }
}

/// A lost host confirmed fenced: its VMs count as off once the mark is delivered, on every
/// member alike, and once every member's full list is in; the lowest member answers (off
/// proven: status 2, off/reboot 0, on 1). A host whose corosync runs cannot be confirmed.
#[test]
fn a_confirmed_fenced_hosts_vms_are_off_answered_by_the_lowest_member() {
    let mut n1 = cluster(1);
    let mut n3 = cluster(3);
    // Node 2's daemon died but its corosync runs: its host is up.
    let _ = n1.confchg(&[1, 3], &[(2, 5)], &[], t0());
    assert_eq!(n1.confirm_fenced(2), Err(ConfirmError::HostUp(2)));
    // Without the quorum service the corosync membership is unknown: never confirmed.
    let mut blind = Core::new(CoreConfig::default(), 1);
    blind.connected(1);
    let _ = blind.confchg(&[1], &[], &[1], t0());
    let _ = blind.deliver(1, &store("x", U1, RUN), t0());
    let _ = blind.confchg(&[1], &[(2, 3)], &[], t0());
    assert_eq!(
        blind.confirm_fenced(2),
        Err(ConfirmError::MembershipUnknown)
    );
    // Now the host is gone from corosync too.
    for c in [&mut n1, &mut n3] {
        lose(c, 2, &[1, 3]);
    }
    // Refused: ourselves, a member, a node with nothing known.
    assert_eq!(n1.confirm_fenced(1), Err(ConfirmError::Member(1)));
    assert_eq!(n1.confirm_fenced(3), Err(ConfirmError::Member(3)));
    assert_eq!(n1.confirm_fenced(9), Err(ConfirmError::NoVms(9)));
    // Not in effect before its delivery.
    let mark = n3.confirm_fenced(2).unwrap();
    let (seqno, a) = ask(&mut n1, "vm-b", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);
    deliver_all(&mark, 3, &mut [&mut n1, &mut n3]);
    let e = n1.map().into_iter().find(|e| e.name == "vm-b").unwrap();
    assert!(e.host_fenced && !e.live);
    // Not before every member's full list is in (a VM running on a member comes first).
    let (seqno, a) = ask(&mut n1, "vm-b", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Incomplete))]);
    for c in [&mut n1, &mut n3] {
        bursts_from(c, &[1, 3]);
    }
    for (op, code) in [
        (CpgOp::Status, 2),
        (CpgOp::Off, 0),
        (CpgOp::Reboot, 0),
        (CpgOp::On, 1),
    ] {
        // Node 1 (lowest) answers without a local action; node 3 only watches.
        let a = n1.deliver(3, &request(20, "vm-b", op), t0());
        assert!(jobs(&a).is_empty(), "nothing runs: {a:?}");
        assert_eq!(replies(&a), vec![(20, 3, code)], "{op:?}");
        let a = n3.deliver(3, &request(20, "vm-b", op), t0());
        assert!(replies(&a).is_empty() && jobs(&a).is_empty(), "{a:?}");
    }
    // Our request waits for node 1's answer and takes it.
    let (seqno, a) = ask(&mut n3, "vm-b", CpgOp::Status);
    assert!(completes(&a).is_empty());
    let a = n3.deliver(1, &reply(seqno, 3, "vm-b", CpgOp::Status, 2), t0());
    assert_eq!(completes(&a), vec![(seqno, Ok(2))]);
    // Without quorum the mark does not answer (the VM may run in another partition).
    n1.set_quorate(false);
    let (seqno, a) = ask(&mut n1, "vm-b", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::NoQuorum))]);
    n1.set_quorate(true);
    // Node 2's host boots and its corosync joins, its daemon not yet: the mark ends there.
    n1.corosync_members(&[1, 2, 3]);
    assert!(n1.map().iter().all(|e| !e.host_fenced));
    let (seqno, a) = ask(&mut n1, "vm-b", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);
    // ... and a mark arriving for it now is not kept.
    deliver_all(&mark, 3, &mut [&mut n1]);
    n1.corosync_members(&[1, 3]);
    assert!(n1.map().iter().all(|e| !e.host_fenced));
    // Confirmed again: a running copy elsewhere still wins (vm-b started on node 3).
    deliver_all(&mark, 3, &mut [&mut n1]);
    assert!(n1.map().iter().any(|e| e.host_fenced));
    let _ = n1.deliver(3, &store("vm-b", U2, RUN), t0());
    let a = n1.deliver(3, &request(21, "vm-b", CpgOp::Status), t0());
    assert!(replies(&a).is_empty(), "node 3 owns it now: {a:?}");
}

/// The mark ends when the node comes back: if it goes again, its VMs are lost anew. It is
/// relayed to members that join later, and it means nothing from the node about itself or
/// about a member.
#[test]
fn a_fenced_mark_ends_on_rejoin_is_relayed_to_joiners_and_ignored_for_members() {
    let mut n1 = cluster(1);
    lose(&mut n1, 2, &[1, 3]);
    let mark = n1.confirm_fenced(2).unwrap();
    deliver_all(&mark, 1, &mut [&mut n1]);
    // A newcomer (node 4) learns the mark with the relays of node 2's entries.
    let a = n1.confchg(&[1, 3, 4], &[], &[4], t0());
    n1.corosync_members(&[1, 3, 4]);
    let mut n4 = node(4, &[1, 3, 4]);
    deliver_all(&a, 1, &mut [&mut n4, &mut n1]);
    let e = n4.map().into_iter().find(|e| e.name == "vm-b").unwrap();
    assert!(e.host_fenced, "{e:?}");
    for c in [&mut n1, &mut n4] {
        bursts_from(c, &[3, 4]);
    }
    let a = n4.deliver(4, &request(5, "vm-b", CpgOp::Status), t0());
    assert!(replies(&a).is_empty(), "node 1 (lowest) answers, not 4");
    let a = n1.deliver(4, &request(5, "vm-b", CpgOp::Status), t0());
    assert_eq!(replies(&a), vec![(5, 4, 2)]);
    // Node 2 rejoins, then leaves again before re-announcing: lost, not off.
    let _ = n1.confchg(&[1, 2, 3, 4], &[], &[2], t0());
    n1.corosync_members(&[1, 2, 3, 4]);
    lose(&mut n1, 2, &[1, 3, 4]);
    let (seqno, a) = ask(&mut n1, "vm-b", CpgOp::Status);
    assert_eq!(completes(&a), vec![(seqno, Err(Failure::Lost))]);
    assert!(n1.map().iter().all(|e| !e.host_fenced));
    // A node's mark about itself, and a mark about a member, are ignored.
    let own = fenced_marker(2);
    let _ = n1.deliver(2, &own, t0());
    let member = fenced_marker(3);
    let _ = n1.deliver(1, &member, t0());
    assert!(n1.map().iter().all(|e| !e.host_fenced));
    // Losing corosync drops the marks (the group re-sends them at our rejoin).
    let _ = n1.deliver(3, &fenced_marker(2), t0());
    assert!(n1.map().iter().any(|e| e.host_fenced));
    let _ = n1.disconnected(t0());
    assert!(n1.map().iter().all(|e| !e.host_fenced));
    assert_eq!(n1.confirm_fenced(2), Err(ConfirmError::Disconnected));
}

/// The map is bounded: past `max_entries` new entries (announced or relayed) are dropped and
/// counted, and every request fails, since a dropped entry may be the VM's running copy; a
/// fenced mark for a node we hold nothing of is not kept.
#[test]
fn a_full_map_drops_entries_and_fails_every_request() {
    let mut c = Core::new(
        CoreConfig {
            max_entries: 3,
            ..CoreConfig::default()
        },
        1,
    );
    c.connected(1);
    c.set_quorate(true);
    let _ = c.confchg(&[1, 2], &[], &[1, 2], t0());
    let _ = c.deliver(2, &store("vm-a", U1, RUN), t0());
    let _ = c.deliver(2, &store("vm-b", U2, RUN), t0());
    let (seqno, a) = ask(&mut c, "vm-a", CpgOp::Status);
    assert!(
        completes(&a).is_empty(),
        "routed to node 2 while there is room"
    );
    c.cancel(seqno);
    // An update of a known entry needs no room.
    let _ = c.deliver(2, &store("vm-b", U2, OFF), t0());
    let _ = c.deliver(2, &store("vm-c", "", RUN), t0());
    assert_eq!(c.map().len(), 3);
    assert_eq!(c.dropped().overflow, 0);
    // Full: a fourth announcement and a relay for an absent node are dropped.
    let _ = c.deliver(2, &store("vm-d", "", RUN), t0());
    let relay = encode_store_vm(&VmState {
        name: "vm-e".into(),
        uuid: String::new(),
        owner: 7,
        state: RUN,
    });
    let _ = c.deliver(2, &relay, t0());
    assert_eq!(c.map().len(), 3);
    assert_eq!(c.dropped().overflow, 2);
    // Nothing is sure now, not even a VM announced running.
    for vm in ["vm-a", "vm-d", "nosuch"] {
        let (seqno, a) = ask(&mut c, vm, CpgOp::Status);
        assert_eq!(completes(&a), vec![(seqno, Err(Failure::MapFull))], "{vm}");
    }
    // A mark for node 7 (nothing held) is not kept.
    let _ = c.deliver(2, &fenced_marker(7), t0());
    assert!(c.fenced.is_empty());
}

/// Watchdogs are bounded: past `MAX_WATCHDOGS` other members' requests are not watched, and
/// that is counted.
#[test]
fn watchdogs_are_bounded() {
    let mut c = cluster(3);
    for seqno in 1..=(MAX_WATCHDOGS as u32 + 5) {
        let _ = c.deliver(1, &request(seqno, "vm-b", CpgOp::Status), t0());
    }
    assert_eq!(c.watchdogs.len(), MAX_WATCHDOGS);
    assert_eq!(c.dropped().watchdogs, 5);
    // Answered ones make room again.
    let _ = c.deliver(2, &reply(1, 1, "vm-b", CpgOp::Status, 0), t0());
    let _ = c.deliver(1, &request(90_000, "vm-b", CpgOp::Status), t0());
    assert_eq!(c.watchdogs.len(), MAX_WATCHDOGS);
    assert_eq!(c.dropped().watchdogs, 5);
}

/// Candidates for a fencing-history check: nodes gone from the group and from corosync, with
/// entries, not yet marked, seen join and leave since our connection, each with the time its
/// incarnation was first seen and the time it left.
#[test]
fn fence_candidates_are_lost_nodes_with_the_start_of_their_incarnation() {
    let t = Instant::now();
    let later = t + Duration::from_secs(30);
    let last = later + Duration::from_secs(30);
    let mut c = node(1, &[1]);
    let _ = c.confchg(&[1, 2, 3], &[], &[2, 3], t);
    c.corosync_members(&[1, 2, 3]);
    let _ = c.deliver(2, &store("vm-b", U2, RUN), t);
    let _ = c.deliver(3, &store("vm-c", "", RUN), t);
    assert!(c.fence_candidates().is_empty(), "everyone is here");
    // Node 2 rejoins (a new incarnation), then both leave the group; node 3's corosync runs.
    let _ = c.confchg(&[1, 3], &[(2, 3)], &[], t);
    let _ = c.confchg(&[1, 2, 3], &[], &[2], later);
    let _ = c.confchg(&[1], &[(2, 3), (3, 5)], &[], last);
    c.corosync_members(&[1, 3]);
    let two = Candidate {
        node: 2,
        since: later,
        left: last,
    };
    let three = Candidate {
        node: 3,
        since: t,
        left: last,
    };
    assert_eq!(c.fence_candidates(), vec![two]);
    c.corosync_members(&[1]);
    let mut got = c.fence_candidates();
    got.sort();
    assert_eq!(got, vec![two, three]);
    // Marked fenced: no longer a candidate.
    let _ = c.deliver(1, &fenced_marker(3), last);
    assert_eq!(c.fence_candidates(), vec![two]);
    // Known only from a relay (never seen here): not a candidate; nor after our reconnection,
    // which forgets every incarnation we saw.
    let relay = encode_store_vm(&VmState {
        name: "x".into(),
        uuid: String::new(),
        owner: 9,
        state: RUN,
    });
    let _ = c.deliver(1, &relay, last);
    assert!(c.fence_candidates().iter().all(|x| x.node != 9));
    let _ = c.disconnected(last);
    let _ = c.confchg(&[1], &[], &[1], last);
    c.corosync_members(&[1]);
    assert!(c.fence_candidates().is_empty());
}
