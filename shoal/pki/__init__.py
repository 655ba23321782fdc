"""Certificates, join tokens and TLS: what the manager, the agent and the CLI share.

The trust model, as data flows (docs/security.md has the whole picture):

- The cluster CA is the only source of identity. Every certificate it signs
  names its holder in the subject (CN = node ID, OU = role, O = cluster ID).
  A server believes a caller's identity only after checking, with the CA's
  public key, that the CA itself signed the caller's certificate
  (``certs.verified_identity``); names are never compared to decide trust.
- A joining node has no certificate yet, and grpcio cannot make client
  certificates optional, so the node presents a *join certificate*: signed by
  a key derived from the join token (``join``). Only holders of a current token
  can make one, so nobody else completes a TLS handshake at all; and a join
  certificate carries no identity, it reaches only the NodeCA call, which
  checks the token again and signs the node's CSR.
- Tokens are ``SHOAL-1-<CA digest>-<secret>`` (``tokens``): the digest lets a
  joining node check the manager's CA before trusting it, the secret admits it.
- ``tls`` holds the transport side: channel options, server limits, reading
  a manager's chain before trusting it, and the join probe.
"""

from __future__ import annotations

from shoal.pki.certs import (
    DIGEST_LEN,
    ISSUE_BACKDATE,
    ROLE_ADMIN,
    ROLE_MANAGER,
    ROLE_WORKER,
    ROLES,
    SERVER_NAME,
    CertInfo,
    Identity,
    cert_digest,
    cert_info,
    cert_subject,
    identity_from_cert,
    issuer_of,
    load_private_key,
    new_csr_pem,
    new_private_key_pem,
    renewal_delay,
    self_signed,
    split_pems,
    verified_identity,
)
from shoal.pki.files import BadBundle, TLSFiles, check_tls_files, read_tls_dir, write_tls_dir
from shoal.pki.join import join_client_bundle, join_root_pem
from shoal.pki.tls import (
    CHANNEL_OPTIONS,
    ServerLimits,
    channel_credentials,
    fetch_remote_chain,
    join_accepted,
    peer_address,
    peer_cert_pem,
    server_options,
)
from shoal.pki.tokens import (
    SECRET_LEN,
    InvalidJoinToken,
    JoinToken,
    ca_matching_token,
    new_join_token,
    parse_join_token,
    verify_ca_against_token,
)

# What a manager says to a node removed with `node rm`; its agent knows it by this.
REMOVED_PHRASE = "was removed from the cluster"

__all__ = [
    "CHANNEL_OPTIONS",
    "DIGEST_LEN",
    "ISSUE_BACKDATE",
    "REMOVED_PHRASE",
    "ROLES",
    "ROLE_ADMIN",
    "ROLE_MANAGER",
    "ROLE_WORKER",
    "SECRET_LEN",
    "SERVER_NAME",
    "BadBundle",
    "CertInfo",
    "Identity",
    "InvalidJoinToken",
    "JoinToken",
    "ServerLimits",
    "TLSFiles",
    "ca_matching_token",
    "cert_digest",
    "cert_info",
    "cert_subject",
    "channel_credentials",
    "check_tls_files",
    "fetch_remote_chain",
    "identity_from_cert",
    "issuer_of",
    "join_accepted",
    "join_client_bundle",
    "join_root_pem",
    "load_private_key",
    "new_csr_pem",
    "new_join_token",
    "new_private_key_pem",
    "parse_join_token",
    "peer_address",
    "peer_cert_pem",
    "read_tls_dir",
    "renewal_delay",
    "self_signed",
    "server_options",
    "split_pems",
    "verified_identity",
    "verify_ca_against_token",
    "write_tls_dir",
]
