"""Where steps run: the host (`direct`), Docker and Podman, behind one `Runtime` protocol."""
