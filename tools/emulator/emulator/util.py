"""Small helpers with no XMPP or media knowledge."""
import json
import os
import secrets
import tempfile
import time


class Clock:
    """Seconds since the process started; every timestamp in events and reports uses it."""

    def __init__(self):
        self._t0 = time.monotonic()
        self.wall_start = time.time()

    def now(self) -> float:
        return round(time.monotonic() - self._t0, 4)


def random_endpoint_id() -> str:
    """8 lowercase hex characters, like the endpoint ids jitsi-meet uses as MUC nicks."""
    return secrets.token_hex(4)


def random_ssrc() -> int:
    # avoid 0, which some stacks treat as "unset"
    return secrets.randbelow(0xFFFFFFFE) + 1


def write_json_atomic(path: str, data) -> None:
    """Write JSON so that a reader never sees a half-written file (tmp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; readers may be other users
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
