"""One settings module: every ``DASHAPP_*`` variable is read in ``dashapp/settings.py`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dashapp
from dashapp import settings

PACKAGE = Path(dashapp.__file__).parent
DOCS = PACKAGE.parent / "docs" / "deployment.md"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _string_constants() -> dict[str, str]:
    """Every module-level ``NAME = "text"`` of the package (to see through ``TOKEN_ENV``)."""
    found: dict[str, str] = {}
    for path in _modules():
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
    return found


def _env_reads(path: Path, constants: dict[str, str]) -> list[str]:
    """``os.environ.get(X)``, ``os.getenv(X)``, ``environ[X]``, ``X in os.environ`` and
    ``<any>.get(X)`` where X is (or names) a ``DASHAPP_`` string."""

    def dashapp_name(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            value = constants.get(name, "")
        else:
            return None
        return value if value.startswith("DASHAPP_") else None

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ"
        )

    reads = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in ("get", "getenv", "pop")) or (
                isinstance(func, ast.Name) and func.id == "getenv"
            ):
                name = dashapp_name(node.args[0])
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            if isinstance(getattr(node, "ctx", None), ast.Load):
                name = dashapp_name(node.slice)
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            name = dashapp_name(node.left)
        if name:
            reads.append(f"{path}:{node.lineno} reads {name}")
    return reads


def test_no_module_but_settings_reads_a_dashapp_variable():
    constants = _string_constants()
    reads = [
        read
        for path in _modules()
        if path.name != "settings.py" or path.parent != PACKAGE
        for read in _env_reads(path, constants)
    ]
    assert reads == []


def test_the_scan_sees_the_reads_it_forbids(tmp_path):
    # (the test above must be able to fail)
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nTOKEN = 'DASHAPP_TOKEN'\n"
        "a = os.environ.get('DASHAPP_ROOT')\nb = os.getenv(TOKEN)\n"
        "c = os.environ['DASHAPP_CACHE']\nd = 'DASHAPP_WATCH' in os.environ\n"
        "env = dict(os.environ)\ne = env.get(TOKEN, '')\n"
    )
    found = _env_reads(sample, {"TOKEN": "DASHAPP_TOKEN"})
    assert len(found) == 5, found


def test_every_variable_in_the_code_is_declared():
    declared = {v.name for v in settings.VARIABLES}
    named = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith("DASHAPP_") and text.isupper() and text != "DASHAPP_":
                    named.add(text.split("=")[0].split()[0])
    named.discard("DASHAPP_NAMESPACE")  # a PROV namespace prefix, not a variable
    assert named <= declared, named - declared


def test_the_deployment_docs_hold_the_table_of_variables():
    assert settings.markdown_table() in DOCS.read_text(), (
        "docs/deployment.md: paste `python -c 'from dashapp import settings; "
        "print(settings.markdown_table())'` into its Configuration section"
    )


def test_defaults_types_and_bad_values(monkeypatch, caplog):
    for var in settings.VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    s = settings.current()
    assert s.fs_timeout == 10.0
    assert s.watch == "auto"
    assert s.root is None
    assert s.pyramid_budget_gb is None
    monkeypatch.setenv("DASHAPP_FS_TIMEOUT", "soon")
    monkeypatch.setenv("DASHAPP_WATCH", "sometimes")
    monkeypatch.setenv("DASHAPP_READ_MEMORY_MB", "1")
    monkeypatch.setenv("DASHAPP_OWNERS", "ada, bob,,")
    monkeypatch.setenv("DASHAPP_JUPYTER_BASE_URL", "hub/user/ada")
    s = settings.current()  # the environment changed: parsed again
    assert s.fs_timeout == 10.0
    assert s.watch == "auto"
    assert s.read_memory_mb == 16
    assert s.owners == {"ada", "bob"}
    assert s.jupyter_base_url == "/hub/user/ada/"
    assert "DASHAPP_FS_TIMEOUT='soon' is not valid" in caplog.text
    assert settings.current() is s  # and kept while it does not change


def test_tilde_is_expanded_once_here(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ada")
    for name in ("DASHAPP_CACHE", "DASHAPP_ROOT", "DASHAPP_WORKSPACE", "DASHAPP_CLUSTER_GROUP"):
        monkeypatch.setenv(name, "~/x")
    s = settings.current()
    assert s.cache == s.root == s.workspace == s.cluster_group == Path("/home/ada/x")


@pytest.mark.parametrize("cache", ["given", "default"])
def test_one_cache_folder_for_pyramids_demo_workspace_and_token(tmp_path, monkeypatch, cache):
    from dashapp.auth import token_file
    from dashapp.data.pyramid import cache_root
    from dashapp.demo.workspace import default_demo_dir
    from dashapp.provenance.record import default_workspace

    monkeypatch.delenv("DASHAPP_WORKSPACE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if cache == "given":
        monkeypatch.setenv("DASHAPP_CACHE", "~/dashapp-cache")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / "dashapp-cache"
    else:
        monkeypatch.delenv("DASHAPP_CACHE")
        expected = tmp_path / "xdg" / "dashapp"
    assert settings.cache_dir() == expected
    for where in (cache_root(), default_demo_dir(), default_workspace(), token_file()):
        assert where.parent == expected, where
