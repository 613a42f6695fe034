# shellcheck shell=bash
# Writes a single-layer OCI image layout tarball (importable with
# `ctr -n k8s.io images import`) from a root filesystem tarball, without a
# registry or any image tool: sha256 digests and JSON written by hand.
#
# kf_oci_image ROOTFS_TAR NAME OUT_TAR CMD_JSON [ENV_JSON] [ENTRYPOINT_JSON]
#   NAME      full reference, e.g. kubefence.test/busybox:1
#   CMD_JSON  JSON array, e.g. '["/bin/sh"]'
#   ENV_JSON  JSON array of "K=V" (default: a standard PATH)
# The layer is an uncompressed tar (application/vnd.oci.image.layer.v1.tar),
# so its digest is also its diff_id.

_kf_sha() { sha256sum "$1" | cut -d' ' -f1; }
_kf_size() { stat -c %s "$1"; }

kf_oci_image() {
  local rootfs="$1" name="$2" out="$3" cmd="$4"
  local env="${5:-[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]}"
  local entrypoint="${6:-null}"
  local arch work blobs ldig lsize cdig csize mdig msize tag
  arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
  work="$(mktemp -d "${out}.work.XXXXXX")"
  blobs="$work/blobs/sha256"
  mkdir -p "$blobs"

  ldig="$(_kf_sha "$rootfs")"; lsize="$(_kf_size "$rootfs")"
  cp "$rootfs" "$blobs/$ldig"

  printf '{"architecture":"%s","os":"linux","config":{"Env":%s,"Entrypoint":%s,"Cmd":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"kubefence scripts/provision-images.sh"}]}' \
    "$arch" "$env" "$entrypoint" "$cmd" "$ldig" >"$work/config.json"
  cdig="$(_kf_sha "$work/config.json")"; csize="$(_kf_size "$work/config.json")"
  mv "$work/config.json" "$blobs/$cdig"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cdig" "$csize" "$ldig" "$lsize" >"$work/manifest.json"
  mdig="$(_kf_sha "$work/manifest.json")"; msize="$(_kf_size "$work/manifest.json")"
  mv "$work/manifest.json" "$blobs/$mdig"

  tag="${name##*:}"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$mdig" "$msize" "$arch" "$name" "$tag" >"$work/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$work" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

# Reproducible tar of a directory's contents (as root-owned files).
kf_tar_dir() {
  local dir="$1" out="$2"; shift 2
  tar --sort=name --numeric-owner --mtime=@0 --xattrs --xattrs-include='security.capability' \
    "$@" -C "$dir" -cf "$out" .
}
