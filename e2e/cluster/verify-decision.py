#!/usr/bin/env python3
"""Verifies a kubefence decision token the way docs/decision-format.md says a
node does, independently of the Rust code: three canonical unpadded base64url
parts, the exact header, kid = RFC 7638 thumbprint of the given public key,
an Ed25519 signature over the first two parts as they appear, ver 1.
Prints the claims as JSON on success; exits 1 with the reason otherwise.

  verify-decision.py PUBLIC_KEY_PEM TOKEN
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64d(s):
    if "=" in s or any(c in s for c in "+/"):
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if b64e(raw) != s:
        raise ValueError("non-canonical base64url")
    return raw


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    pem, token = sys.argv[1], sys.argv[2].strip()
    pub = serialization.load_pem_public_key(open(pem, "rb").read())
    if not isinstance(pub, Ed25519PublicKey):
        sys.exit("public key is not Ed25519")
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64e(raw)}, separators=(",", ":"))
    kid = b64e(hashlib.sha256(jwk.encode()).digest())
    parts = token.split(".")
    if len(parts) != 3:
        sys.exit("token has %d parts, not 3" % len(parts))
    header = json.loads(b64d(parts[0]))
    want = {"alg": "EdDSA", "kid": kid, "typ": "kubefence-decision+jws"}
    if header != want:
        sys.exit("header %r != %r" % (header, want))
    try:
        pub.verify(b64d(parts[2]), (parts[0] + "." + parts[1]).encode())
    except InvalidSignature:
        sys.exit("signature does not verify with %s" % pem)
    claims = json.loads(b64d(parts[1]))
    if claims.get("ver") != 1:
        sys.exit("ver is %r" % claims.get("ver"))
    print(json.dumps(claims, sort_keys=True))


if __name__ == "__main__":
    main()
