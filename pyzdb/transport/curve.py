"""CURVE keys, client roles (read-write or read-only) and the ZAP authenticator that maps a client key to its role.

>>> paths = create_keys('keys', ['alice'], ['bob'])          # doctest: +SKIP
>>> db, _ = client(uri, curve_server_key='keys/server.key',  # doctest: +SKIP
...                curve_keypair='keys/private/alice.key_secret')

Layout of a key directory (``pyzdb keygen DIR``)::

    DIR/server.key            the server's public key: give it to every client
    DIR/server.key_secret     the server's key pair: keep it on the broker's host only
    DIR/clients/rw/NAME.key   public keys allowed to read and write
    DIR/clients/ro/NAME.key   public keys allowed to read only
    DIR/private/NAME.key_secret  a client's key pair: give it to that client only

A key is allowed when its public key file is in ``clients/rw`` or
``clients/ro`` (read-only wins when it is in both); the directories are read
again at every new connection, so deleting a file revokes the key for new
connections. The authenticator's User-Id is ``"rw:<z85 key>"`` or
``"ro:<z85 key>"``; the broker turns it into a role frame for the server.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pyzdb.errors import AuthError

ROLES = ("rw", "ro")
ZAP_DOMAIN = "pyzdb"
# The frame the broker puts just before a request's payload when CURVE is on.
ROLE_FRAMES = {"rw": b"pyzdb-role:rw", "ro": b"pyzdb-role:ro"}


def _keys_file(directory: str, name: str, suffix: str) -> str:
    return os.path.join(directory, f"{name}.{suffix}")


def create_server_keys(directory: str) -> str:
    """Create ``server.key`` and ``server.key_secret`` in ``directory`` (kept if present); return the public path."""
    os.makedirs(directory, exist_ok=True)
    public = _keys_file(directory, "server", "key")
    if not os.path.exists(public):
        zmq.auth.create_certificates(directory, "server")
        os.chmod(_keys_file(directory, "server", "key_secret"), 0o600)
    return public


def create_client_keys(directory: str, name: str, role: str) -> str:
    """Create a client key pair ``private/NAME.key_secret`` and allow its public key as ``role``; return the secret path."""
    if role not in ROLES:
        raise AuthError(f"role must be one of {ROLES}, not {role!r}")
    if not name or os.sep in name or name.startswith("."):
        raise AuthError(f"client key name {name!r} must be a plain file name")
    private = os.path.join(directory, "private")
    allowed = os.path.join(directory, "clients", role)
    os.makedirs(private, mode=0o700, exist_ok=True)
    os.makedirs(allowed, exist_ok=True)
    public_path, secret_path = zmq.auth.create_certificates(private, name)
    os.chmod(secret_path, 0o600)
    shutil.move(public_path, _keys_file(allowed, name, "key"))
    return secret_path


def create_keys(directory: str, rw_names: list[str] = (), ro_names: list[str] = ()) -> dict[str, str]:
    """Server keys plus one key pair per client name; returns {name: secret file path, 'server': public path}."""
    paths = {"server": create_server_keys(directory)}
    for role, names in (("rw", rw_names), ("ro", ro_names)):
        for name in names:
            paths[name] = create_client_keys(directory, name, role)
    return paths


def load_public_key(key: bytes | str) -> bytes:
    """A z85 public key given as the key itself (40 chars) or as the path of a ``.key`` or ``.key_secret`` file."""
    if isinstance(key, bytes) and len(key) == 40:
        return key
    if isinstance(key, str) and len(key) == 40 and not os.path.exists(key):
        return key.encode("ascii")
    try:
        public, _ = zmq.auth.load_certificate(os.fspath(key))
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read a CURVE public key from {key!r}: {exc}") from None
    return public


def load_keypair(keypair: tuple | str) -> tuple[bytes, bytes]:
    """A (public, secret) z85 key pair given as a tuple or as the path of a ``.key_secret`` file."""
    if isinstance(keypair, (tuple, list)) and len(keypair) == 2:
        public, secret = (k.encode("ascii") if isinstance(k, str) else k for k in keypair)
        return public, secret
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(keypair))
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read a CURVE key pair from {keypair!r}: {exc}") from None
    if not secret:
        raise AuthError(f"{keypair!r} holds no secret key (use the .key_secret file)")
    return public, secret


def client_options(server_key: bytes | str, keypair: tuple | str) -> dict:
    """Socket options that make a client socket speak CURVE to a server with ``server_key``."""
    public, secret = load_keypair(keypair)
    return {zmq.CURVE_SERVERKEY: load_public_key(server_key), zmq.CURVE_PUBLICKEY: public,
            zmq.CURVE_SECRETKEY: secret}


def server_options(keys_dir: str) -> dict:
    """Socket options of a CURVE server socket, from ``keys_dir/server.key_secret``."""
    public, secret = load_keypair(_keys_file(keys_dir, "server", "key_secret"))
    return {zmq.CURVE_SERVER: 1, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret,
            zmq.ZAP_DOMAIN: ZAP_DOMAIN.encode()}


def role_of(user_id: str | None) -> str:
    """The role a ZAP User-Id names ('ro' only for an explicit read-only key)."""
    return "ro" if user_id and user_id.startswith("ro:") else "rw"


class RoleAuthenticator(ThreadAuthenticator):
    """A ZAP handler on a thread that admits the keys of ``clients/rw`` and ``clients/ro`` and names their role.

    >>> auth = RoleAuthenticator(zmq.Context.instance(), 'keys'); auth.start()   # doctest: +SKIP
    """

    def __init__(self, context: zmq.Context, keys_dir: str) -> None:
        super().__init__(context)
        self.keys_dir = keys_dir
        for role in ROLES:
            if not os.path.isdir(os.path.join(keys_dir, "clients", role)):
                os.makedirs(os.path.join(keys_dir, "clients", role), exist_ok=True)

    def start(self) -> None:
        """Start the ZAP thread and install the key check for every domain."""
        super().start()
        self.configure_curve_callback(ZAP_DOMAIN, self)

    def role(self, z85_key: bytes) -> str | None:
        """'ro', 'rw' or None (unknown key) for a client's z85 public key; the directories are read now."""
        for role in ("ro", "rw"):   # read-only wins when a key is in both
            if zmq.auth.load_certificates(os.path.join(self.keys_dir, "clients", role)).get(z85_key):
                return role
        return None

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """Admit a connection only for a known key."""
        return self.role(z85_key) is not None

    def curve_user_id(self, client_public_key: bytes) -> str:
        """``'rw:<z85>'`` or ``'ro:<z85>'``: the role travels in the User-Id of every message."""
        z85_key = zmq.utils.z85.encode(client_public_key)
        return f"{self.role(z85_key) or 'ro'}:{z85_key.decode('ascii')}"


def is_loopback(uri: str) -> bool:
    """True for inproc/ipc addresses and tcp addresses on 127.0.0.0/8, ::1 or localhost."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp":
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False    # '*', an interface name or a host name: assume it is reachable from outside
