fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=assay.proto");
    println!("cargo:rerun-if-changed=containerd");
    tonic_prost_build::configure().compile_protos(&["assay.proto"], &["."])?;
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
