"""The README and the docs site: every Python snippet runs as written, the API reference covers
every public name, and the package ships ``py.typed``.

Snippets: every fenced ```` ```python ```` block of README.md and of every page under docs/ is
executed, page by page, in order, in one fresh namespace per page (like a notebook), from the
repository root. Shell blocks (```` ```bash ````) are not run, except the commands listed in
``SHELL_COMMANDS`` below, which a page's Python blocks depend on.

Reference: docs/reference/<subpackage>.md renders ``functional_metarl.<subpackage>`` with
mkdocstrings (``filters: public``, i.e. the names in its ``__all__``); names that a submodule
exports but its subpackage does not re-export need their own ``::: module.name`` line.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import functional_metarl as fm

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.DOTALL | re.MULTILINE)

# Shell commands that a page's Python blocks read the output of: run (with the page's working
# directory) before that page's Python blocks. Each must appear verbatim in one of the page's
# bash blocks, so the page shows exactly what the test runs.
SHELL_COMMANDS = {
    "getting-started.md": [
        "python examples/maml_nav.py --iterations 3 --meta-batch-size 4 --episodes-per-task 4 "
        "--eval-tasks 4 --eval-episodes 4 --output runs/quick",
    ],
}


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced block of ``lang`` in the file."""
    text = path.read_text()
    out = []
    for match in FENCE.finditer(text):
        if match.group("lang") != lang:
            continue
        line = text.count("\n", 0, match.start("body")) + 1
        indent = match.group("indent")
        body = "".join(l[len(indent):] if l.startswith(indent) else l for l in match.group("body").splitlines(True))
        out.append((line, body))
    return out


def _python_pages() -> list[Path]:
    return [p for p in _pages() if _blocks(p, "python")]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", _python_pages(), ids=_page_id)
def test_snippets_run(page: Path, tmp_path, monkeypatch):
    """A page's Python blocks run in order in one namespace; a failure points at the page's line."""
    key = str(page.relative_to(DOCS)) if page.is_relative_to(DOCS) else page.name
    shell = _blocks(page, "bash")
    for command in SHELL_COMMANDS.get(key, []):
        assert any(command in code for _, code in shell), f"{key}: the bash blocks must show {command!r}"
        args = shlex.split(command)
        assert args[0] == "python"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Pages that read what a shell command wrote run where it wrote it; the others from the
    # repository root (e.g. to read benchmarks/results/).
    monkeypatch.chdir(tmp_path if key in SHELL_COMMANDS else ROOT)
    namespace = {"__name__": "__docs__"}
    for line, code in _blocks(page, "python"):
        # Pad so that tracebacks show the line numbers of the markdown file.
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # noqa: S102


def test_every_python_page_is_collected():
    """The README and the four tutorials have snippets (a typo in a fence would skip them silently)."""
    names = {_page_id(p) for p in _python_pages()}
    for expected in ("README.md", "docs/tutorials/maml-sine.md", "docs/tutorials/own-algorithm.md",
                     "docs/tutorials/maml-order.md", "docs/tutorials/new-task-family.md"):
        assert expected in names


def test_benchmark_flags_in_the_tutorial_exist():
    """Every ``--flag`` the microbenchmark tutorial gives benchmarks/maml_order.py is one it takes."""
    page = (DOCS / "tutorials" / "maml-order.md").read_text()
    flags = set(re.findall(r"maml_order\.py[^\n`]*", page))
    used = {f for line in flags for f in re.findall(r"--[a-z][a-z-]*", line)}
    assert used, "the tutorial shows no maml_order.py flags"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "maml_order.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    missing = sorted(f for f in used if f not in proc.stdout)
    assert not missing, f"maml_order.py --help does not list {missing}"


# --------------------------------------------------------------------------- the API reference


def _subpackages() -> list[str]:
    """The subpackages / modules that ``functional_metarl.__all__`` exports."""
    return [name for name in fm.__all__ if not name.startswith("__")]


