//! The committed C header matches the code, and it compiles on its own.

mod cbuild;

#[test]
fn committed_header_matches_the_code() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/voxshm.h"));
    let committed = std::fs::read_to_string(cbuild::root().join("include/voxshm.h"))
        .expect("read include/voxshm.h");
    assert!(
        generated == committed,
        "include/voxshm.h is out of date with src/ffi; regenerate it with: VOXSHM_UPDATE_HEADER=1 cargo build"
    );
}

fn check(name: &str, body: &str, std: &str, cpp: bool) {
    let dir = cbuild::scratch("header");
    let src = dir.join(name);
    std::fs::write(&src, body).expect("write test source");
    let o = cbuild::compile_only(&src, std, cpp, &[]);
    assert!(
        o.status.success(),
        "{name} ({std}) failed to compile:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn header_compiles_alone_in_c_and_cpp() {
    // Included twice: the include guard must hold.
    let body = "#include \"voxshm.h\"\n#include \"voxshm.h\"\nint main(void) { return VOXSHM_OK + (int)sizeof(voxshm_view) * 0; }\n";
    check("alone_c11.c", body, "c11", false);
    check("alone_c99.c", body, "c99", false);
    check("alone_cpp17.cpp", body, "c++17", true);
    check("alone_cpp20.cpp", body, "c++20", true);
}
