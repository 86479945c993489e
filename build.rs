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
    let text = std::fs::read_to_string(out.join("voxshm.h")).expect("read the generated header");
    let dlopen = dlopen_header(&text);
    std::fs::write(out.join("voxshm_dlopen.h"), &dlopen).expect("write voxshm_dlopen.h");
    if std::env::var_os("VOXSHM_UPDATE_HEADER").is_some() {
        header.write_to_file(dir.join("include/voxshm.h"));
        std::fs::write(dir.join("include/voxshm_dlopen.h"), &dlopen)
            .expect("write include/voxshm_dlopen.h");
    }
}

/// `voxshm_dlopen.h`, made from the function declarations of `voxshm.h`:
/// a function-pointer type per function, a struct of them all, and a
/// loader, so a `dlopen` program stays in step with the library.
fn dlopen_header(header: &str) -> String {
    let mut fns = Vec::new();
    for line in header.lines() {
        if !line.ends_with(");")
            || line.starts_with(' ')
            || line.starts_with('#')
            || line.starts_with("typedef")
        {
            continue;
        }
        let Some(paren) = line.find('(') else {
            continue;
        };
        // The identifier just before the first '(' is the function's name.
        let open = line[..paren]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = &line[open..paren];
        if !name.starts_with("voxshm_") {
            continue;
        }
        let ret = line[..open].trim_end();
        let args = &line[paren + 1..line.len() - 2];
        fns.push((ret.to_string(), name.to_string(), args.to_string()));
    }
    let mut h = String::from(
        "/*\n * voxshm for programs that load libvoxshm.so.0 with dlopen: a\n * function-pointer type for every function of voxshm.h, the struct\n * voxshm_api holding them all, and voxshm_api_load, which fills it.\n * Generated from voxshm.h by build.rs; do not edit it by hand\n * (regenerate with: VOXSHM_UPDATE_HEADER=1 cargo build).\n */\n\n#ifndef VOXSHM_DLOPEN_H\n#define VOXSHM_DLOPEN_H\n\n#include <dlfcn.h>\n#include <string.h>\n\n#include \"voxshm.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n",
    );
    for (ret, name, args) in &fns {
        h.push_str(&format!(
            "/** The type of `{name}`. */\ntypedef {ret} (*{name}_fn)({args});\n"
        ));
    }
    h.push_str("\n/** Every function of the library; fill it with voxshm_api_load. */\ntypedef struct voxshm_api {\n");
    for (_, name, _) in &fns {
        h.push_str(&format!("  {name}_fn {};\n", &name["voxshm_".len()..]));
    }
    h.push_str("} voxshm_api;\n\n");
    h.push_str(
        "/**\n * Fills *api from `lib`, a handle from dlopen(\"libvoxshm.so.0\", ...).\n * Checks first that the library's ABI version is VOXSHM_ABI_VERSION.\n * Returns NULL on success, or what failed: the name of a missing\n * symbol, or \"VOXSHM_ABI_VERSION\" for a library of another ABI.\n * ISO C cannot cast dlsym's object pointer to a function pointer;\n * copying its bytes is what POSIX guarantees to work.\n */\nstatic inline const char *voxshm_api_load(void *lib, voxshm_api *api) {\n  void *sym;\n",
    );
    let load = |h: &mut String, name: &str| {
        h.push_str(&format!(
            "  sym = dlsym(lib, \"{name}\");\n  if (sym == NULL) return \"{name}\";\n  memcpy(&api->{f}, &sym, sizeof api->{f});\n",
            f = &name["voxshm_".len()..]
        ));
    };
    load(&mut h, "voxshm_abi_version");
    h.push_str("  if (api->abi_version() != VOXSHM_ABI_VERSION) return \"VOXSHM_ABI_VERSION\";\n");
    for (_, name, _) in &fns {
        if name != "voxshm_abi_version" {
            load(&mut h, name);
        }
    }
    h.push_str("  return NULL;\n}\n\n#ifdef __cplusplus\n}  /* extern \"C\" */\n#endif\n\n#endif /* VOXSHM_DLOPEN_H */\n");
    h
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
