"""LabelVault's Python SDK: ``Client`` (sync) and ``AsyncClient`` (async) over HTTPS.

    from labelvault.client import Client

    with Client("https://labelvault.example", verify="ca.pem") as lv:   # token: LABELVAULT_TOKEN
        task = lv.next_task(project_id)
        if task:
            lv.submit(project_id, task.task_id, {"labels": ["spam"]})

Errors are ``LabelVaultClientError`` subclasses (``Unauthorized``, ``Forbidden``, ``NotFound``,
``Conflict``, ``Invalid``, ``Throttled``, ``ServerError``...) carrying the problem's ``status``,
``code``, ``detail`` and ``field``. The token never appears in a repr, a message or a log line.
See docs/SDK.md.
"""

from labelvault.client._async import AsyncClient
from labelvault.client._sync import Client
from labelvault.client.credentials import CredentialsError, read_token_file, resolve_token
from labelvault.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    LabelVaultClientError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    TransportFailed,
    Unauthorized,
)
from labelvault.client.models import (
    Aggregates,
    AuditPage,
    Decision,
    Download,
    DownloadLink,
    Export,
    ImportReport,
    MyAnnotation,
    Project,
    ProjectSettings,
    Review,
    ReviewStats,
    ReviewSummary,
    RowIssue,
    SubmitResult,
    Task,
)

__all__ = [
    "Aggregates",
    "AsyncClient",
    "AuditPage",
    "BadRequest",
    "Client",
    "Conflict",
    "CredentialsError",
    "Decision",
    "Download",
    "DownloadLink",
    "Export",
    "Forbidden",
    "Gone",
    "ImportReport",
    "Invalid",
    "LabelVaultClientError",
    "MyAnnotation",
    "NotFound",
    "PayloadTooLarge",
    "Project",
    "ProjectSettings",
    "Review",
    "ReviewStats",
    "ReviewSummary",
    "RowIssue",
    "ServerError",
    "SubmitResult",
    "Task",
    "Throttled",
    "TransportFailed",
    "Unauthorized",
    "read_token_file",
    "resolve_token",
]
