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
    DIR/servers/NAME.key      public keys of servers (RW, replicas, ``pyzdb status``): the server role
    DIR/servers/private/NAME.key_secret  a server-role key pair (``default`` is always made)

A client key is allowed on the fronts when its public key file is in
``clients/rw`` or ``clients/ro`` (read-only wins when it is in both). The
sockets only servers use (the broker's back ends and health socket, the
RW server's change feed, the status feed ``pyzdb status`` listens on) are in
the ZAP domain ``SERVER_DOMAIN`` and admit only keys in ``servers/``. The
directories are read again at every new connection, so deleting a file
revokes the key for new connections. The authenticator's User-Id is
``"rw:<z85 key>"``, ``"ro:<z85 key>"`` or ``"sv:<z85 key>"``; the broker
turns it into a role frame (role and key) for the server.
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
ZAP_DOMAIN = "pyzdb"                 # the client fronts: keys of clients/rw and clients/ro
SERVER_DOMAIN = "pyzdb-servers"      # back ends, health, feeds: keys of servers/ only
DEFAULT_SERVER_KEY = "default"
# The frame the broker puts just before a request's payload when CURVE is on starts with one of these;
# ``role_frame`` appends ``:`` and the client's z85 public key.
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
    _check_name(name, "client")
    private = os.path.join(directory, "private")
    allowed = os.path.join(directory, "clients", role)
    os.makedirs(private, mode=0o700, exist_ok=True)
    os.makedirs(allowed, exist_ok=True)
    public_path, secret_path = zmq.auth.create_certificates(private, name)
    os.chmod(secret_path, 0o600)
    shutil.move(public_path, _keys_file(allowed, name, "key"))
    return secret_path


def _check_name(name: str, what: str) -> None:
    if not name or os.sep in name or name.startswith("."):
        raise AuthError(f"{what} key name {name!r} must be a plain file name")


def server_role_secret(directory: str, name: str = DEFAULT_SERVER_KEY) -> str:
    """The path of the server-role key pair ``NAME`` in a key directory."""
    return _keys_file(os.path.join(directory, "servers", "private"), name, "key_secret")


def create_server_role_keys(directory: str, name: str = DEFAULT_SERVER_KEY) -> str:
    """Create a server-role key pair (kept if present): public ``servers/NAME.key``, secret in ``servers/private``."""
    _check_name(name, "server")
    secret = server_role_secret(directory, name)
    if os.path.exists(secret):
        return secret
    private = os.path.join(directory, "servers", "private")
    os.makedirs(private, mode=0o700, exist_ok=True)
    os.chmod(private, 0o700)
    public_path, secret_path = zmq.auth.create_certificates(private, name)
    os.chmod(secret_path, 0o600)
    shutil.move(public_path, _keys_file(os.path.join(directory, "servers"), name, "key"))
    return secret_path


def create_keys(directory: str, rw_names: list[str] = (), ro_names: list[str] = (),
                server_names: list[str] = ()) -> dict[str, str]:
    """Server keys, the server-role key pairs (``default`` and ``server_names``) and one key pair per client name.

    Returns {name: secret file path, 'server': public path}; server-role names are given as ``servers/NAME``.
    """
    paths = {"server": create_server_keys(directory)}
    for name in [DEFAULT_SERVER_KEY, *server_names]:
        paths[f"servers/{name}"] = create_server_role_keys(directory, name)
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


def server_options(keys_dir: str, domain: str = ZAP_DOMAIN, keypair: str | None = None) -> dict:
    """Socket options of a CURVE server socket, from ``keys_dir/server.key_secret`` (or ``keypair``).

    ``domain`` names who may connect: clients (``ZAP_DOMAIN``) or servers (``SERVER_DOMAIN``).
    """
    public, secret = load_keypair(keypair or _keys_file(keys_dir, "server", "key_secret"))
    # ZAP_ENFORCE_DOMAIN: with no ZAP handler running libzmq would admit every key; this refuses them instead
    return {zmq.CURVE_SERVER: 1, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret,
            zmq.ZAP_DOMAIN: domain.encode(), zmq.ZAP_ENFORCE_DOMAIN: 1}


def server_role_options(keys_dir: str, name: str = DEFAULT_SERVER_KEY, peer: str | None = None) -> dict:
    """Options of a server's connecting socket: its server-role key pair ``name``, expecting the broker's key.

    With ``peer`` it expects the server-role key ``servers/PEER.key`` instead (the RW server's change
    feed, the status feed ``pyzdb status`` binds).
    """
    server_key = _keys_file(os.path.join(keys_dir, "servers"), peer, "key") if peer else \
        _keys_file(keys_dir, "server", "key")
    return client_options(server_key, _existing_server_role_secret(keys_dir, name))


def server_role_bind_options(keys_dir: str, name: str = DEFAULT_SERVER_KEY) -> dict:
    """Options of a socket a server-role process binds (change feed, status feed): only server keys may connect."""
    return server_options(keys_dir, SERVER_DOMAIN, _existing_server_role_secret(keys_dir, name))


def _existing_server_role_secret(keys_dir: str, name: str) -> str:
    path = server_role_secret(keys_dir, name)
    if not os.path.exists(path):
        raise AuthError(f"no server-role key pair {path}: servers, replicas and `pyzdb status` need one under "
                        f"CURVE (make it with `pyzdb keygen {keys_dir} --server {name}`; existing keys are kept)")
    return path


def role_of(user_id: str | None) -> str:
    """The role a ZAP User-Id names: 'rw' only for an explicit read-write key, else 'ro'."""
    return "rw" if user_id and user_id.startswith("rw:") else "ro"


def role_frame(user_id: str | None) -> bytes:
    """The frame the relay puts before a request: ``pyzdb-role:<role>:<z85 key>`` from the ZAP User-Id."""
    key = user_id.split(":", 1)[1] if user_id and ":" in user_id else ""
    return ROLE_FRAMES[role_of(user_id)] + b":" + key.encode("ascii", "replace")


def key_of_role_frame(frame: bytes) -> bytes | None:
    """The client's z85 key a relay's role frame names; None when the frame is not a role frame."""
    for prefix in ROLE_FRAMES.values():
        if frame.startswith(prefix + b":") and len(frame) > len(prefix) + 1:
            return frame[len(prefix) + 1:]
    return None


class RoleAuthenticator(ThreadAuthenticator):
    """A ZAP handler on a thread: clients' keys on the fronts, server-role keys on the servers' sockets.

    >>> auth = RoleAuthenticator(zmq.Context.instance(), 'keys'); auth.start()   # doctest: +SKIP

    One per context (zmq allows one ZAP handler per context): ``shared_authenticator`` hands it out.
    """

    def __init__(self, context: zmq.Context, keys_dir: str) -> None:
        super().__init__(context)
        self.keys_dir = keys_dir
        for folder in ("clients/rw", "clients/ro", "servers"):
            os.makedirs(os.path.join(keys_dir, folder), exist_ok=True)

    def start(self) -> None:
        """Start the ZAP thread and install the key check for both domains."""
        super().start()
        self.configure_curve_callback(ZAP_DOMAIN, self)
        self.configure_curve_callback(SERVER_DOMAIN, self)

    def _listed(self, folder: str, z85_key: bytes) -> bool:
        return bool(zmq.auth.load_certificates(os.path.join(self.keys_dir, folder)).get(z85_key))

    def role(self, z85_key: bytes) -> str | None:
        """'ro', 'rw' or None (not a client key) for a z85 public key; the directories are read now."""
        for role in ("ro", "rw"):   # read-only wins when a key is in both
            if self._listed(os.path.join("clients", role), z85_key):
                return role
        return None

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """Admit a client key on the fronts, only a server-role key on the servers' sockets."""
        if domain == SERVER_DOMAIN:
            return self._listed("servers", z85_key)
        return domain == ZAP_DOMAIN and self.role(z85_key) is not None

    def curve_user_id(self, client_public_key: bytes) -> str:
        """``'rw:<z85>'``, ``'ro:<z85>'`` or ``'sv:<z85>'``: the role travels in the User-Id of every message."""
        z85_key = zmq.utils.z85.encode(client_public_key)
        return f"{self.role(z85_key) or 'sv'}:{z85_key.decode('ascii')}"


_AUTHENTICATORS: dict[int, RoleAuthenticator] = {}


def shared_authenticator(context: zmq.Context, keys_dir: str) -> RoleAuthenticator:
    """The started ``RoleAuthenticator`` of ``context``, started now if it has none yet."""
    authenticator = _AUTHENTICATORS.get(id(context))
    if authenticator is None or not authenticator.is_alive():
        authenticator = _AUTHENTICATORS[id(context)] = RoleAuthenticator(context, keys_dir)
        authenticator.start()
    return authenticator


def stop_authenticator(context: zmq.Context) -> None:
    """Stop the shared authenticator of ``context``, if it has one."""
    authenticator = _AUTHENTICATORS.pop(id(context), None)
    if authenticator is not None:
        authenticator.stop()


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
