"""``aegis executor``: the standalone executor service (the only holder of cluster credentials).

``aegis/cli.py`` calls :func:`register`. The service refuses to start — exit code 2 and one
log line naming the setting, never a secret — without ``AEGIS_EXECUTOR_KEYS``, with a key
under 32 bytes, with an empty ``--allow-namespaces`` (CFG-1), with a Redis nonce store whose
``maxmemory-policy`` is not ``noeviction``, or with policies, a cluster file or guardrail
settings that do not load. An unreachable audit database does *not* stop it: the service
comes up, ``/health`` and every action answer 503 (nothing is done), and it retries.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from aegis.errors import AegisError, ConfigurationError

__all__ = ["register"]

_log = logging.getLogger("aegis.executor")
EXIT_CONFIG = 2
DEFAULT_DATABASE_URL = "sqlite:///var/aegis-executor.db"
DEFAULT_PORT = 8081
KEYS_ENV = "AEGIS_EXECUTOR_KEYS"
DATABASE_ENV = "AEGIS_EXECUTOR_DATABASE_URL"
REDIS_ENV = "AEGIS_EXECUTOR_REDIS_URL"
_BUILTIN_POLICIES = Path(__file__).parent / "policies"


class _Refuse(Exception):
    """A startup refusal: one log line, exit 2."""


def _setup_logging(level: str) -> None:
    from aegis.server._cli import JsonFormatter

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())


def _load_mapping(path: str, option: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _Refuse(f"{option}: cannot read `{path}`: {exc}") from exc
    except yaml.YAMLError as exc:
        raise _Refuse(f"{option}: `{path}` is not valid YAML") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _Refuse(f"{option}: `{path}` must hold a mapping")
    return data


def _database(args: argparse.Namespace) -> tuple[str, str, str]:
    """The database URL, a loggable form of it (no password), and the outbox path."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = args.database or os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise _Refuse("--database: not a valid database URL") from exc
    shown = parsed.render_as_string(hide_password=True)
    outbox = args.outbox
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_file = Path(str(parsed.database))
        if url == DEFAULT_DATABASE_URL:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        outbox = outbox or str(db_file.with_name(db_file.stem + "-outbox.jsonl"))
    return url, shown, outbox or "var/aegis-executor-outbox.jsonl"


def _namespaces(raw: str | None) -> list[str]:
    names = [n for n in (raw or "").split(",") if n != ""]
    if not names:
        raise _Refuse("--allow-namespaces is empty: give the namespaces the executor may act in")
    return names


def _actuator_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.actuator == "simulated":
        if args.kubeconfig or args.kube_context or args.in_cluster:
            raise _Refuse(
                "--kubeconfig, --kube-context and --in-cluster need --actuator kubernetes"
            )
        if args.cluster is None:
            _log.warning("no --cluster file: the simulated cluster starts empty")
            return {}
        if not Path(args.cluster).is_file():
            raise _Refuse(f"--cluster: `{args.cluster}` is not a readable file")
        return {"cluster_file": args.cluster}
    if args.cluster is not None:
        raise _Refuse("--cluster is for --actuator simulated")
    config: dict[str, Any] = {"in_cluster": bool(args.in_cluster)}
    if args.kubeconfig:
        config["kubeconfig"] = args.kubeconfig
    if args.kube_context:
        config["context"] = args.kube_context
    return config


