# The mcpstorm image: one static binary and nothing else (FROM scratch), for the Kubernetes
# manifests of `mcpstorm kubernetes` and any other engine that runs containers.
#
# Build it with tools/build-image.sh, which builds the static binary on this host first
# (glibc, +crt-static: the only toolchain here; no musl target to download) and then this
# image. The binary needs no file from an OS image: TLS roots come from --cacert or the
# pod's mounted /etc/ssl/certs, host names resolve through /etc/hosts and /etc/resolv.conf
# (which the container runtime mounts) by glibc's built-in files and dns lookups.
FROM scratch
COPY target/static/x86_64-unknown-linux-gnu/release/mcpstorm /mcpstorm
# The load engine and the server need their open-file limit and io_uring (see the
# manifests' seccomp profile); nothing here runs as a shell.
ENTRYPOINT ["/mcpstorm"]
CMD ["--help"]
