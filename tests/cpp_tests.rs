//! The C++ wrapper: compiles on its own, and its test program passes plain
//! and under the address and undefined-behaviour sanitizers.

mod cbuild;

use std::process::Command;

use cbuild::Flavor;

#[test]
fn hpp_compiles_alone_in_cpp17_and_cpp20() {
    let dir = cbuild::scratch("hpp");
    let src = dir.join("alone.cpp");
    std::fs::write(
        &src,
        // The classes a user's header may declare ahead (as it could
        // before `allocation` gained a fan-out sibling) stay classes.
        "namespace voxshm { class allocation; class registry; class attachments; class view; }\n\
         struct pending { voxshm::allocation* a; };\n\
         #include \"voxshm.hpp\"\n#include \"voxshm.hpp\"\n\
         int main() { pending p{nullptr}; (void)p; return voxshm::channel_pair().first < 0; }\n",
    )
    .expect("write source");
    for std in ["c++17", "c++20"] {
        let o = cbuild::compile_only(&src, std, true, &[]);
        assert!(
            o.status.success(),
            "voxshm.hpp ({std}):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn wrapper_test(flavor: Flavor, std: &str) {
    let dir = cbuild::scratch("cpp");
    let src = cbuild::root().join("ffi-tests/test_cpp_wrapper.cpp");
    let exe = dir.join(format!("test_cpp_wrapper_{std}_{flavor:?}").replace('+', "p"));
    cbuild::build(&[src], &exe, std, flavor, &[]);
    let o = cbuild::run_ok(Command::new(&exe).env("ASAN_OPTIONS", "detect_leaks=1"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("test_cpp_wrapper: ok"));
}

#[test]
fn cpp_wrapper_cpp17() {
    wrapper_test(Flavor::Plain, "c++17");
}

#[test]
fn cpp_wrapper_cpp20_span() {
    wrapper_test(Flavor::Plain, "c++20");
}

#[test]
fn cpp_wrapper_sanitized() {
    wrapper_test(Flavor::Sanitized, "c++17");
}

#[test]
fn cpp_wrapper_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: skipping the valgrind run of the C++ wrapper test");
        return;
    }
    let dir = cbuild::scratch("cpp");
    let src = cbuild::root().join("ffi-tests/test_cpp_wrapper.cpp");
    let exe = cbuild::build(
        &[src],
        &dir.join("test_cpp_wrapper_vg"),
        "c++17",
        Flavor::Plain,
        &[],
    );
    cbuild::run_ok(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=1",
            ])
            .arg(&exe),
    );
}
