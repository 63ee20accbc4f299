"""A private RabbitMQ node's identity and files: its name, ports and URL, its directories, and
the config, cookie and environment it starts with, none of them shared with the machine's node."""

import ipaddress
import os
import pathlib
import re
import secrets
from collections.abc import Sequence

from tests.support.rabbit_ports import HOST, pick_free_ports

_SHARED_NODE_SHORT_NAMES = frozenset({"rabbit"})
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Erlang reads the cookie as an atom; plain alphanumerics avoid any quoting question.
_COOKIE_RE = re.compile(r"^[A-Za-z0-9]{16,255}$")
# Variables rabbitmq-server / rabbit_env read, in their unprefixed form (rabbit_env falls
# back from RABBITMQ_X to X), plus shell-script knobs.  Inherited values are dropped so
# the caller's environment cannot redirect the private node.
_STRIPPED_ENV = frozenset(
    {
        "ADVANCED_CONFIG_FILE",
        "ALLOW_INPUT",
        "BASE",
        "CONFIG_FILE",
        "CONFIG_FILES",
        "CONF_ENV_FILE",
        "CTL_DIST_PORT_MAX",
        "CTL_DIST_PORT_MIN",
        "CTL_ERL_ARGS",
        "DBG",
        "DIST_PORT",
        "ENABLED_PLUGINS",
        "ENABLED_PLUGINS_FILE",
        "ERL_AFLAGS",
        "ERL_CRASH_DUMP",
        "ERL_EPMD_ADDRESS",
        "ERL_EPMD_PORT",
        "ERL_FLAGS",
        "ERL_LIBS",
        "ERL_ZFLAGS",
        "FEATURE_FLAGS",
        "FEATURE_FLAGS_FILE",
        "KEEP_PID_FILE_ON_EXIT",
        "LOG",
        "LOGS",
        "LOG_BASE",
        "LOG_FF_REGISTRY",
        "MNESIA_BASE",
        "MNESIA_DIR",
        "MOTD_FILE",
        "NODENAME",
        "NODE_IP_ADDRESS",
        "NODE_PORT",
        "NOTIFY_SOCKET",
        "PID_FILE",
        "PLUGINS_DIR",
        "PLUGINS_EXPAND_DIR",
        "PRODUCT_NAME",
        "PRODUCT_VERSION",
        "QUORUM_DIR",
        "SERVER_ADDITIONAL_ERL_ARGS",
        "SERVER_CODE_PATH",
        "SERVER_ERL_ARGS",
        "SERVER_START_ARGS",
        "SYS_PREFIX",
        "UPGRADE_LOG",
        "USE_LONGNAME",
        "USE_RABBIT_BOOT_SCRIPT",
    }
)


