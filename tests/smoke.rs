use voxshm::*;

#[test]
fn in_process_roundtrip_and_reuse() {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 1 << 20,
            keep_warm: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    for i in 0..1000u32 {
        let len = 1 + (i as u64 * 7919) % 300_000;
        let al = reg.alloc(len, 1000).unwrap();
        // SAFETY: the allocation holds `len` writable bytes.
        unsafe { std::ptr::write_bytes(al.data, (i % 251) as u8, len as usize) };
        reg.send(&al, len, 1000).unwrap();
        let v = att.recv(1000).unwrap();
        assert_eq!(v.len, len);
        // SAFETY: the view holds `len` readable bytes until released.
        let last = unsafe { v.data.add(len as usize - 1).read() };
        assert_eq!(last, (i % 251) as u8);
        att.release(&v).unwrap();
    }
    reg.wait_idle(1000).unwrap();
    let s = reg.stats();
    assert_eq!(s.live_leases, 0);
    assert_eq!(s.regions, 1, "{s:?}");
    let st = att.stats();
    assert_eq!(st.mappings, 1, "{st:?}");
}
