"""The trainer's bearer token: where it lives, how it is made, how a request is checked.

The token comes from settings (``BOTTEGA_TRAINER__TOKEN``) or, when that is unset, from a file
that the stack generates once under the state directory, readable by its owner only. Alertmanager
reads the same file (``http_config.authorization.credentials_file``), so the token is never in a
committed file and never on a command line.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from bottega.errors import ConfigError
from bottega.settings import BottegaSettings

TOKEN_BYTES = 32


def token_file(settings: BottegaSettings) -> Path:
    """Where the trainer's token is kept for Alertmanager and the trainer to read."""
    return settings.home / "secrets" / "trainer-token"


def ensure_secret_file(path: Path, configured: SecretStr | None) -> Path:
    """Write a secret file, owner-only: the configured value, else the file's, else a new one."""
    if configured is None and path.exists() and path.read_text().strip():
        return path
    value = configured.get_secret_value() if configured else secrets.token_urlsafe(TOKEN_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    # Created owner-only before the secret is written, so it is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return path


def ensure_trainer_token(settings: BottegaSettings) -> Path:
    """Write the token file: the configured token, else the existing file's, else a new one."""
    return ensure_secret_file(token_file(settings), settings.trainer.token)


def read_secret(path: Path) -> SecretStr:
    """The secret a file holds."""
    return SecretStr(path.read_text().strip())


def write_shared_secret(path: Path, value: SecretStr) -> Path:
    """Write ``value`` to ``path`` for the containers that mount its volume read-only.

    Docker mode's one-shot ``trainer-token`` job: Alertmanager runs as another user than the
    trainer, so the file is world-readable, as a Docker secret's is (0444); only the containers
    that mount the ``secrets`` volume can see it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value.get_secret_value())
    os.chmod(tmp, 0o444)
    tmp.replace(path)
    return path


def load_trainer_token(settings: BottegaSettings) -> SecretStr:
    """The token the trainer checks: the setting, else the file; ConfigError when neither."""
    if settings.trainer.token is not None:
        return settings.trainer.token
    path = token_file(settings)
    value = path.read_text().strip() if path.exists() else ""
    if not value:
        raise ConfigError(
            "the trainer has no bearer token",
            hint=f"set BOTTEGA_TRAINER__TOKEN, or start it with `bottega up`, which writes {path}",
        )
    return SecretStr(value)


def bearer_matches(authorization: str | None, token: SecretStr) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>``, compared in constant
    time."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())