def _check_redis(url: str) -> None:
    """CFG-1: a Redis instance holding nonces must not evict them."""
    from aegis.errors import require

    redis: Any = require("redis", "redis")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        _log.warning(
            "--redis: CONFIG GET is not permitted; make sure maxmemory-policy is noeviction"
        )
        return
    except redis.RedisError as exc:
        raise _Refuse(f"--redis: cannot reach the nonce store ({type(exc).__name__})") from exc
    finally:
        client.close()
    if policy != "noeviction":
        raise _Refuse(
            f"--redis: maxmemory-policy is `{policy}`; the nonce store needs `noeviction`"
        )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Validate every setting that does not need the database; the build_executor kwargs."""
    from aegis.actuators import GuardrailConfig, Keyring

    keys = os.environ.get(KEYS_ENV, "")
    if not keys.strip():
        raise _Refuse(f"{KEYS_ENV} is not set: no executor keys configured")
    jwt_secret = os.environ.get("AEGIS_JWT_SECRET", "")
    reject = [jwt_secret] if jwt_secret else []
    try:
        Keyring.from_env(keys, reject_secrets=reject)
    except ConfigurationError as exc:
        raise _Refuse(f"{KEYS_ENV}: {exc}") from exc
    namespaces = _namespaces(args.allow_namespaces)
    guardrails = _load_mapping(args.guardrails, "--guardrails") if args.guardrails else {}
    if "allowed_namespaces" in guardrails:
        raise _Refuse("--guardrails: set the namespaces with --allow-namespaces only")
    try:
        GuardrailConfig.model_validate({**guardrails, "allowed_namespaces": frozenset(namespaces)})
    except ValueError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise _Refuse(f"--allow-namespaces/--guardrails: invalid setting: {first[0]}") from exc
    principals = _load_mapping(args.principals, "--principals") if args.principals else {}
    if not all(isinstance(v, dict) for v in principals.values()):
        raise _Refuse("--principals: each key id must map to a mapping of attributes")
    policies = list(args.policies or [])
    if not policies:
        _log.warning("no --policies: using the built-in policy that allows every signed caller")
        policies = [str(_BUILTIN_POLICIES)]
    actuator_config = _actuator_config(args)
    url, shown, outbox = _database(args)
    redis_url = args.redis or os.environ.get(REDIS_ENV) or None
    if redis_url:
        _check_redis(redis_url)
    return {
        "keys": keys,
        "allow_namespaces": namespaces,
        "policies": policies,
        "database_url": url,
        "actuator": args.actuator,
        "actuator_config": actuator_config,
        "redis_url": redis_url,
        "outbox_path": outbox,
        "principals": principals,
        "reject_secrets": reject,
        "guardrail_config": guardrails,
        "_shown_database": shown,
    }


def _validate_without_database(options: dict[str, Any]) -> None:
    """When the database is down at start: still refuse bad policies or actuator settings."""
    from aegis.actuators import create_actuator
    from aegis.engine import PolicyEngine

    PolicyEngine.from_paths(options["policies"])
    create_actuator(options["actuator"], options["actuator_config"])


def _describe(exc: AegisError) -> str:
    diagnostics = getattr(exc, "diagnostics", None)
    if diagnostics:
        return f"--policies: the policy set does not load: {diagnostics[0]}".splitlines()[0]
    return str(exc)


def _run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    from aegis.remediation import Executor, ExecutorStoreError, build_executor
    from aegis.server.executor.app import create_executor_app, log_reconciled

    try:
        options = _options(args)
    except _Refuse as exc:
        _log.error("refusing to start: %s", exc)
        return EXIT_CONFIG
    shown = options.pop("_shown_database")

    def factory() -> Executor:
        return build_executor(**options)

    executor: Executor | None = None
    try:
        try:
            executor = factory()
        except ExecutorStoreError:
            _validate_without_database(options)
    except AegisError as exc:
        _log.error("refusing to start: %s", _describe(exc))
        return EXIT_CONFIG
    if executor is not None:
        try:
            log_reconciled(executor.start())
        except ExecutorStoreError:
            executor.store.close()
            executor = None
    if executor is None:
        _log.error(
            "the audit database `%s` (--database) is unavailable: every action is refused "
            "with 503 until it can be written; retrying",
            shown,
        )
    app = create_executor_app(
        executor if executor is not None else factory, actuator_name=args.actuator
    )
    _log.info(
        "aegis executor on %s:%d (actuator %s, namespaces %s, database %s)",
        args.host,
        args.port,
        args.actuator,
        ",".join(options["allow_namespaces"]),
        shown,
    )
    import uvicorn

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``executor`` subcommand to an argparse subparsers object.

    Args:
        subparsers: the result of ``parser.add_subparsers()``.
    """
    p = subparsers.add_parser(
        "executor",
        help="run the executor service (signed, allow-listed, guarded, audited remediation)",
        description=(
            f"Keys come from {KEYS_ENV} (`kid:secret,kid:secret`, each secret at least 32 "
            "bytes). See docs/actuators.md, 'The executor service'."
        ),
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument(
        "--policies",
        nargs="+",
        metavar="DIR",
        help="policy files or directories (default: a built-in policy allowing signed callers)",
    )
    p.add_argument(
        "--allow-namespaces",
        metavar="A,B",
        help="the namespaces the executor may act in, comma-separated (required)",
    )
    p.add_argument("--actuator", choices=("simulated", "kubernetes"), default="simulated")
    p.add_argument("--cluster", metavar="FILE", help="seed YAML of the simulated cluster")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (--actuator kubernetes)")
    p.add_argument("--kube-context", metavar="NAME", help="kubeconfig context")
    p.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    p.add_argument(
        "--database",
        metavar="URL",
        help=f"audit database (default: ${DATABASE_ENV} or {DEFAULT_DATABASE_URL})",
    )
    p.add_argument(
        "--outbox", metavar="FILE", help="local outbox of unwritten outcomes (default: beside it)"
    )
    p.add_argument(
        "--redis", metavar="URL", help=f"shared nonce store (default: ${REDIS_ENV} or memory)"
    )
    p.add_argument("--guardrails", metavar="FILE", help="YAML overrides of the guardrail defaults")
    p.add_argument("--principals", metavar="FILE", help="YAML: key id -> policy attributes")
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
    )
    p.set_defaults(handler=_run)
