"""The one-node workflow a codemod step becomes: the step as written with its package paths
through the link, params typed as schema defaults (never in argv), a matrix task's own item."""

from __future__ import annotations

import json
from pathlib import Path

from runner.engine.codemod.delegate import Seen, generated_workflow, prepare, uses_metrics


def test_package_paths_go_through_the_link_and_the_rest_is_kept() -> None:
    wf, flags = generated_workflow(
        "js-ast-grep", {"js_file": "./scripts/x.ts", "include": ["src/**"], "bogus": 1},
        step_name="s", step_id="sid", node_id="n", node_name="N",
        params={"p": "v", "n": 5, "b": True, "list": ["a"]},
        matrix={"name": "api-0", "_meta_files": ["src/api/a.ts"]})
    node = wf["nodes"][0]
    assert node["steps"] == [{"name": "s", "id": "sid", "js-ast-grep": {
        "js_file": "pkg/scripts/x.ts", "include": ["src/**"], "bogus": 1}}]
    assert node["strategy"] == {"type": "matrix", "values": [
        {"name": "api-0", "_meta_files": ["src/api/a.ts"]}]}
    assert wf["params"]["schema"] == {"p": {"type": "string", "default": "v"},
                                      "n": {"type": "number", "default": 5},
                                      "b": {"type": "boolean", "default": True}}
    assert flags == ["--param", 'list=["a"]']


def test_shard_paths_and_ast_grep() -> None:
    wf, _ = generated_workflow("shard", {"method": {"function": "s.ts"},
                                         "js-ast-grep": {"js_file": "c.ts"}},
                               step_name="s", step_id=None, node_id="n", node_name="N",
                               params={}, matrix=None)
    step = wf["nodes"][0]["steps"][0]["shard"]
    assert step["method"] == {"function": "pkg/s.ts"}
    assert step["js-ast-grep"] == {"js_file": "pkg/c.ts"}
    assert "strategy" not in wf["nodes"][0] and "params" not in wf
    wf, _ = generated_workflow("ast-grep", {"config_file": "rules/a.yml"}, step_name="s",
                               step_id=None, node_id="n", node_name="N", params={},
                               matrix=None)
    assert wf["nodes"][0]["steps"][0]["ast-grep"] == {"config_file": "pkg/rules/a.yml"}


def test_prepare_writes_a_private_package_and_keeps_secrets_out_of_argv(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "scripts" / "x.ts").write_text("export default () => null;\n")
    package = tmp_path / "control" / "codemod-0"
    seen = Seen(binary="/bin/codemod", workspace=str(tmp_path / "w"), bundle=str(bundle),
                package=str(package))
    done = prepare("js-ast-grep", {"js_file": "scripts/x.ts"}, host_package=package,
                   host_bundle=bundle, seen=seen, step_name="s", step_id=None, node_id="n",
                   node_name="N", params={"token": "s3cret-value"}, matrix=None, dry_run=True)
    assert "s3cret-value" not in " ".join(done.argv)
    assert done.argv[:4] == ["/bin/codemod", "--disable-analytics", "workflow", "run"]
    assert "--dry-run" in done.argv and "--allow-dirty" in done.argv
    assert (package / "pkg").resolve() == bundle.resolve()
    written = package / "workflow.json"
    assert written.stat().st_mode & 0o777 == 0o644  # as the task's outputs files
    assert package.stat().st_mode & 0o777 == 0o711
    assert json.loads(written.read_text())["params"]["schema"]["token"]["default"] == \
        "s3cret-value"
    assert done.env["XDG_DATA_HOME"].startswith(str(package))
    assert done.wait_for_exit is False


def test_metrics_make_the_step_wait_for_the_cli(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "x.ts").write_text('import { useMetricAtom } from '
                                               '"codemod:metrics";\n')
    assert uses_metrics("js-ast-grep", {"js_file": "scripts/x.ts"}, tmp_path)
    assert not uses_metrics("ast-grep", {"config_file": "r.yml"}, tmp_path)
    assert uses_metrics("codemod", {"source": "./x"}, tmp_path)
