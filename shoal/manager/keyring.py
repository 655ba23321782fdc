"""The cluster's secrets in a manager's memory, and autolock.

Two keys let a holder take over a cluster: the CA key (it signs identities)
and the seal key (it opens stored registry credentials). They live in their
own etcd object, ``ClusterKeys``, apart from the cluster object, as one
``KeyMaterial``:

- autolock off: the material is stored plain. Read access to etcd is then
  full control of the cluster (docs/security.md says so).
- autolock on: the material is sealed (AES-256-GCM) under the *unlock key*,
  32 random bytes shown to the operator once as ``SHOALKEY-1-<base64>``; etcd
  never holds it. A manager that starts needs it (``--unlock-key-file`` or
  ``shoal cluster unlock``) and serves nothing else until then.

A running manager keeps the plain material in memory. When the stored object
changes it compares digests: a new wrapping of the same keys (autolock turned
on or off elsewhere) changes nothing here; new keys (a CA rotation) are
opened with the unlock key this manager was given, or, if it has none, leave
it locked until it is unlocked again.

Errors: ``Locked`` when a secret is asked for while locked; ``ValueError``
for a malformed or wrong unlock key.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal.manager.ca.authority import CertificateAuthority
from shoal.manager.store import View
from shoal.protos import objects_pb2 as pb
from shoal.rules.errors import InvalidRequest

log = logging.getLogger(__name__)

UNLOCK_KEY_PREFIX = "SHOALKEY-1-"
_NONCE = 12
_AAD = b"shoal cluster keys v1\0"


class Locked(Exception):
    """This manager does not hold the cluster's keys: it waits to be unlocked."""

    def __init__(self) -> None:
        super().__init__(
            "this manager is locked (the cluster has autolock on): unlock it with "
            "`shoal cluster unlock` (the unlock key on stdin), or restart it with --unlock-key-file"
        )


def new_unlock_key() -> str:
    return UNLOCK_KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def parse_unlock_key(text: str) -> bytes:
    text = text.strip()
    shape = f"expected {UNLOCK_KEY_PREFIX}<43 characters of base64>"
    if not text.startswith(UNLOCK_KEY_PREFIX):
        raise InvalidRequest(f"unlock key: {shape}")
    body = text[len(UNLOCK_KEY_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise InvalidRequest(f"unlock key: {shape}") from None
    if len(raw) != 32:
        raise InvalidRequest(f"unlock key: {shape}")
    return raw


def material_digest(material: pb.KeyMaterial) -> bytes:
    return sha256(material.SerializeToString(deterministic=True)).digest()


def wrap(cluster_id: str, material: pb.KeyMaterial, unlock_key: bytes | None) -> pb.ClusterKeys:
    """A ClusterKeys holding material: plain, or sealed under unlock_key."""
    keys = pb.ClusterKeys(material_digest=material_digest(material))
    keys.meta.id = cluster_id
    plain = material.SerializeToString(deterministic=True)
    if unlock_key is None:
        keys.material = plain
    else:
        nonce = os.urandom(_NONCE)
        keys.autolock = True
        keys.material = nonce + AESGCM(unlock_key).encrypt(nonce, plain, _AAD + cluster_id.encode())
    return keys


def _open(keys: pb.ClusterKeys, unlock_key: bytes | None) -> pb.KeyMaterial:
    if not keys.autolock:
        plain = keys.material
    else:
        if unlock_key is None:
            raise Locked()
        sealed = keys.material
        try:
            plain = AESGCM(unlock_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], _AAD + keys.meta.id.encode())
        except InvalidTag:
            raise InvalidRequest("unlock key: wrong key (it does not open this cluster's keys)") from None
    material = pb.KeyMaterial()
    material.ParseFromString(plain)
    return material


class KeyRing:
    """What this manager holds of the cluster's secrets, kept in step with
    the ClusterKeys object of its view."""

    def __init__(self, view: View, unlock_key: bytes | None = None) -> None:
        self._view = view
        self._unlock_key = unlock_key
        self._material: pb.KeyMaterial | None = None
        self._seen_version = -1
        self._ca: tuple[bytes, bytes, CertificateAuthority] | None = None

    @property
    def locked(self) -> bool:
        self.load(self._view.cluster_keys())
        return self._material is None

    @property
    def unlock_key(self) -> bytes | None:
        return self._unlock_key

    def load(self, keys: pb.ClusterKeys | None) -> None:
        """Take in the stored keys (cheap when they did not change)."""
        if keys is None or keys.meta.version == self._seen_version:
            return
        self._seen_version = keys.meta.version
        held = self._material
        if held is not None and hmac.compare_digest(material_digest(held), keys.material_digest):
            return  # the same keys, wrapped anew
        try:
            self._material = _open(keys, self._unlock_key)
        except (Locked, ValueError) as err:
            if held is not None:
                log.warning("the cluster's keys changed and this manager cannot open them: %s", err)
            self._material = None

    def unlock(self, unlock_key: bytes) -> None:
        """Open the stored keys with unlock_key (ValueError if it is wrong)."""
        keys = self._view.cluster_keys()
        if keys is None:
            raise InvalidRequest("unlock key: the cluster has no keys yet")
        material = _open(keys, unlock_key)
        self._unlock_key = unlock_key
        self._material = material
        self._seen_version = keys.meta.version

    def remember_unlock_key(self, unlock_key: bytes | None) -> None:
        """After this manager turned autolock on (key) or off (None)."""
        self._unlock_key = unlock_key

    def material(self) -> pb.KeyMaterial:
        self.load(self._view.cluster_keys())
        if self._material is None:
            raise Locked()
        return self._material

    def seal_key(self) -> bytes:
        return self.material().seal_key

    def ca(self) -> CertificateAuthority:
        """The cluster CA: the current root with its key."""
        key = self.material().ca_key_pem
        cluster = self._view.cluster()
        if cluster is None:
            raise Locked()
        cert = cluster.root_ca.cert_pem
        if self._ca is None or self._ca[0] != cert or self._ca[1] != key:
            self._ca = (cert, key, CertificateAuthority(cert, key))
        return self._ca[2]
