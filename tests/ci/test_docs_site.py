"""The docs site (mkdocs.yml, docs/): it builds in strict mode, and strict mode fails on a broken
link; the README's links resolve, and no file refers to a docs page that does not exist."""

from __future__ import annotations

import html
import html.parser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.host_model import settings_docs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# Material prints an end-of-life banner on every build; it is not a build warning.
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
# Elements a built page may contain; anything else is Markdown text the browser would swallow,
# such as a bare `<app_name>` placeholder read as an HTML tag.
KNOWN_ELEMENTS = frozenset(
    [
        "html",
        "head",
        "body",
        "title",
        "meta",
        "link",
        "script",
        "style",
        "div",
        "span",
        "p",
        "a",
        "ul",
        "ol",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "pre",
        "strong",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "footer",
        "main",
        "article",
        "nav",
        "label",
        "input",
        "form",
        "button",
        "aside",
        "small",
        "br",
        "hr",
        "svg",
        "path",
        "img",
        "sup",
        "sub",
        "summary",
        "details",
        "template",
        "kbd",
        "dl",
        "dt",
        "dd",
        "blockquote",
        "section",
        "abbr",
    ]
)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS_PAGE_REFERENCE = re.compile(r"\bdocs/[A-Za-z0-9_-]+\.md\b")


def build(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict`, as bin/test runs it, on the mkdocs.yml in config_dir."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=config_dir,
        env=QUIET,
        capture_output=True,
        text=True,
        timeout=120,
    )


class _ElementNames(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = build(REPO, site)
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_the_site_has_a_page_for_every_docs_file(built_site: Path) -> None:
    for page in DOCS.glob("*.md"):
        built = built_site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"


def test_the_architecture_diagram_is_a_mermaid_block(built_site: Path) -> None:
    # Material's bundled script renders every <pre class="mermaid"> it finds.
    index = (built_site / "index.html").read_text()
    assert '<pre class="mermaid"><code>flowchart LR' in index


def test_no_page_text_is_read_as_an_unknown_html_element(built_site: Path) -> None:
    for page in built_site.glob("**/index.html"):
        parser = _ElementNames()
        parser.feed(page.read_text())
        unknown = sorted(parser.names - KNOWN_ELEMENTS)
        assert not unknown, f"{page.relative_to(built_site)}: <{'>, <'.join(unknown)}> hidden"


@pytest.mark.parametrize(
    ("case", "page", "append", "warning"),
    [
        ("missing page", "app.md", "[x](no-such-page.md)", "'no-such-page.md'"),
        ("missing heading", "app.md", "[x](releases.md#no-such-heading)", "'#no-such-heading'"),
        ("missing heading here", "app.md", "[x](#no-such-heading)", "'#no-such-heading'"),
        ("absolute link", "app.md", "[x](/releases/)", "'/releases/'"),
        ("repository file", "app.md", "[x](../deploy/inventory.py)", "'../deploy/inventory.py'"),
        ("page not in nav", "orphan.md", "# Orphan", "orphan.md"),
    ],
)
def test_a_broken_link_fails_the_strict_build(
    tmp_path: Path, case: str, page: str, append: str, warning: str
) -> None:
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    target = tmp_path / "docs" / page
    target.write_text((target.read_text() if target.exists() else "") + f"\n{append}\n")
    result = build(tmp_path, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{case}: strict build passed:\n{output}"
    assert "Aborted with 1 warnings in strict mode" in output, output
    assert warning in output, output


def test_the_readme_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    links = [link for link in MARKDOWN_LINK.findall(readme) if "://" not in link]
    assert links, "the README links to no docs page"
    for link in links:
        assert (REPO / link.split("#")[0]).is_file(), f"README.md links to missing {link}"


def _fenced(text: str, opening: str) -> str:
    start = text.index(opening)
    return text[start : text.index("```\n", start + len(opening)) + 4]


def _folder_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("| folder | holds |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    # The last column links to Benchmarks by a path relative to each file.
    return [line.replace("(docs/", "(") for line in lines[start:end]]


def test_readme_and_docs_index_show_the_same_architecture() -> None:
    readme = (REPO / "README.md").read_text()
    index = (DOCS / "index.md").read_text()
    assert _fenced(readme, "```mermaid\n") == _fenced(index, "```mermaid\n")
    assert _folder_table(readme) == _folder_table(index)


def test_every_docs_page_a_file_names_exists() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    missing = []
    for name in filter(None, tracked):
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".gz", ".json"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            missing += [
                f"{name}:{number}: {ref}"
                for ref in DOCS_PAGE_REFERENCE.findall(line)
                if not (REPO / ref).is_file()
            ]
    assert not missing, "references to docs pages that do not exist:\n" + "\n".join(missing)


def test_the_settings_table_is_settings_docs() -> None:
    # Markdown reads a bare <app_name> as an HTML tag, so the table escapes < and >.
    templates = (DOCS / "templates.md").read_text()
    rows = {line for line in templates.splitlines() if line.startswith("| `")}
    for name, default, doc in settings_docs():
        shown = default if default == "required" else f"`{default}`"
        row = f"| `{name}` | {shown} | {html.escape(doc, quote=False)} |"
        assert row in rows, f"docs/templates.md has no row {row}"
