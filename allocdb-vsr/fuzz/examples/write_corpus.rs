//! Writes the seed corpus: `corpus/<target>/<name>` for every seed of `allocdb_fuzz::seeds`.
//! Run from `allocdb-vsr/fuzz`: `cargo run --no-default-features --example write_corpus`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in allocdb_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
