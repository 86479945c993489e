//! A vox receiver's releases travel over the caller's own transport (or
//! not at all): the sender ends each lease by reference, and its budget is
//! not a lifetime cap. Across two processes: the references and the
//! "done" answers go over the helper's stdin and stdout, the regions over
//! the channel.

mod common;

use common::*;
use voxshm::Status::{InvalidArgument, Unsupported};
use voxshm::{Attachments, AttachmentsOptions, Channel, Ref, Registry, RegistryOptions};

const LONG_MS: i64 = 20_000;
const MIB: u64 = 1 << 20;

/// A vox-compatible receiver: resolves each reference it hears (a frame in
/// hex), checks every byte, releases its view and says DONE.
#[test]
fn helper_vox_receiver() {
    if role().as_deref() != Some("vox-receiver") {
        return;
    }
    let att = Attachments::new(
        inherited_channel(),
        AttachmentsOptions {
            vox_compat: true,
            ..Default::default()
        },
    )
    .unwrap();
    while let Some(line) = hear() {
        let Some(hex) = line.strip_prefix("REF ") else {
            break;
        };
        let (seq, hex) = hex.split_once(' ').unwrap();
        let frame: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let r = Ref::decode_frame(&frame).unwrap();
        let v = att.resolve(&r, LONG_MS).unwrap();
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, seq.parse().unwrap()) }.unwrap();
        att.release(&v).unwrap();
        say(&format!("DONE {seq}"));
    }
}

#[test]
fn vox_sender_ends_leases_by_reference_and_reuses_its_budget() {
    let _s = serial();
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_vox_receiver",
        "vox-receiver",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let opts = RegistryOptions {
        vox_compat: true,
        region_size: 256 << 10,
        budget: 256 << 10,
        ..Default::default()
    };
    let reg = Registry::new(mine, opts).unwrap();
    let mut p = Prng::new(5);
    let mut total = 0;
    // Forty budgets' worth, one payload at a time.
    for seq in 0..400u64 {
        let len = p.range(1, 60_000);
        total += len;
        let a = reg.alloc(len, 0).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, seq) };
        let r = reg.publish(&a, len).unwrap();
        let hex: String = r
            .encode_frame()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        h.tell(&format!("REF {seq} {hex}"));
        assert_eq!(h.expect("DONE"), seq.to_string());
        reg.release(&r).unwrap();
        // Released already, or made up: an argument error.
        assert_eq!(reg.release(&r).unwrap_err().status, InvalidArgument);
    }
    assert!(total > 40 * (256 << 10) / 2);
    reg.wait_idle(0).unwrap();
    let s = reg.stats();
    assert_eq!((s.live_leases, s.messages_received), (0, 0), "{s:?}");
    h.tell("bye");
    h.wait_success();
    drop(reg);
    assert_eq!(fd_count(), before);
}

#[test]
fn a_voxshm_sender_does_not_release_by_reference() {
    // The other test counts the process's fds.
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    let r = reg.publish(&al, 100).unwrap();
    let e = reg.release(&r).unwrap_err();
    assert_eq!(e.status, Unsupported, "{e}");
    let v = att.resolve(&r, LONG_MS).unwrap();
    att.release(&v).unwrap();
    settle(&reg, &att);
}

/// The receiver said it was done over the caller's transport, then went
/// away: its lease was reclaimed, and releasing it says so (not "never
/// published").
#[test]
fn releasing_after_the_vox_receiver_went_away_says_peer_gone() {
    let _s = serial();
    let (reg, att) = compat_pair(Default::default());
    let al = reg.alloc(64, 0).unwrap();
    let r = reg.publish(&al, 64).unwrap();
    let v = att.resolve(&r, LONG_MS).unwrap();
    att.release(&v).unwrap();
    drop(att);
    let e = reg.release(&r).unwrap_err();
    assert_eq!(e.status, voxshm::Status::PeerGone, "{e}");
}

/// A vox-compatible registry closes idle regions in the way of a payload
/// and brings their map_ids back with the next generation; a voxshm
/// vox-compatible receiver, never told, replaces the old generation's
/// mapping (no view holds it) instead of refusing the ATTACH.
#[test]
fn vox_compat_receiver_takes_a_map_id_back_with_a_higher_generation() {
    let _s = serial();
    let (reg, att) = compat_pair(RegistryOptions {
        region_size: MIB,
        budget: 64 * MIB,
        ..Default::default()
    });
    for (i, len) in [20 * MIB, 30 * MIB, 40 * MIB].into_iter().enumerate() {
        let al = reg.alloc(len, 0).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(al.data, len, i as u64) };
        let r = reg.publish(&al, len).unwrap();
        eprintln!("payload {i}: {r}");
        let v = att.resolve(&r, 2000);
        let v = match v {
            Ok(v) => v,
            Err(e) => panic!("payload {i} ({r}) does not resolve: {e}; {:?}", att.stats()),
        };
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        att.release(&v).unwrap();
        reg.release(&r).unwrap();
    }
}

/// A vox-compatible registry and attachments on one channel, in this
/// process (`ropts` besides compatibility).
fn compat_pair(ropts: RegistryOptions) -> (Registry, Attachments) {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            vox_compat: true,
            ..ropts
        },
    )
    .unwrap();
    let att = Attachments::new(
        b,
        AttachmentsOptions {
            vox_compat: true,
            ..Default::default()
        },
    )
    .unwrap();
    (reg, att)
}