def _public_modules() -> list[str]:
    """Every importable module of the package, except private ones (a ``_`` name anywhere)."""
    names = []
    for info in pkgutil.walk_packages(fm.__path__, "functional_metarl."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return names


def _targets() -> dict[str, str]:
    """``{::: target: page}`` over the reference pages."""
    out = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for target in re.findall(r"^:::[ \t]+([\w.]+)", page.read_text(), re.MULTILINE):
            out[target] = page.name
    return out


def _documented_paths() -> dict[str, str]:
    """``{dotted path: reference page}`` of every name that some module's ``__all__`` exports:
    under its subpackage when the subpackage re-exports it, else under its own module."""
    targets = _targets()
    out: dict[str, str] = {}
    for name in fm.__all__:  # a subpackage's own entry is the head of its page
        out[f"functional_metarl.{name}"] = "index.md" if name.startswith("__") else targets.get(f"functional_metarl.{name}")
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        top = ".".join(module_name.split(".")[:2])
        package = importlib.import_module(top)
        for name in exported:
            via_package = name in getattr(package, "__all__", ()) and getattr(package, name) is getattr(module, name)
            path = f"{top}.{name}" if via_package else f"{module_name}.{name}"
            page = targets.get(top) if via_package else targets.get(path)
            out[path] = page
    return out


def test_reference_has_a_page_per_subpackage():
    """``fm.__all__`` and the reference agree: one page per exported subpackage, each in the nav."""
    targets = _targets()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert targets.get("functional_metarl") == "index.md"
    for name in _subpackages():
        assert targets.get(f"functional_metarl.{name}") == f"{name}.md", f"docs/reference/{name}.md must render it"
        assert f"reference/{name}.md" in nav, f"reference/{name}.md is not in mkdocs.yml's nav"
    extra = {t for t in targets if t.count(".") == 1 and t.split(".")[1] not in _subpackages()}
    assert not extra, f"reference pages for modules that functional_metarl.__all__ does not export: {extra}"


def test_every_public_module_declares_all():
    """``__all__`` is what the reference renders, so a public module without one would go unchecked."""
    missing = [name for name in _public_modules() if not hasattr(importlib.import_module(name), "__all__")]
    assert not missing, f"these public modules define no __all__: {missing}"


def test_every_exported_name_has_a_reference_target():
    """Every name in every module's ``__all__`` is rendered by some ``:::`` line."""
    missing = sorted(path for path, page in _documented_paths().items() if page is None)
    assert not missing, (
        "no reference page renders these names (export them from the subpackage's __all__, or add a "
        f"'::: module.name' line to its page under 'Defined in submodules'): {missing}"
    )


def test_reference_targets_exist():
    """Every ``:::`` target names a real, public object (a stale line would fail the build late)."""
    documented = _documented_paths()
    for target, page in _targets().items():
        if target == "functional_metarl" or target.count(".") == 1:
            importlib.import_module(target)
            continue
        assert target in documented, (
            f"{page}: '::: {target}' is not a documented path: not in its module's __all__, or its subpackage "
            "now re-exports it (then the subpackage's own entry covers it; drop the line)"
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as CI builds it (``mkdocs build --strict``)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return out


def _anchors(site: Path, page: str) -> set[str]:
    html = (site / "reference" / page.removesuffix(".md").replace("index", "") / "index.html").read_text()
    return set(re.findall(r'id="(functional_metarl[\w.]*)"', html))


def test_rendered_reference_covers_every_public_name(site):
    """The built pages have an entry (an anchor) for every exported name, on the expected page."""
    documented = _documented_paths()
    anchors = {page: _anchors(site, page) for page in {p for p in documented.values() if p}}
    missing = sorted(path for path, page in documented.items() if page and path not in anchors[page])
    assert not missing, f"mkdocstrings rendered no entry for {missing}"


def test_rendered_subpackage_pages_show_exactly_their_all(site):
    """A subpackage page renders its ``__all__``: nothing missing, and no public name that is not in it."""
    for name in _subpackages():
        module = importlib.import_module(f"functional_metarl.{name}")
        prefix = f"functional_metarl.{name}."
        rendered = {a[len(prefix):] for a in _anchors(site, f"{name}.md") if a.startswith(prefix)}
        top_level = {a for a in rendered if "." not in a}
        assert top_level == set(module.__all__), (
            f"{name}: rendered but not in __all__: {sorted(top_level - set(module.__all__))}; "
            f"in __all__ but not rendered: {sorted(set(module.__all__) - top_level)}"
        )


# --------------------------------------------------------------------------- packaging


def test_package_ships_py_typed():
    """PEP 561: ``py.typed`` lies in the package and pyproject's package-data includes it."""
    assert (Path(fm.__file__).parent / "py.typed").is_file()
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["functional_metarl"]
    docs_extra = config["project"]["optional-dependencies"]["docs"]
    assert any(d.startswith("mkdocs-material") for d in docs_extra)
    assert any(d.startswith("mkdocstrings") for d in docs_extra)


def test_readme_set_up_lines_match_ci():
    """The README's two set-up lines install what .ci/run installs and end with its commands."""
    ci = (ROOT / ".ci" / "run").read_text()
    bash = [line for _, code in _blocks(ROOT / "README.md", "bash") for line in code.splitlines() if line.strip()]
    extras = re.search(r'pip install --quiet -e "(\.\[[^\]]*\])"', ci).group(1)
    torch_pin = re.search(r"pip install --quiet (torch==[\d.]+)", ci).group(1)
    assert ci.strip().splitlines()[-1] == "python -m pytest -q"
    assert "mkdocs build --strict" in ci
    main_job = [line for line in bash if line.endswith("&& python examples/maml_nav.py")]
    tests = [line for line in bash if line.endswith("&& python -m pytest -q")]
    assert len(main_job) == 1 and len(tests) == 1, bash
    assert f"pip install {torch_pin}" in main_job[0] and f"pip install {torch_pin}" in tests[0]
    assert f'pip install -e "{extras}"' in tests[0], f"README's test line must install {extras}, as .ci/run does"


def test_every_page_is_in_the_nav():
    """A page under docs/ that mkdocs.yml's nav does not list would be built but unreachable."""
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.MULTILINE))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if not p.relative_to(DOCS).parts[0].startswith("_")}
    assert pages - listed == set(), f"add these pages to the nav in mkdocs.yml: {sorted(pages - listed)}"
    assert listed - pages == set(), f"the nav lists pages that do not exist: {sorted(listed - pages)}"
