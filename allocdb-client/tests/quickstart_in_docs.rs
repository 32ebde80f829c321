//! The quickstart that README.md and docs/client.md show is `examples/quickstart.rs`, word
//! for word: the example is compiled (and run against a cluster by the server's
//! `client_examples` test), so the copies in the docs compile and run too.

use std::path::Path;

#[test]
fn the_docs_show_the_compiled_quickstart_verbatim() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let quickstart = std::fs::read_to_string(crate_dir.join("examples/quickstart.rs"))
        .expect("examples/quickstart.rs");
    let block = format!("```rust\n{quickstart}```\n");
    for doc in ["../README.md", "../docs/client.md"] {
        let text = std::fs::read_to_string(crate_dir.join(doc)).expect("the document");
        assert!(
            text.contains(&block),
            "{doc} does not show examples/quickstart.rs verbatim in a ```rust block"
        );
        assert!(
            text.contains("allocdb-client = { path = "),
            "{doc} does not show the dependency line"
        );
    }
}
