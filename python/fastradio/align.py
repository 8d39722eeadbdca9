"""How a checkpoint resizes its position table: ``align_corners`` True or False (radio-family §2).

``config.json`` does not say it, and it is a property of the checkpoint *revision*, not of the
family: the upstream code switched the eval-time resize from align_corners=True to False on
2025-06-28 and each Hub repo runs the code bundled with it. Getting it wrong costs 9-27 % relative
L2, silently. So :func:`decide` takes, in this order, the first source that answers:

1. ``override`` (``fastradio.load(..., pos_align_corners=True|False)``): the caller knows. When the
   bundled file says otherwise a warning says so.
2. The checkpoint folder's bundled ``vit_patch_generator.py``, **read as text, never imported or
   executed**: the ``align_corners=`` keyword of the ``interpolate(...)`` call(s) inside
   ``_get_pos_embeddings`` (a training-only ``if self.training:`` branch is skipped). Parsed with
   :mod:`ast` (which only parses), with a plain-text fallback for files ``ast`` cannot read. A file
   that is present but does not answer unambiguously (no such function, no call, no keyword, a
   non-constant value, calls that disagree) is refused: it is the authority, and a guess past it
   is exactly the silent failure this module exists to prevent.
3. The revision table of the registry (:class:`fastradio.configs.KnownModel`), for a folder whose
   Hub identity is known (a Hub snapshot: repo id and commit): C-RADIOv2 repos, C-RADIOv3-B and -H:
   True; C-RADIOv4: False; C-RADIOv3-L and -g only at commits listed as certain (none so far: their
   current revisions are False [inferred], their first uploads were True).
4. The C-RADIOv2 structure without any newer marker (a C-RADIOv2 architecture, 4 CLS + 4
   registers, no layer-scale, no C-RADIOv3/v4 ``version``): True, as spec/c-radiov2.md §3 fixes
   for every C-RADIOv2 checkpoint.

Nothing else guesses: a C-RADIOv3/v4 folder without its bundled file and without a Hub identity
(a local copy: its config.json names the model, not the code revision that made it) is refused
with :class:`~fastradio.errors.UnsupportedModelError` naming the fixes. ``config.align_corners_source``
records which source decided.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import NamedTuple

from .configs import ModelConfig, known_model_for_repo, known_model_for_version
from .errors import UnsupportedModelError

__all__ = ["BUNDLED_FILE", "Detected", "read_bundled_file", "parse_bundled_text", "decide"]

#: the file of a Hub checkpoint repo that holds the position resize (read as text only)
BUNDLED_FILE = "vit_patch_generator.py"
_FUNCTION = "_get_pos_embeddings"
_MAX_BYTES = 2 * 1024 * 1024


class Detected(NamedTuple):
    """What the bundled file says: the value and where (for ``align_corners_source``)."""

    align_corners: bool
    where: str


class _Ambiguous(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# the bundled file, as text
# ---------------------------------------------------------------------------------------------

def _is_interpolate(func: ast.expr) -> bool:
    # F.interpolate, nn.functional.interpolate, torch.nn.functional.interpolate, interpolate
    return (isinstance(func, ast.Attribute) and func.attr == "interpolate") or (
        isinstance(func, ast.Name) and func.id == "interpolate")


def _is_self_training(test: ast.expr) -> int:
    """+1 for ``self.training``, -1 for ``not self.training``, 0 otherwise."""
    if isinstance(test, ast.Attribute) and test.attr == "training" and isinstance(test.value, ast.Name) \
            and test.value.id == "self":
        return 1
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return -_is_self_training(test.operand)
    return 0


def _eval_calls(nodes: list[ast.stmt]) -> list[ast.Call]:
    """interpolate calls in these statements that run at eval time (``if self.training:`` bodies
    skipped; nested functions and classes skipped: they are not this function's code)."""
    found: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.If):
            sign = _is_self_training(node.test)
            if sign:
                for child in (node.orelse if sign > 0 else node.body):
                    visit(child)
                return
        if isinstance(node, ast.IfExp):
            sign = _is_self_training(node.test)
            if sign:
                visit(node.orelse if sign > 0 else node.body)
                return
        if isinstance(node, ast.Call) and _is_interpolate(node.func):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for n in nodes:
        visit(n)
    return found


