//! Sets the shared library's SONAME, and generates the C header with
//! cbindgen into OUT_DIR (the committed `include/voxshm.h` is compared
//! with it by a test; `VOXSHM_UPDATE_HEADER=1 cargo build` rewrites it).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=VOXSHM_UPDATE_HEADER");

    // The C tests compile with the same compiler cc would pick for this
    // target; they need to know the target triple at run time.
    println!(
        "cargo:rustc-env=VOXSHM_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=VOXSHM_HOST={}",
        std::env::var("HOST").unwrap_or_default()
    );

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvoxshm.so.{major}");
        // Thread-local destructors make unloading unsafe: keep the library
        // loaded even if a dlopen user calls dlclose.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
        soname_link(&major);
    }

    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let header = match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(h) => h,
        Err(e) => panic!("cbindgen failed: {e}"),
    };
    header.write_to_file(out.join("voxshm.h"));
    if std::env::var_os("VOXSHM_UPDATE_HEADER").is_some() {
        header.write_to_file(dir.join("include/voxshm.h"));
    }
}

/// Programs linked against `target/<profile>/libvoxshm.so` load it by its
/// SONAME, `libvoxshm.so.<major>`, which cargo does not write: put that
/// link beside it (it dangles until the library is built), so linking
/// straight from a cargo build works without a hand-made link.
fn soname_link(major: &str) {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    // OUT_DIR is target/<profile>/build/voxshm-<hash>/out.
    let Some(profile) = out.ancestors().nth(3) else {
        return;
    };
    let link = profile.join(format!("libvoxshm.so.{major}"));
    if std::fs::symlink_metadata(&link).is_err() {
        let _ = std::os::unix::fs::symlink("libvoxshm.so", &link);
    }
}
