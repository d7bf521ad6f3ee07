fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=assay.proto");
    tonic_prost_build::configure().compile_protos(&["assay.proto"], &["."])?;
    Ok(())
}
