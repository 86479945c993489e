//! Compiles and runs C and C++ programs against the freshly built
//! `libvoxshm.so`, with the compiler the `cc` crate picks for this target.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory holding the `libvoxshm.so` / `libvoxshm.a` built together
/// with this test binary: `target/<profile>/deps`, where the test binary
/// lives. (`cargo test` rebuilds the library there but copies it up to
/// `target/<profile>` only on `cargo build`, so the copy there may be stale
/// or missing.)
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("deps dir").to_path_buf();
    assert!(
        dir.join("libvoxshm.so").exists(),
        "libvoxshm.so not found in {}",
        dir.display()
    );
    dir
}

/// Scratch directory for build products of one test
/// (`target/<profile>/ctest-out/<name>`).
pub fn scratch(name: &str) -> PathBuf {
    let profile = lib_dir().parent().expect("profile dir").to_path_buf();
    let d = profile.join("ctest-out").join(name);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

fn tool(cpp: bool) -> cc::Tool {
    let mut b = cc::Build::new();
    b.cargo_metadata(false)
        .cpp(cpp)
        .opt_level(0)
        .debug(true)
        .target(env!("VOXSHM_TARGET"))
        .host(env!("VOXSHM_HOST"));
    b.get_compiler()
}

/// How to build a test program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Plain debug build.
    Plain,
    /// `-fsanitize=address,undefined`.
    Sanitized,
    /// `-fsanitize=thread`.
    Thread,
}

/// Whether a source file is C++ (by extension).
pub fn is_cpp(src: &Path) -> bool {
    matches!(
        src.extension().and_then(|e| e.to_str()),
        Some("cpp" | "cc" | "cxx")
    )
}

/// Compiles `srcs` into the executable `out`, linked against
/// `libvoxshm.so` with an rpath to it. `std` is e.g. "c11" or "c++17".
pub fn build(srcs: &[PathBuf], out: &Path, std: &str, flavor: Flavor, extra: &[&str]) -> PathBuf {
    let cpp = srcs.iter().any(|s| is_cpp(s));
    let t = tool(cpp);
    let mut cmd = Command::new(t.path());
    cmd.arg(format!("-std={std}"))
        .args(["-g", "-O0", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("ffi-tests"));
    if flavor == Flavor::Sanitized {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ]);
    }
    if flavor == Flavor::Thread {
        cmd.args(["-fsanitize=thread", "-fno-omit-frame-pointer"]);
    }
    cmd.args(extra).args(srcs).arg("-o").arg(out);
    let lib = lib_dir();
    soname_link(&lib);
    cmd.arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lvoxshm");
    cmd.arg("-ldl");
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {:?} failed:\n{}{}",
        srcs,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out.to_path_buf()
}

/// The library's SONAME is `libvoxshm.so.<major>`, which is what a program
/// linked against it loads; cargo only writes `libvoxshm.so`. Adds the
/// SONAME link next to it (as an install would).
fn soname_link(lib: &Path) {
    let name = format!("libvoxshm.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    match std::os::unix::fs::symlink("libvoxshm.so", lib.join(&name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot link {name} in {}: {e}", lib.display()),
    }
}

/// Compiles one translation unit to an object file only (header checks).
pub fn compile_only(src: &Path, std: &str, cpp: bool, extra: &[&str]) -> Output {
    let t = tool(cpp);
    let obj = src.with_extension("o");
    Command::new(t.path())
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-c"])
        .arg("-I")
        .arg(root().join("include"))
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .expect("run the compiler")
}

/// Runs a built program and asserts it exits 0, showing its output if not.
pub fn run_ok(cmd: &mut Command) -> Output {
    // cargo's LD_LIBRARY_PATH names target/<profile> too, where a
    // `cargo build` of another profile may have left an older library
    // (with its libvoxshm.so.0 link): the programs must load the one built
    // with this test, by their RUNPATH.
    cmd.env_remove("LD_LIBRARY_PATH");
    let o = cmd.output().expect("run test program");
    assert!(
        o.status.success(),
        "{:?} failed with {}:\n--- stdout\n{}\n--- stderr\n{}",
        cmd,
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}
