//! The shared library's dynamic interface: its SONAME, and that it exports
//! nothing but `voxshm_*` functions.

mod cbuild;

use std::process::Command;

fn tool(name: &str, args: &[&str]) -> String {
    let lib = cbuild::lib_dir().join("libvoxshm.so");
    let o = Command::new(name)
        .args(args)
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| panic!("{name} (binutils) is needed: {e}"));
    assert!(
        o.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn soname_is_libvoxshm_so_0() {
    let dynamic = tool("readelf", &["-d"]);
    let soname = dynamic
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .unwrap_or_else(|| panic!("no SONAME in:\n{dynamic}"));
    assert!(soname.contains("[libvoxshm.so.0]"), "{soname}");
}

#[test]
fn exports_only_voxshm_symbols() {
    let syms = tool("nm", &["-D", "--defined-only"]);
    let names: Vec<&str> = syms
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("voxshm_")).collect();
    assert!(foreign.is_empty(), "symbols outside voxshm_*: {foreign:?}");
    for f in [
        "voxshm_registry_new",
        "voxshm_attachments_recv",
        "voxshm_abi_version",
        "voxshm_last_error",
    ] {
        assert!(names.contains(&f), "{f} is not exported");
    }
}

/// A cargo build leaves the SONAME link beside the library, so a program
/// linked straight against `target/<profile>/libvoxshm.so` loads.
#[test]
fn cargo_builds_leave_the_soname_link() {
    let deps = cbuild::lib_dir();
    let profile = deps.parent().expect("profile dir");
    let link = profile.join(format!("libvoxshm.so.{}", env!("CARGO_PKG_VERSION_MAJOR")));
    let target = std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{} is not a link: {e}", link.display()));
    assert_eq!(target, std::path::PathBuf::from("libvoxshm.so"));
}
