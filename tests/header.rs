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
fn committed_dlopen_header_matches_the_code() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/voxshm_dlopen.h"));
    let committed = std::fs::read_to_string(cbuild::root().join("include/voxshm_dlopen.h"))
        .expect("read include/voxshm_dlopen.h");
    assert!(
        generated == committed,
        "include/voxshm_dlopen.h is out of date; regenerate it with: VOXSHM_UPDATE_HEADER=1 cargo build"
    );
}

#[test]
fn dlopen_header_compiles_alone_and_covers_every_function() {
    let body = "#include \"voxshm_dlopen.h\"\n#include \"voxshm_dlopen.h\"\nint main(int argc, char **argv) { voxshm_api api; (void)argv; return argc > 5 && voxshm_api_load(NULL, &api) != NULL; }\n";
    check("dlopen_c11.c", body, "c11", false);
    check("dlopen_cpp17.cpp", body, "c++17", true);
    let header = std::fs::read_to_string(cbuild::root().join("include/voxshm.h")).unwrap();
    let dl = std::fs::read_to_string(cbuild::root().join("include/voxshm_dlopen.h")).unwrap();
    let (_, code) = comments_and_code(&header);
    for f in names(&code)
        .into_iter()
        .filter(|n| code.contains(&format!(" {n}(")))
    {
        assert!(
            dl.contains(&format!("dlsym(lib, \"{f}\")")),
            "voxshm_dlopen.h does not load {f}"
        );
    }
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

/// Splits C text into its comments and its code.
fn comments_and_code(text: &str) -> (String, String) {
    let (mut comments, mut code) = (String::new(), String::new());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..]
            .find("*/")
            .map_or(rest.len(), |e| start + e + 2);
        comments.push_str(&rest[start..end]);
        comments.push('\n');
        rest = &rest[end..];
    }
    code.push_str(rest);
    (comments, code)
}

/// The `voxshm_*` and `VOXSHM_*` words of a text.
fn names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if word(b[i]) && (i == 0 || !word(b[i - 1])) {
            let j = (i..b.len()).find(|&j| !word(b[j])).unwrap_or(b.len());
            let w = &text[i..j];
            // "VOXSHM_REGISTRY_*" names a family, not one name.
            let family = b.get(j) == Some(&b'*') || w.ends_with('_');
            if (w.starts_with("voxshm_") || w.starts_with("VOXSHM_")) && !family {
                out.insert(w.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Every function, type and constant a header comment names exists.
#[test]
fn every_name_the_header_documents_exists() {
    let header = std::fs::read_to_string(cbuild::root().join("include/voxshm.h"))
        .expect("read include/voxshm.h");
    let (comments, code) = comments_and_code(&header);
    let declared = names(&code);
    // Environment variables, and the string voxshm_status_name gives for
    // a number that is no status: not C names.
    let env = [
        "VOXSHM_LOG",
        "VOXSHM_UPDATE_HEADER",
        "VOXSHM_UNKNOWN_STATUS",
    ];
    let missing: Vec<String> = names(&comments)
        .into_iter()
        .filter(|n| !declared.contains(n) && !env.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "include/voxshm.h's comments name what it does not declare: {missing:?}"
    );
}

/// What a comment says is called is a function (the header once said
/// "before calling `voxshm_attachments_stats`", a struct).
#[test]
fn what_the_header_says_to_call_is_a_function() {
    let header = std::fs::read_to_string(cbuild::root().join("include/voxshm.h"))
        .expect("read include/voxshm.h");
    let (comments, code) = comments_and_code(&header);
    let functions: std::collections::BTreeSet<String> = names(&code)
        .into_iter()
        .filter(|n| code.contains(&format!("{n}(")))
        .collect();
    let comments = comments
        .replace(['\n', '*'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut wrong = Vec::new();
    for (i, _) in comments.match_indices("calling `") {
        let rest = &comments[i + "calling `".len()..];
        let name = &rest[..rest.find('`').unwrap_or(0)];
        if name.starts_with("voxshm_") && !functions.contains(name) {
            wrong.push(name.to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "the header says to call what is not a function: {wrong:?}"
    );
}