class RabbitNodeFiles:
    """Who a private node is (name, ports, URL) and what it is started from, under ``base_dir``."""

    amqp_port: int
    dist_port: int
    node_name: str
    url: str
    base_dir: pathlib.Path
    extra_listen_addresses: tuple[str, ...]

    def __init__(
        self,
        base_dir: pathlib.Path,
        *,
        name: str | None = None,
        cookie: str | None = None,
        extra_listen_addresses: Sequence[str] = (),
        extra_config: Sequence[str] = (),
    ) -> None:
        """``cookie``: the Erlang cookie to use (nodes of one cluster need the same one);
        default a random one made at the first start and kept in ``base_dir``.
        ``extra_listen_addresses``: further IPv4 addresses to accept AMQP on, same port
        as on 127.0.0.1; each must be a specific address of this host (no wildcard).
        ``extra_config``: lines appended to the generated ``rabbitmq.conf``.
        """
        if cookie is not None and not _COOKIE_RE.match(cookie):
            raise ValueError("cookie must be 16-255 ASCII letters/digits")
        self._cookie = cookie
        self.extra_listen_addresses = tuple(_listen_address(a) for a in extra_listen_addresses)
        for line in extra_config:
            if "\n" in line or "\r" in line:
                raise ValueError(f"extra_config takes one line per item, got {line!r}")
        self._extra_config = tuple(extra_config)
        self.base_dir = pathlib.Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.node_name = self._resolve_node_name(name)
        self.amqp_port, self.dist_port = pick_free_ports(2)
        self.url = f"amqp://guest:guest@{HOST}:{self.amqp_port}/"
        self._short_name = self.node_name.split("@", 1)[0]

    # -- paths -----------------------------------------------------------------------

    @property
    def home_dir(self) -> pathlib.Path:
        return self.base_dir / "home"

    @property
    def mnesia_base(self) -> pathlib.Path:
        return self.base_dir / "mnesia"

    @property
    def log_dir(self) -> pathlib.Path:
        return self.base_dir / "log"

    @property
    def node_log(self) -> pathlib.Path:
        """RabbitMQ's own log file."""
        return self.log_dir / f"{self.node_name}.log"

    @property
    def console_log(self) -> pathlib.Path:
        """stdout/stderr of rabbitmq-server (appended to on every start)."""
        return self.log_dir / "console.log"

    # -- internals -------------------------------------------------------------------

    def _resolve_node_name(self, name: str | None) -> str:
        name_file = self.base_dir / "NODENAME"
        if name is None:
            if name_file.exists():
                name = name_file.read_text().strip()
            else:
                name = f"rmqtest-{secrets.token_hex(4)}"
        short, _, host = name.partition("@")
        if host not in ("", "localhost"):
            raise ValueError(f"node name must be NAME or NAME@localhost, got {name!r}")
        if not _NAME_RE.match(short):
            raise ValueError(f"invalid node name {name!r}")
        if short in _SHARED_NODE_SHORT_NAMES:
            raise ValueError(f"refusing to use {name!r}: that is the shared broker's name")
        full = f"{short}@localhost"
        name_file.write_text(full + "\n")
        return full

    def _write_files(self) -> None:
        for d in (self.home_dir, self.mnesia_base, self.log_dir, self.base_dir / "conf.d"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home_dir / ".erlang.cookie"
        if self._cookie is not None:
            # Rewritten on every start: a cluster's nodes must agree on it.  Replace, not
            # write in place: the old file is read-only.
            tmp = cookie.with_name(".erlang.cookie.new")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(self._cookie)
            os.replace(tmp, cookie)
        elif not cookie.exists():
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16).upper())
        # Erlang refuses a cookie readable by group/others.
        os.chmod(cookie, 0o400)
        conf = [f"listeners.tcp.local = {HOST}:{self.amqp_port}"]
        conf += [
            f"listeners.tcp.extra{i} = {address}:{self.amqp_port}"
            for i, address in enumerate(self.extra_listen_addresses, start=1)
        ]
        conf += [
            "log.file.level = info",
            "log.console = false",
            # Tests must not stall on a disk alarm of a busy CI disk.
            "disk_free_limit.absolute = 10MB",
            *self._extra_config,
        ]
        (self.base_dir / "rabbitmq.conf").write_text("".join(f"{line}\n" for line in conf))
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        # Our own (empty) env file so /etc/rabbitmq/rabbitmq-env.conf is not sourced.
        (self.base_dir / "rabbitmq-env.conf").write_text("")

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RABBITMQ_") and k not in _STRIPPED_ENV
        }
        mnesia_dir = self.mnesia_base / self.node_name
        env.update(
            {
                "HOME": str(self.home_dir),
                "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.node_name,
                "RABBITMQ_NODE_IP_ADDRESS": HOST,
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": str(self.base_dir / "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.mnesia_base),
                "RABBITMQ_MNESIA_DIR": str(mnesia_dir),
                "RABBITMQ_QUORUM_DIR": str(mnesia_dir / "quorum"),
                "RABBITMQ_FEATURE_FLAGS_FILE": str(
                    self.mnesia_base / f"{self.node_name}-feature_flags"
                ),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(
                    self.mnesia_base / f"{self.node_name}-plugins-expand"
                ),
                "RABBITMQ_PID_FILE": str(self.base_dir / f"{self.node_name}.pid"),
                "RABBITMQ_LOG_BASE": str(self.log_dir),
                "RABBITMQ_LOGS": str(self.node_log),
                "RABBITMQ_UPGRADE_LOG": str(self.log_dir / f"{self.node_name}_upgrade.log"),
                "RABBITMQ_MOTD_FILE": str(self.base_dir / "motd"),
                # Same loopback-only distribution as the shared node's env file sets.
                "ERL_EPMD_ADDRESS": HOST,
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                "ERL_CRASH_DUMP": str(self.base_dir / "erl_crash.dump"),
            }
        )
        return env


def _listen_address(address: str) -> str:
    """A specific IPv4 address to listen on; a wildcard would expose the node to every
    interface, which a test node must never do."""
    ip = ipaddress.IPv4Address(address)
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"not a specific local address to listen on: {address}")
    if str(ip) == HOST:
        raise ValueError(f"{HOST} is always listened on; do not list it again")
    return str(ip)
