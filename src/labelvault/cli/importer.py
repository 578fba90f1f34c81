"""``labelvault import --project P FILE…``: one all-or-nothing import per file.

Locally (no ``--url``) it runs on the server host as the operator, through the platform
(``datasets.service.import_items``), with a progress bar; with ``--url`` it uploads each file to
a remote server through the SDK (token from ``LABELVAULT_TOKEN`` or ``--token-file``).

On a terminal the progress is a rich bar on stderr; otherwise (logs, CI, pipes) one plain line
per batch goes to stdout, so a failure still leaves exactly one line on stderr.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from labelvault.cli.runtime import OPERATOR, fail, settings_or_fail, with_platform
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import InvalidInputError, LabelVaultError, NotFoundError
from labelvault.platform import Platform

# Items and imports record who created them; an operator import without ``--as`` is recorded
# as made by this fixed id (the audit event names the operator's CLI as the actor).
OPERATOR_IMPORTER = uuid.UUID(int=0)
_LINE_FORMATS = {".jsonl", ".ndjson", ".csv", ".tsv", ".txt"}
_IMPORTING_ROLES = ("data_owner", "manager")
_SHOWN_ERRORS = 3

OnErrorOpt = Literal["reject", "skip"]


@dataclass
class FileResult:
    path: Path
    format: str
    added: int
    duplicates: int
    rejected: int
    errors: list[tuple[int, str]]


def _count_lines(path: Path, fmt: str | None) -> int | None:
    """An estimate of the rows in a line-based file (for the progress total)."""
    if (
        path.is_dir()
        or (fmt not in (None, "jsonl", "csv", "tsv", "text"))
        or (fmt is None and path.suffix.lower() not in _LINE_FORMATS)
    ):
        return None
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


class _Reporter:
    """Progress as a rich bar (terminal) or plain lines on stdout (anything else)."""

    def __init__(self, *, unit: Literal["rows", "bytes"]) -> None:
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.unit = unit
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.done = 0
        self.name = ""

    def __enter__(self) -> _Reporter:
        if self.live:
            counter = (
                [DownloadColumn(), TransferSpeedColumn()]
                if self.unit == "bytes"
                else [MofNCompleteColumn(), TextColumn("rows")]
            )
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *counter,
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, name: str, total: int | None) -> None:
        self.done, self.name = 0, name
        if self.progress is not None:
            self.task = self.progress.add_task(name, total=total)
        else:
            shown = f" of ~{total}" if total is not None else ""
            typer.echo(f"{name}: importing{shown} {self.unit}")

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=n)
        elif self.unit == "rows":
            typer.echo(f"{self.name}: {self.done} rows processed")

    def finish(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _summary(results: list[FileResult]) -> None:
    if not results:
        return
    table = Table("file", "format", "added", "duplicates", "rejected", "first errors (line)")
    for r in results:
        errors = "; ".join(f"{line}: {reason}" for line, reason in r.errors[:_SHOWN_ERRORS])
        if len(r.errors) > _SHOWN_ERRORS:
            errors += f"; … {r.rejected - _SHOWN_ERRORS} more"
        table.add_row(
            str(r.path), r.format, str(r.added), str(r.duplicates), str(r.rejected), errors or "-"
        )
    Console(width=max(Console().width, 120)).print(table)


def _check_files(files: list[Path]) -> None:
    for f in files:
        if not f.exists():
            fail(f"{f}: no such file")


# -- local ------------------------------------------------------------------------------------


async def _importer_actor(platform: Platform, project_id: uuid.UUID, email: str | None) -> Actor:
    from labelvault import identity

    if email is None:
        return Actor(
            kind=ActorKind.SYSTEM, user_id=OPERATOR_IMPORTER, is_system_admin=True, label="cli"
        )
    user = await identity.find_user_by_email(platform.db, OPERATOR, email)
    members = await identity.list_memberships(platform.db, OPERATOR, project_id=project_id)
    if not any(m.user_id == user.id and m.role in _IMPORTING_ROLES for m in members):
        raise InvalidInputError(
            f"{email} is not a data owner or manager of this project", field="as"
        )
    return Actor(
        kind=ActorKind.SYSTEM,
        user_id=user.id,
        org_id=user.org_id,
        is_system_admin=True,
        label="cli",
    )


def _import_local(
    files: list[Path],
    project: str,
    fmt: str | None,
    on_error: OnErrorOpt,
    as_user: str | None,
    data_dir: Path | None,
) -> None:
    from labelvault.access.scope import ProjectScope
    from labelvault.datasets.service import ImportRowsError, import_items
    from labelvault.kernel.ids import parse_id
    from labelvault.tenancy import service as tenancy

    settings = settings_or_fail(data_dir=data_dir)
    results: list[FileResult] = []
    failure: list[str] = []

    async def go(platform: Platform) -> None:
        try:
            project_id = (
                await tenancy.get_project(platform.db, OPERATOR, parse_id(project, what="project"))
            ).id
        except NotFoundError:
            raise NotFoundError(f"project {project} not found (give its id)") from None
        actor = await _importer_actor(platform, project_id, as_user)
        scope = ProjectScope(
            project_id, actor, "system", privileged_reason="operator import (labelvault import)"
        )
        with _Reporter(unit="rows") as reporter:
            for path in files:
                reporter.start(path.name, _count_lines(path, fmt))
                try:
                    report = await import_items(
                        platform.db,
                        platform.keys,
                        platform.blobs,
                        scope,
                        str(path),
                        fmt=fmt,
                        name=path.name,
                        on_error=on_error,
                        progress=reporter.advance,
                    )
                except ImportRowsError as exc:
                    results.append(_from_report(path, exc.report.as_dict(), added=0))
                    failure.append(f"{path}: {exc.message}")
                    return
                except LabelVaultError as exc:
                    failure.append(f"{path}: {exc.message}")
                    return
                finally:
                    reporter.finish()
                results.append(_from_report(path, report.as_dict()))

    with_platform(settings, go)
    _summary(results)
    if failure:
        fail(failure[0])


def _from_report(path: Path, d: dict[str, Any], added: int | None = None) -> FileResult:
    return FileResult(
        path,
        str(d.get("format", "?")),
        d.get("items_added", 0) if added is None else added,
        int(d.get("duplicates", 0)),
        int(d.get("rejected", 0)),
        [(int(e.get("line", 0)), str(e.get("reason", ""))) for e in d.get("errors", [])],
    )


# -- remote -----------------------------------------------------------------------------------


def remote_client(
    url: str, token_file: Path | None, ca_file: Path | None, timeout: float = 300
) -> Any:
    from labelvault.client import Client, LabelVaultClientError

    try:
        return Client(
            url, token_file=token_file, verify=str(ca_file) if ca_file else True, timeout=timeout
        )
    except LabelVaultClientError as exc:
        fail(exc.detail)


def _import_remote(
    files: list[Path],
    project: str,
    fmt: str | None,
    on_error: OnErrorOpt,
    url: str,
    token_file: Path | None,
    ca_file: Path | None,
) -> None:
    from labelvault.client import Invalid, LabelVaultClientError

    results: list[FileResult] = []
    failure: str | None = None
    with remote_client(url, token_file, ca_file) as client, _Reporter(unit="bytes") as rep:
        for path in files:
            if path.is_dir():
                failure = f"{path}: folders can only be imported locally; zip it first"
                break
            rep.start(path.name, path.stat().st_size)
            advance: Callable[[int], None] = rep.advance if rep.live else _quiet
            try:
                report = client.import_file(project, path, fmt, on_error, progress=advance)
            except Invalid as exc:
                if exc.report is not None:
                    results.append(_from_report(path, exc.report, added=0))
                failure = f"{path}: {exc.detail}"
                break
            except LabelVaultClientError as exc:
                failure = (
                    f"{path}: {exc.detail} ({exc.status})"
                    if exc.status
                    else f"{path}: {exc.detail}"
                )
                break
            except ValueError:
                failure = f"{project}: not a project id"
                break
            finally:
                rep.finish()
            results.append(
                FileResult(
                    path,
                    report.format,
                    report.items_added,
                    report.duplicates,
                    report.rejected,
                    [(e.line, e.reason) for e in report.errors],
                )
            )
    _summary(results)
    if failure:
        fail(failure)


def _quiet(_n: int) -> None:
    return None


def import_command(
    files: list[Path] = typer.Argument(..., help="files to import (one import each)"),
    project: str = typer.Option(..., "--project", help="project id"),
    fmt: str | None = typer.Option(
        None, "--format", help="jsonl | csv | tsv | text | zip | image (default: from the name)"
    ),
    on_error: str = typer.Option(
        "reject", "--on-error", help="reject: a bad row rejects the file; skip: report it"
    ),
    url: str | None = typer.Option(
        None, "--url", envvar="LABELVAULT_URL", help="remote server (https://...): use the API"
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="remote: file holding the API token (else LABELVAULT_TOKEN)"
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="remote: CA certificate to trust (a self-signed server)"
    ),
    as_user: str | None = typer.Option(
        None, "--as", help="local: record the import as made by this data owner (email)"
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="local: data directory (LABELVAULT_DATA_DIR)"
    ),
) -> None:
    """Import dataset files into a project: each file is one all-or-nothing import."""
    if on_error not in ("reject", "skip"):
        fail("--on-error must be reject or skip")
    mode: OnErrorOpt = "skip" if on_error == "skip" else "reject"
    _check_files(files)
    if url:
        if as_user:
            fail("--as is for local imports; remotely the token's owner is the importer")
        _import_remote(files, project, fmt, mode, url, token_file, ca_file)
    else:
        if token_file or ca_file:
            fail("--token-file and --ca-file need --url")
        _import_local(files, project, fmt, mode, as_user, data_dir)
