"""``labelvault remote …``: act on a remote server through the SDK (``labelvault.client``).

Every command takes ``--url`` (or ``LABELVAULT_URL``), the token from ``LABELVAULT_TOKEN`` or
``--token-file``, and ``--ca-file`` for a self-signed server. Results are printed as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from labelvault.cli.runtime import fail

T = TypeVar("T")
remote_app = typer.Typer(
    no_args_is_help=True, help="Work on a remote LabelVault server through its API."
)

Url = typer.Option(..., "--url", envvar="LABELVAULT_URL", help="https://server[:port]")
TokenFile = typer.Option(
    None, "--token-file", help="file holding the API token (else LABELVAULT_TOKEN)"
)
CaFile = typer.Option(None, "--ca-file", help="CA certificate to trust (self-signed server)")
ProjectOpt = typer.Option(..., "--project", help="project id")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "raw" and f.repr
        }
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _print(value: Any) -> None:
    typer.echo(json.dumps(_jsonable(value), indent=2, ensure_ascii=False))


def _call(url: str, token_file: Path | None, ca_file: Path | None, fn: Callable[[Any], T]) -> T:
    from labelvault.cli.importer import remote_client
    from labelvault.client import LabelVaultClientError

    with remote_client(url, token_file, ca_file, timeout=60) as client:
        try:
            return fn(client)
        except LabelVaultClientError as exc:
            where = f" (field {exc.field})" if exc.field else ""
            fail(f"{exc.detail}{where}" + (f" [{exc.status}]" if exc.status else ""))
        except ValueError as exc:
            fail(str(exc).split("\n")[0])


def _result(result: str | None, label: list[str] | None) -> dict[str, Any]:
    if result and label:
        fail("give --result or --label, not both")
    if label:
        return {"labels": label}
    if not result:
        fail("give --result JSON or --label L (repeatable)")
    try:
        value = json.loads(result)
    except json.JSONDecodeError:
        fail("--result is not valid JSON")
    if not isinstance(value, dict):
        fail("--result must be a JSON object")
    return value


@remote_app.command("next-task")
def next_task(
    project: str = ProjectOpt,
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Lease your next task and print it (exit code 3 when there is no work)."""
    task = _call(url, token_file, ca_file, lambda c: c.next_task(project))
    if task is None:
        typer.echo("no task available", err=True)
        raise typer.Exit(3)
    _print(task)


@remote_app.command("submit")
def submit(
    task_id: str,
    project: str = ProjectOpt,
    result: str | None = typer.Option(None, "--result", help="result as JSON"),
    label: list[str] | None = typer.Option(
        None, "--label", help="a classification label (repeatable)"
    ),
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Submit (or revise) the annotation of one of your tasks."""
    body = _result(result, label)
    _print(_call(url, token_file, ca_file, lambda c: c.submit(project, task_id, body)))


@remote_app.command("skip")
def skip(
    task_id: str,
    project: str = ProjectOpt,
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Hand a task back without answering it."""
    _call(url, token_file, ca_file, lambda c: c.skip(project, task_id))
    typer.echo(f"task {task_id} skipped")


@remote_app.command("aggregates")
def aggregates(
    project: str = ProjectOpt,
    days: int = typer.Option(30, "--days", min=1, max=365),
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Project progress, throughput, review and quality figures (no content)."""
    stats = _call(url, token_file, ca_file, lambda c: c.aggregates(project, days))
    _print(stats.raw)


@remote_app.command("settings")
def settings(
    project: str = ProjectOpt,
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Show the project's settings (label schema, overlap, review share...)."""
    _print(_call(url, token_file, ca_file, lambda c: c.get_settings(project)).raw)


@remote_app.command("next-review")
def next_review(
    project: str = ProjectOpt,
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Your oldest pending review (exit code 3 when the queue is empty)."""
    review = _call(url, token_file, ca_file, lambda c: c.next_review(project))
    if review is None:
        typer.echo("no review pending", err=True)
        raise typer.Exit(3)
    _print(review)


@remote_app.command("decide")
def decide(
    review_id: str,
    project: str = ProjectOpt,
    decision: str = typer.Option(..., "--decision", help="accept | reject | correct"),
    comment: str | None = typer.Option(None, "--comment"),
    result: str | None = typer.Option(None, "--result", help="corrected result (JSON)"),
    url: str = Url,
    token_file: Path | None = TokenFile,
    ca_file: Path | None = CaFile,
) -> None:
    """Decide a review."""
    if decision not in ("accept", "reject", "correct"):
        fail("--decision must be accept, reject or correct")
    corrected = _result(result, None) if result else None
    _print(
        _call(
            url,
            token_file,
            ca_file,
            lambda c: c.decide(project, review_id, decision, comment=comment, result=corrected),
        )
    )
