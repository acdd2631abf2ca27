"""Unknown keys: every mapping of the raw document is compared with the keys the model knows.

An unknown key is reported with a "did you mean" hint (a typo must not pass silently): a warning
for `ferry validate`, an error under `--strict`, and an error when a run is made (`for_run`)
unless the key is purely descriptive (`description`, `title`, `notes`, `x-...`): Ferry does not
run a workflow with a key whose effect it does not know (`continue-on-error`, `retry: {count}`,
a node-level `if`...). Free-form mappings (env, template inputs given by `use`, matrix values,
the configuration of unsupported step kinds) are not checked. Inside the codemod kinds'
mappings (`js-ast-grep`, `ast-grep`, `codemod`, `shard`, `commit`, `pull_request`) an unknown
key is a warning even for a run: the Codemod CLI receives the step as written and ignores it,
as upstream does (`--strict` still refuses it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runner.workflow import model as m
from runner.workflow import model_codemod as mc
from runner.workflow.validate_checks import Add, Path, hint


def _keys(definition: type[BaseModel]) -> frozenset[str]:
    """The keys (aliases where set) one model reads."""
    return frozenset(f.alias or name for name, f in definition.model_fields.items())


# kind -> (known keys, {key: (shape, child kind)}), shape: "one" | "list" | "map" | "schema"
# ("schema": the state schema, a list of entries or a map of properties)
_SHAPES: dict[str, tuple[frozenset[str], dict[str, tuple[str, str]]]] = {
    "workflow": (_keys(m.Workflow), {"state": ("one", "state"), "params": ("one", "params"),
                                     "templates": ("list", "template"),
                                     "nodes": ("list", "node")}),
    "state": (_keys(m.StateSection), {"schema": ("schema", "entry")}),
    "params": (_keys(m.ParamsSection), {"schema": ("map", "prop")}),
    "entry": (_keys(m.StateSchemaEntry), {"items": ("one", "prop"),
                                          "properties": ("map", "prop"),
                                          "oneOf": ("list", "variant")}),
    "prop": (_keys(m.SchemaProperty), {"items": ("one", "prop"), "properties": ("map", "prop"),
                                       "oneOf": ("list", "variant")}),
    "variant": (_keys(m.EnumVariant), {}),
    "template": (_keys(m.Template), {"runtime": ("one", "runtime"), "inputs": ("list", "input"),
                                     "outputs": ("list", "output"), "steps": ("list", "step")}),
    "input": (_keys(m.TemplateInput), {}),
    "output": (_keys(m.TemplateOutput), {}),
    "node": (_keys(m.Node), {"trigger": ("one", "trigger"), "runtime": ("one", "runtime"),
                             "strategy": ("one", "strategy"), "steps": ("list", "step"),
                             "retry": ("one", "retry"), "pull_request": ("one", "pr")}),
    "trigger": (_keys(m.Trigger), {}),
    "runtime": (_keys(m.Runtime), {}),
    "strategy": (_keys(m.Strategy), {}),
    "retry": (_keys(m.Retry), {}),
    "step": (_keys(m.Step), {"use": ("one", "use"), "js-ast-grep": ("one", "jssg"),
                             "ast-grep": ("one", "astgrep"), "codemod": ("one", "codemod"),
                             "shard": ("one", "shard"), "commit": ("one", "commit")}),
    "use": (_keys(m.UseTemplate), {}),
    "jssg": (_keys(mc.JsAstGrep), {}),
    "astgrep": (_keys(mc.AstGrep), {}),
    "codemod": (_keys(mc.CodemodStep), {}),
    "shard": (_keys(mc.Shard), {"method": ("one", "method"), "js-ast-grep": ("one", "jssg")}),
    "method": (_keys(mc.ShardBuiltin) | _keys(mc.ShardFunction), {}),
    "commit": (_keys(mc.Commit), {}),
    "pr": (_keys(mc.PullRequest), {}),
}
_PASSED_ON = frozenset({"jssg", "astgrep", "codemod", "shard", "method", "commit", "pr"})
"""Mappings whose unknown keys upstream ignores too: warnings, never a refused run."""
# keys the structural checks already explain with a better message
_EXPLAINED = {("step", "uses"), ("step", "commands"), ("node", "run")}
_MAX_DEPTH = 40
DESCRIPTIVE_KEYS = frozenset({"description", "title", "summary", "comment", "comments", "note",
                              "notes", "author", "authors", "tags", "metadata", "docs"})
"""Unknown keys that cannot change what runs: they never stop a run (still warned about)."""


def is_descriptive(key: str) -> bool:
    """A key that only describes (documentation, `x-` extension fields)."""
    return key in DESCRIPTIVE_KEYS or key.startswith(("x-", "x_"))


def check_unknown_keys(data: dict[str, Any], add: Add, strict: bool, for_run: bool = False
                       ) -> None:
    """Report keys no model knows: warnings; errors when `strict`, and when `for_run` for every
    key that is not descriptive."""
    todo: list[tuple[Any, str, Path]] = [(data, "workflow", ())]
    while todo:
        value, kind, where = todo.pop()
        if not isinstance(value, dict) or len(where) > _MAX_DEPTH:
            continue
        known, children = _SHAPES[kind]
        for key in value:
            if key in known or (kind, key) in _EXPLAINED:
                continue
            descriptive = is_descriptive(str(key))
            text = f"unknown key '{key}'" + ("" if descriptive else hint(str(key), known))
            if strict or (for_run and kind not in _PASSED_ON and not descriptive):
                if not strict:
                    text += ("; Ferry does not know what it does, so it does not run the "
                             "workflow (remove it or fix its name)")
                add((*where, key), text, "error")
            else:
                if kind in _PASSED_ON:
                    text += " (the Codemod CLI ignores it too)"
                add((*where, key), text, "warning")
        for key, (shape, child) in children.items():
            item = value.get(key)
            if shape == "schema":
                shape = "list" if isinstance(item, list) else "map"
                child = "entry" if shape == "list" else "prop"
            if shape == "one":
                todo.append((item, child, (*where, key)))
            elif shape == "list" and isinstance(item, list):
                todo.extend((x, child, (*where, key, i)) for i, x in enumerate(item))
            elif shape == "map" and isinstance(item, dict):
                todo.extend((x, child, (*where, key, k)) for k, x in item.items())