def _from_ast(text: str) -> tuple[bool, int]:
    tree = ast.parse(text)          # parses only: nothing in the file runs
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and n.name == _FUNCTION]
    if not funcs:
        raise _Ambiguous(f"no function {_FUNCTION} in the file")
    if len(funcs) > 1:
        raise _Ambiguous(f"{len(funcs)} functions named {_FUNCTION}")
    calls = _eval_calls(funcs[0].body)
    if not calls:
        raise _Ambiguous(f"no interpolate(...) call in {_FUNCTION} (outside a training-only branch)")
    values: dict[bool, int] = {}
    for call in calls:
        kws = [k for k in call.keywords if k.arg == "align_corners"]
        if not kws:
            raise _Ambiguous(f"the interpolate(...) call on line {call.lineno} has no align_corners= keyword")
        v = kws[0].value
        if not (isinstance(v, ast.Constant) and isinstance(v.value, bool)):
            raise _Ambiguous(f"align_corners= on line {call.lineno} is not the constant True or False "
                             f"({ast.unparse(v)!r}; knowing it would mean running the code)")
        values.setdefault(v.value, call.lineno)
    if len(values) > 1:
        raise _Ambiguous(f"the interpolate(...) calls disagree: align_corners=True on line {values[True]}, "
                         f"False on line {values[False]}")
    (value, line), = values.items()
    return value, line


_DEF = re.compile(rf"^([ \t]*)(?:async[ \t]+)?def[ \t]+{_FUNCTION}[ \t]*\(", re.M)
_KW = re.compile(r"align_corners\s*=\s*([A-Za-z_][A-Za-z0-9_.]*)")


def _from_text(text: str) -> tuple[bool, int]:
    """Fallback for files ``ast`` cannot parse: the function's lines by indentation, every
    ``align_corners=`` in them (no branch analysis: a training-only branch makes it ambiguous)."""
    defs = list(_DEF.finditer(text))
    if len(defs) != 1:
        raise _Ambiguous(f"{len(defs)} definitions of {_FUNCTION}")
    indent = len(defs[0].group(1).expandtabs())
    start_line = text.count("\n", 0, defs[0].start()) + 1
    lines = text[defs[0].start():].split("\n")
    body = [lines[0]]
    for ln in lines[1:]:
        stripped = ln.strip()
        if stripped and not stripped.startswith("#") and len(ln) - len(ln.lstrip()) <= indent \
                and not stripped.startswith(")"):
            break
        body.append(ln)
    found = {}
    for k, ln in enumerate(body):
        code = ln.split("#", 1)[0]
        for m in _KW.finditer(code):
            if m.group(1) not in ("True", "False"):
                raise _Ambiguous(f"align_corners={m.group(1)} on line {start_line + k} is not a constant")
            found.setdefault(m.group(1) == "True", start_line + k)
    if "interpolate" not in "\n".join(body):
        raise _Ambiguous(f"no interpolate(...) call in {_FUNCTION}")
    if not found:
        raise _Ambiguous(f"no align_corners= keyword in {_FUNCTION}")
    if len(found) > 1:
        raise _Ambiguous(f"align_corners=True on line {found[True]} and False on line {found[False]}")
    (value, line), = found.items()
    return value, line


def parse_bundled_text(text: str, where: str = BUNDLED_FILE) -> Detected:
    """The align_corners that ``_get_pos_embeddings`` of this source text passes to
    ``interpolate``. Raises ValueError (with the reason) when the text does not say it
    unambiguously. The text is parsed, never executed."""
    try:
        try:
            value, line = _from_ast(text)
            how = ""
        except SyntaxError:
            value, line = _from_text(text)
            how = ", read as plain text: Python's parser could not read the file"
    except _Ambiguous as e:
        raise ValueError(f"{where}: cannot tell the position resize: {e}") from None
    return Detected(value, f"{where}, line {line}{how}")


def read_bundled_file(folder: str | Path) -> Detected | None:
    """What ``folder/vit_patch_generator.py`` says (None when the folder has no such file).
    Raises ValueError when the file is there but does not answer unambiguously."""
    path = Path(folder) / BUNDLED_FILE
    if not path.is_file():
        return None
    data = path.read_bytes()[: _MAX_BYTES + 1]
    if len(data) > _MAX_BYTES:
        raise ValueError(f"{path}: cannot tell the position resize: the file is larger than {_MAX_BYTES} bytes")
    text = data.decode("utf-8", errors="replace")
    return parse_bundled_text(text, str(path))


