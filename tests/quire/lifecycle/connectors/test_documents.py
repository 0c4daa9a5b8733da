"""`document.generate` and its compensation `document.remove`, on a real directory: where a
document lands, that it cannot land anywhere else, and that writing and removing it twice is
the same as once."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from quire.lifecycle.connectors.base import PermanentFailure, Provider, StepCall
from quire.lifecycle.connectors.documents import DocumentsConnection, generate, remove

# Fixed ids: they appear in test ids, which must be the same in every collection (xdist).
TENANT = uuid.UUID("1b4e28ba-2fa1-41d2-883f-0016d3cca427")
OTHER_TENANT = uuid.UUID("6fa459ea-ee8a-4ca4-894e-db77e160355e")


def call(tenant: uuid.UUID = TENANT, key: str = "run-1:contract", **params: Any) -> StepCall:
    defaults = {
        "name": "contract-ann.md",
        "title": "Contract",
        "body": "Ann Lee joins on 3 March.",
        "subdirectory": "contracts",
    }
    return StepCall(tenant, key, defaults | params)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "reports" / "lifecycle"


@pytest.fixture
def documents(base: Path) -> DocumentsConnection:
    return DocumentsConnection(base_dir=base)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_document_is_written_under_its_tenants_folder(
    documents: DocumentsConnection, base: Path
) -> None:
    outcome = generate(documents, call())

    path = base / str(TENANT) / "contracts" / "contract-ann.md"
    assert path.read_text() == "# Contract\n\nAnn Lee joins on 3 March.\n"
    assert outcome.output["path"] == str(path.resolve())
    assert outcome.output["relative_path"] == f"{TENANT}/contracts/contract-ann.md"
    assert outcome.output["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert outcome.undo == {
        "path": f"{TENANT}/contracts/contract-ann.md",
        "sha256": outcome.output["sha256"],
    }


def test_text_and_html_documents_carry_their_title_in_their_own_way(
    documents: DocumentsConnection,
) -> None:
    text = generate(documents, call(name="letter.txt", title="Exit letter", subdirectory=None))
    page = generate(documents, call(name="letter.html", title="A <b> & c", body="<p>Bye</p>"))

    expected = "Exit letter\n===========\n\nAnn Lee joins on 3 March.\n"
    assert Path(text.output["path"]).read_text() == expected
    html = Path(page.output["path"]).read_text()
    assert "<title>A &lt;b&gt; &amp; c</title>" in html
    assert "<h1>A &lt;b&gt; &amp; c</h1>\n<p>Bye</p>\n" in html
    assert Path(text.output["path"]).parent.name == str(TENANT)


def test_writing_the_same_step_twice_leaves_one_identical_file(
    documents: DocumentsConnection, base: Path
) -> None:
    first = generate(documents, call())
    again = generate(documents, call())

    assert again.output == first.output
    assert again.undo == first.undo
    assert files_under(base) == [Path(first.output["path"])]  # no temporary file left behind


def test_an_empty_subdirectory_means_the_tenants_folder_itself(
    documents: DocumentsConnection, base: Path
) -> None:
    outcome = generate(documents, call(subdirectory=""))

    assert Path(outcome.output["path"]) == (base / str(TENANT) / "contract-ann.md").resolve()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "../escape.md"}, "name"),
        ({"name": "a/b.md"}, "name"),
        ({"name": "a\\b.md"}, "name"),
        ({"name": "/etc/passwd.md"}, "name"),
        ({"name": ".hidden.md"}, "name"),
        ({"name": "contract.pdf"}, "name"),
        ({"name": "contract.md.sh"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 300 + ".md"}, "name"),
        ({"name": "contract\x00.md"}, "name"),
        ({"subdirectory": ".."}, "subdirectory"),
        ({"subdirectory": "a/b"}, "subdirectory"),
        ({"subdirectory": "../../etc"}, "subdirectory"),
        ({"title": None}, "title"),
        ({"body": 3}, "body"),
    ],
)
def test_a_name_or_folder_that_is_not_one_plain_segment_is_refused(
    documents: DocumentsConnection, base: Path, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(PermanentFailure, match=f"bad parameters: {field}") as failure:
        generate(documents, call(**params))

    assert failure.value.provider is Provider.DOCUMENTS
    assert files_under(base.parent.parent) == []


def test_a_folder_linked_out_of_the_base_is_refused(
    documents: DocumentsConnection, base: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (base / str(TENANT)).mkdir(parents=True)
    (base / str(TENANT) / "contracts").symlink_to(outside)

    with pytest.raises(PermanentFailure, match="outside the tenant's documents folder"):
        generate(documents, call())

    assert list(outside.iterdir()) == []


def test_a_file_where_the_folder_should_be_is_permanent(
    documents: DocumentsConnection, base: Path
) -> None:
    (base / str(TENANT)).mkdir(parents=True)
    (base / str(TENANT) / "contracts").write_text("not a folder")

    with pytest.raises(PermanentFailure, match=r"could not write contracts/contract-ann\.md"):
        generate(documents, call())


def test_removing_a_document_deletes_it_and_removing_it_again_is_done(
    documents: DocumentsConnection,
) -> None:
    written = generate(documents, call())
    assert written.undo is not None
    undo = StepCall(TENANT, "run-1:contract:undo", written.undo)

    assert remove(documents, undo).output == {"removed": True}
    assert not Path(written.output["path"]).exists()
    assert remove(documents, undo).output == {"removed": False, "reason": "already gone"}


def test_a_document_rewritten_since_is_not_removed_by_the_older_steps_undo(
    documents: DocumentsConnection,
) -> None:
    older = generate(documents, call(key="run-1:contract"))
    newer = generate(documents, call(key="run-2:contract", body="Ann Lee joins on 4 March."))
    assert older.undo is not None

    outcome = remove(documents, StepCall(TENANT, "run-1:contract:undo", older.undo))

    assert outcome.output == {"removed": False, "reason": "changed since"}
    assert Path(newer.output["path"]).read_text().endswith("4 March.\n")


def test_an_absolute_path_under_the_tenants_folder_is_accepted_for_removal(
    documents: DocumentsConnection,
) -> None:
    written = generate(documents, call())

    outcome = remove(documents, StepCall(TENANT, "k", {"path": written.output["path"]}))

    assert outcome.output == {"removed": True}


@pytest.mark.parametrize(
    "path",
    [
        "../outside.md",
        "/etc/hostname",
        f"{OTHER_TENANT}/contracts/contract-ann.md",
        ".",
        str(TENANT),
    ],
)
def test_removal_refuses_anything_outside_the_calling_tenants_folder(
    documents: DocumentsConnection, base: Path, path: str
) -> None:
    theirs = generate(documents, call(tenant=OTHER_TENANT))
    (base.parent / "outside.md").write_text("keep me")

    with pytest.raises(PermanentFailure):
        remove(documents, StepCall(TENANT, "k", {"path": path}))

    assert Path(theirs.output["path"]).exists()
    assert (base.parent / "outside.md").read_text() == "keep me"
