"""The `document.generate` step and its compensation: a contract or exit letter, as a file.

A document is written under the tenant's own folder of the lifecycle reports directory,
`<base>/<tenant id>/[<subdirectory>/]<name>`. The playbook layer renders the text (its Jinja2
sandbox) before the call: this module only lays it out and stores it. `.md` gets the title as a
`#` heading, `.txt` as an underlined line, `.html` a minimal page whose `<title>` and `<h1>` are
the (escaped) title and whose body is `body` as given — already-rendered HTML, so escaping event
data in it is the renderer's job.

Why the rules on names: a name and a subdirectory come from a playbook, i.e. from tenant admins,
and their values may be templated from an HR event. So each is one plain path segment (letters,
digits, `-`, `_`, `.`, not starting with a dot), a name ends in `.md`, `.txt` or `.html`, and the
final path is resolved (links included) and refused unless it is inside the tenant's folder.

Writes are atomic (a temporary file in the same folder, flushed, then `os.replace`), so a reader
or a crash never sees half a document, and idempotent: the same call writes the same bytes to
the same path. A second document under the same name replaces the first (a regenerated letter
is the newer one): playbooks should name documents after the person (`contract-{{ person.id
}}.md`).

Undo: `remove` deletes the file, only if it still holds what this step wrote (the `sha256` in
the undo record), so compensating one run never deletes the document a later run wrote in its
place; a missing file counts as removed. Failures: bad names and paths, a refused
permission and a file where a folder should be (or the other way round) are permanent; any
other OS error (a full disk, say) is transient.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.lifecycle.connectors.email import parse_params
from quire.schemas import Input

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
EXTENSIONS = (".md", ".txt", ".html")


def _segment(value: str) -> str:
    if not _SEGMENT.match(value):
        raise ValueError(
            "must be one plain name: letters, digits, '-', '_' and '.', not starting with '.', "
            "at most 200 characters, no path separators"
        )
    return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value  # a template that rendered to nothing: no folder


def _optional_segment(value: str | None) -> str | None:
    return None if value is None else _segment(value)


def _document_name(value: str) -> str:
    _segment(value)
    if not value.lower().endswith(EXTENSIONS):
        raise ValueError(f"must end with one of {', '.join(EXTENSIONS)}")
    return value


class DocumentsConnection(Input):
    """Where documents go: the lifecycle reports directory (`<reports dir>/lifecycle`)."""

    base_dir: Path


class GenerateParams(Input):
    """`document.generate`'s parameters."""

    name: Annotated[str, AfterValidator(_document_name)]
    title: str = Field(max_length=500)
    body: str
    subdirectory: Annotated[
        str | None, BeforeValidator(_blank_is_none), AfterValidator(_optional_segment)
    ] = None


class RemoveParams(Input):
    """`document.remove`'s parameters: the undo record `generate` returned."""

    path: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def layout(name: str, title: str, body: str) -> str:
    """The document's text: the title, then the body, in the file type's own way."""
    suffix = Path(name).suffix.lower()
    body = body if body.endswith("\n") else body + "\n"
    if suffix == ".md":
        return f"# {title}\n\n{body}"
    if suffix == ".txt":
        return f"{title}\n{'=' * len(title)}\n\n{body}"
    safe = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{safe}</title>\n</head>\n<body>\n<h1>{safe}</h1>\n{body}</body>\n</html>\n"
    )


def _tenant_dir(connection: DocumentsConnection, call: StepCall) -> Path:
    return connection.base_dir.resolve() / str(call.tenant_id)


def _inside(path: Path, folder: Path) -> Path:
    """`path` resolved (links followed), or PermanentFailure if that is outside `folder`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder):
        raise PermanentFailure(
            Provider.DOCUMENTS, f"the path {path} is outside the tenant's documents folder"
        )
    return resolved


# What a retry cannot mend: a refused permission, a file where a folder should be or the other
# way round. Anything else (a full disk, an I/O error) may pass.
_LASTING = (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


def _os_failure(what: str, exc: OSError) -> PermanentFailure | TransientFailure:
    kind = PermanentFailure if isinstance(exc, _LASTING) else TransientFailure
    return kind(Provider.DOCUMENTS, f"could not {what}: {exc.strerror or type(exc).__name__}")


def _write_atomically(target: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def generate(connection: DocumentsConnection, call: StepCall) -> StepOutcome:
    """`document.generate`: output `{"path", "relative_path", "sha256", "size"}`; undo
    `{"path" (relative to the base directory), "sha256"}`."""
    params = parse_params(GenerateParams, call, Provider.DOCUMENTS)
    folder = _tenant_dir(connection, call)
    relative = Path(params.subdirectory or ".") / params.name
    data = layout(params.name, params.title, params.body).encode()
    digest = hashlib.sha256(data).hexdigest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = _inside(folder / relative, folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target = _inside(target, folder)  # the subdirectory may be a link made meanwhile
        _write_atomically(target, data)
    except OSError as exc:
        raise _os_failure(f"write {relative.as_posix()}", exc) from None
    stored = target.relative_to(connection.base_dir.resolve()).as_posix()
    output = {
        "path": str(target),
        "relative_path": stored,
        "sha256": digest,
        "size": len(data),
    }
    return StepOutcome(output=output, undo={"path": stored, "sha256": digest})


def remove(connection: DocumentsConnection, call: StepCall) -> StepOutcome:
    """`generate`'s compensation: delete the document it wrote, if it is still that one.

    `path` is relative to the base directory (absolute is accepted if it lies under it); either
    way it must be inside the calling tenant's folder. Output `{"removed": bool}`."""
    params = parse_params(RemoveParams, call, Provider.DOCUMENTS)
    base = connection.base_dir.resolve()
    folder = _tenant_dir(connection, call)
    target = _inside(base / params.path, folder)  # an absolute path replaces `base`
    if target == folder:
        raise PermanentFailure(Provider.DOCUMENTS, "the path names the tenant's folder itself")
    try:
        if params.sha256 is not None:
            current = hashlib.sha256(target.read_bytes()).hexdigest()
            if current != params.sha256:  # rewritten since: that document is not ours to drop
                return StepOutcome(output={"removed": False, "reason": "changed since"})
        target.unlink()
    except FileNotFoundError:
        return StepOutcome(output={"removed": False, "reason": "already gone"})
    except OSError as exc:
        raise _os_failure(f"remove {params.path}", exc) from None
    return StepOutcome(output={"removed": True})