# ---------------------------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------------------------

def _is_c_radio_v2(cfg: ModelConfig) -> bool:
    known = known_model_for_version(cfg.extra.get("version"))
    return (cfg.arch.c_radio_v2 and not cfg.layer_scale and cfg.reg_token_rows == 0
            and (cfg.num_cls_tokens, cfg.num_registers) == (4, 4)
            and (known is None or known.family == "C-RADIOv2"))


def _identity(cfg: ModelConfig) -> str:
    v = cfg.extra.get("version")
    return f"args.model = {cfg.arch.timm_name}" + (f", version = {v!r}" if v else "")


def _fixes(cfg: ModelConfig) -> str:
    return (f"put the checkpoint's own {BUNDLED_FILE} (from its Hub repo, same revision) into the folder "
            f"(fastradio reads it as text and never runs it), or load it by its Hub name so the file comes with "
            f"the snapshot, or say it: fastradio.load(..., pos_align_corners=False) for code from after "
            f"2025-06-28 (C-RADIOv4, the current C-RADIOv3-L/-g uploads), True for C-RADIOv2 and older uploads")


def decide(cfg: ModelConfig, folder: str | Path | None, *, repo_id: str | None = None,
           revision: str | None = None, override: bool | None = None) -> ModelConfig:
    """``cfg`` with ``align_corners`` and ``align_corners_source`` decided (see the module
    docstring for the order). ``folder``: the checkpoint folder (for the bundled file);
    ``repo_id``/``revision``: its Hub identity when it is a Hub snapshot (commit hash).

    Raises TypeError for a non-bool override and UnsupportedModelError when no source answers or
    the bundled file is ambiguous; the message names the fixes."""
    src = cfg.extra.get("source", "config.json")
    if override is not None and not isinstance(override, bool):
        raise TypeError(f"pos_align_corners: expected True, False or None, got {type(override).__name__} "
                        f"{override!r}")
    detected, problem = None, None
    if folder is not None:
        try:
            detected = read_bundled_file(folder)
        except ValueError as e:
            problem = str(e)

    if override is not None:
        note = ""
        if detected is not None and detected.align_corners != override:
            note = f"; the bundled {detected.where} says align_corners={detected.align_corners}"
            warnings.warn(f"{src}: pos_align_corners={override} overrides the checkpoint's own code "
                          f"({detected.where} says align_corners={detected.align_corners})", stacklevel=3)
        return cfg.with_(align_corners=override, align_corners_source=f"override: pos_align_corners={override}{note}")

    if problem is not None:
        raise UnsupportedModelError(f"{problem}; refusing to guess. Fix: {_fixes(cfg)}")
    if detected is not None:
        return cfg.with_(align_corners=detected.align_corners, align_corners_source=f"bundled file: {detected.where}")

    km = known_model_for_repo(repo_id)
    if km is not None:
        value = km.align_corners_at(revision)
        if value is not None:
            which = f"@ {revision}" if km.align_corners is None else "(every revision)"
            return cfg.with_(align_corners=value,
                             align_corners_source=f"revision table: {km.hub_repo} {which}")
        raise UnsupportedModelError(
            f"{src}: {km.hub_repo}{f' @ {revision}' if revision else ''}: its position resize depends on the "
            f"revision (align_corners=True on the first uploads, False on the current one) and this snapshot "
            f"has no {BUNDLED_FILE} to read it from, nor is its commit in fastradio's table of known "
            f"revisions; refusing to guess. Fix: {_fixes(cfg)}")

    if _is_c_radio_v2(cfg):
        return cfg.with_(align_corners=True, align_corners_source=(
            "C-RADIOv2 structure: every C-RADIOv2 checkpoint resizes with align_corners=True "
            "(spec c-radiov2.md §3)"))

    where = f" ({repo_id}{f' @ {revision}' if revision else ''})" if repo_id else ""
    raise UnsupportedModelError(
        f"{src}: cannot tell how this checkpoint{where} resizes its position table ({_identity(cfg)}): "
        f"align_corners is True or False depending on the code revision that produced it, config.json does "
        f"not say it, the folder has no {BUNDLED_FILE}, and no known Hub revision identifies it; refusing to "
        f"guess (the wrong choice gives silently wrong outputs). Fix: {_fixes(cfg)}")
