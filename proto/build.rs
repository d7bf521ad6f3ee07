fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=assay.proto");
    println!("cargo:rerun-if-changed=containerd");
    // The encoded descriptors of Assay's API, for gRPC server reflection
    // (grpcurl and other clients that work without the .proto file).
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("assay_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .compile_protos(&["assay.proto"], &["."])?;
    // containerd's API (subset), client side only: the attestor watches images
    // and containers through it.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(
            &[
                "containerd/events.proto",
                "containerd/event_types.proto",
                "containerd/images.proto",
                "containerd/containers.proto",
                "containerd/content.proto",
                "containerd/tasks.proto",
            ],
            &["containerd"],
        )?;
    Ok(())
}
