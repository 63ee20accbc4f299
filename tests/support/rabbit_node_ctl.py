"""``rabbitmqctl`` and its family, addressed to a private node only (``-n`` its name, its
``$HOME`` and cookie), so a command can never reach the machine's shared node."""

import pathlib
import signal
import subprocess

from tests.support.rabbit_node_files import RabbitNodeFiles
from tests.support.rabbit_processes import kill_group

RABBITMQ_BIN_DIR = pathlib.Path("/usr/lib/rabbitmq/bin")

# The CLIs that take ``-n NODE`` and authenticate with the cookie in $HOME.
_CLI_TOOLS = frozenset(
    {
        "rabbitmqctl",
        "rabbitmq-diagnostics",
        "rabbitmq-queues",
        "rabbitmq-plugins",
        "rabbitmq-upgrade",
    }
)


class RabbitNodeCtl(RabbitNodeFiles):
    """Runs the CLIs against this node, with this node's environment."""

    def ctl(
        self, *args: str, timeout: float = 60.0, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <this node> ARGS`` with this node's HOME/cookie.

        ``tool`` picks another CLI of the same family (``rabbitmq-queues``,
        ``rabbitmq-diagnostics``, ...), addressed the same way.
        """
        if tool not in _CLI_TOOLS:
            raise ValueError(f"unknown CLI tool {tool!r}; one of {sorted(_CLI_TOOLS)}")
        return self._ctl(list(args), timeout=timeout, tool=tool)

    def _ctl(
        self, args: list[str], *, timeout: float, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(RABBITMQ_BIN_DIR / tool), "-n", self.node_name, *args]
        proc = subprocess.Popen(
            cmd,
            env=self._env(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(cmd, proc.returncode, out, None)
